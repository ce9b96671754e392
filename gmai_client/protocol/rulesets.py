"""The named rule sets: which VLMEvalKit's reading of an answer makes the headline.

"VLMEvalKit's number" is not one number: its answer matching (``vlmeval/utils/matching_util.py``)
changed twice after GMAI-MMBench was added, and its prediction-file writer once. A ``RuleSet`` is
everything that makes the figure, named by the year its matching took effect:

- ``vlmevalkit-2024``: VLMEvalKit 69268c70 (2024-08-19, the commit that added GMAI-MMBench, the
  published table's era), matching of c6bdffd3 (2024-03-19). PyPI: ``ms-vlmeval`` up to 0.0.18 (0.0.17
  and 0.0.18 read; ``nvidia-vlmeval`` 26.3 carries this matching too).
- ``vlmevalkit-2025``: matching of c3371551 (2025-08-04, PR #1175). PyPI: ``ms-vlmeval`` 0.0.19, 0.0.20.
- ``vlmevalkit-2026``: matching of a67ace50 (2026-06-17, PR #1552), as on main at e8e78f05 (2026-08),
  whose prediction writer no longer turns text into formulas (63a279f1, 2026-07-22). No PyPI release.

The prompt (``ImageMCQDataset.build_prompt``), the judge's prompt and where it is asked (every answer
the matching cannot read), the grouping of ``GMAIMMBenchDataset.evaluate`` and the cell rules of the
TSV are the same in all three eras: a rule set changes only the scoring, never what is sent, so it
is not part of a run's identity and a finished run can be rescored under any set without a request.

The default is ``vlmevalkit-2024``: the published table was computed under it, and the report puts
the model beside that table. ``latest`` names the newest set.
"""

from __future__ import annotations

from dataclasses import dataclass

from gmai_client.errors import ConfigError


@dataclass(frozen=True)
class RuleSet:
    """One era of VLMEvalKit's GMAI-MMBench scoring (the fields say how the eras differ)."""

    name: str
    #: The VLMEvalKit code this set restates (commit, date), and the commit of its matching rules.
    vlmevalkit: str
    matching: str
    #: PyPI releases of ``ms-vlmeval`` whose code carries these rules ("" where none does).
    pypi: str
    #: The single option letter found among the answer's tokens counts only when its first
    #: occurrence is among the last ``letter_window`` tokens; None: anywhere.
    letter_window: int | None
    #: The option-text rule refuses answers longer than twice all option texts together.
    text_length_cap: bool
    #: Where the letter rule finds nothing, the first "(correct) answer is X" (A-D, any case) is read.
    answer_is_fallback: bool
    #: The prediction file's writer turns a cell that starts with "=" into a formula (read back as 0).
    xlsx_formulas: bool
    #: VLMEvalKit's ``run.py`` default judge for multiple choice (used only with an OpenAI key).
    judge_default: str
    #: When to use this set.
    use_when: str


VLMEVALKIT_2024 = RuleSet(
    name="vlmevalkit-2024",
    vlmevalkit="69268c70 (2024-08-19)",
    matching="c6bdffd3 (2024-03-19)",
    pypi="ms-vlmeval up to 0.0.18",
    letter_window=None,
    text_length_cap=False,
    answer_is_fallback=False,
    xlsx_formulas=True,
    judge_default="chatgpt-0125 (gpt-3.5-turbo-0125)",
    use_when="beside the paper's table (the published figures were computed under it)",
)
VLMEVALKIT_2025 = RuleSet(
    name="vlmevalkit-2025",
    vlmevalkit="ms-vlmeval 0.0.20 (PyPI)",
    matching="c3371551 (2025-08-04, #1175)",
    pypi="ms-vlmeval 0.0.19, 0.0.20",
    letter_window=4,
    text_length_cap=True,
    answer_is_fallback=False,
    xlsx_formulas=True,
    judge_default="gpt-4o-mini (gpt-4o-mini-2024-07-18)",
    use_when="beside figures from a VLMEvalKit installed from PyPI (ms-vlmeval 0.0.19 or 0.0.20)",
)
VLMEVALKIT_2026 = RuleSet(
    name="vlmevalkit-2026",
    vlmevalkit="e8e78f05 (2026-08-18, main)",
    matching="a67ace50 (2026-06-17, #1552)",
    pypi="",
    letter_window=4,
    text_length_cap=True,
    answer_is_fallback=True,
    xlsx_formulas=False,
    judge_default="gpt-4o-mini (gpt-4o-mini-2024-07-18)",
    use_when="beside figures from VLMEvalKit's GitHub main (from 2026-07-22 on)",
)

#: Every rule set, oldest first (the order of the side-by-side tables).
RULE_SETS: dict[str, RuleSet] = {rules.name: rules for rules in (VLMEVALKIT_2024, VLMEVALKIT_2025, VLMEVALKIT_2026)}
#: The default: the rules of the published table.
DEFAULT_RULES = VLMEVALKIT_2024
#: ``latest`` names the newest set.
LATEST = VLMEVALKIT_2026
#: What a run folder that names no rule set was scored under (before there were rule sets, the
#: headline followed ms-vlmeval 0.0.20): ``report`` keeps it unless ``--rules`` says otherwise.
UNNAMED_RULES = VLMEVALKIT_2025
#: What ``--rules`` accepts.
RULE_NAMES: tuple[str, ...] = (*RULE_SETS, "latest")


def rule_set(name: str) -> RuleSet:
    """The rule set called ``name`` (``latest`` included); ``ConfigError`` naming the choices otherwise."""
    if name == "latest":
        return LATEST
    try:
        return RULE_SETS[name]
    except KeyError:
        raise ConfigError(f"unknown rule set {name!r}: choose one of {', '.join(RULE_NAMES)}") from None

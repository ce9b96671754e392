"""The headline under every rule set, side by side, for the same answers (``rulesets``).

The published table was scored under VLMEvalKit's 2024 rules, a VLMEvalKit installed from PyPI
today scores under its 2025 rules, its GitHub main under the 2026 ones: the same answers give three
figures. Scoring is pure and cheap, so every report shows all three (overall and per group), with
the number of answers whose letter differs from the headline's rule set; nothing is sent again.
A judge's verdict is kept under every set for an answer that set still cannot read (the judge is
not asked again), so with a judge the other sets' figures can differ from what a run under them
would report: the note says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from gmai_client.protocol.metrics import GROUP_FIELDS, compute_metrics
from gmai_client.protocol.rulesets import DEFAULT_RULES, RULE_SETS, RuleSet
from gmai_client.protocol.scoring import score_answer_set
from gmai_client.results.html.page import table
from gmai_client.results.records import RECORDS_FILE, rewrite_records
from gmai_client.results.report_format import esc, pct
from gmai_client.results.rundir import METRICS_FILE
from gmai_client.types import Record


@dataclass(frozen=True)
class RuleSetFigures:
    """One model's headline and grouped accuracies under one rule set."""

    rules: str
    accuracy: float | None
    correct: int
    keyed: int
    letters_differ: int  # answers whose letter differs from the headline's rule set
    groups: Mapping[str, Mapping[str, float | None]]  # view -> category -> accuracy


def rule_set_figures(records: Sequence[Record], headline: RuleSet) -> dict[str, dict[str, RuleSetFigures]]:
    """Rule-set name -> model -> figures, for every rule set; ``records`` are scored under ``headline``."""
    letters = {(r.model, r.index): r.letters for r in records}
    out: dict[str, dict[str, RuleSetFigures]] = {}
    for name, rules in RULE_SETS.items():
        scored = list(records) if rules == headline else score_answer_set(records, rules)
        metrics = compute_metrics(scored)
        differ: dict[str, int] = dict.fromkeys(metrics, 0)
        for record in scored:
            differ[record.model] += record.letters != letters[(record.model, record.index)]
        out[name] = {
            label: RuleSetFigures(
                rules=name,
                accuracy=m.overall.accuracy,
                correct=m.overall.correct,
                keyed=m.overall.keyed,
                letters_differ=differ[label],
                groups={view: {cat: s.accuracy for cat, s in m.groups[view].items()} for _, view in GROUP_FIELDS},
            )
            for label, m in metrics.items()
        }
    return out


def describe(rules: RuleSet) -> str:
    """One line naming a rule set and the VLMEvalKit code it restates."""
    return f"{rules.name}: VLMEvalKit {rules.vlmevalkit}, matching of {rules.matching}"


def rule_sets_json(figures: Mapping[str, Mapping[str, RuleSetFigures]], headline: RuleSet) -> dict[str, Any]:
    """metrics.json's ``rule_sets``: which set the headline uses, and every set's figures."""
    return {
        "headline": headline.name,
        "sets": {
            name: {
                "vlmevalkit": RULE_SETS[name].vlmevalkit,
                "matching": RULE_SETS[name].matching,
                "use_when": RULE_SETS[name].use_when,
                "models": {
                    label: {
                        "accuracy": f.accuracy,
                        "correct": f.correct,
                        "keyed": f.keyed,
                        "letters_differ_from_headline": f.letters_differ,
                        "groups": {view: dict(cats) for view, cats in f.groups.items()},
                    }
                    for label, f in models.items()
                },
            }
            for name, models in figures.items()
        },
    }


def headline_rows(
    figures: Mapping[str, Mapping[str, RuleSetFigures]], headline: RuleSet
) -> tuple[list[str], list[list[str]]]:
    """The overall accuracy per model under each set (the headline's marked), letters that differ."""
    names = list(figures)
    header = ["model", *(f"{name} *" if name == headline.name else name for name in names)]
    header.append("letters differing from the headline's set")
    labels = list(next(iter(figures.values()), {}))
    rows = []
    for label in labels:
        cells = [pct(figures[name][label].accuracy) for name in names]
        others = (name for name in names if name != headline.name)
        differ = ", ".join(f"{figures[name][label].letters_differ} ({name[-4:]})" for name in others)
        rows.append([label, *cells, differ])
    return header, rows


def group_rows(figures: Mapping[str, Mapping[str, RuleSetFigures]], view: str) -> tuple[list[str], list[list[str]]]:
    """One view's categories, per model and rule set: category | model | acc under each set."""
    names = list(figures)
    header = ["category", "model", *names]
    rows = []
    first = next(iter(figures.values()), {})
    for label, f in first.items():
        for category in f.groups.get(view, {}):
            rows.append([category, label, *(pct(figures[name][label].groups[view].get(category)) for name in names)])
    return header, rows


def predictions_note(headline: RuleSet) -> str:
    """The prediction files' note: the raw answers, and the rule set the run's reports scored them under."""
    return (
        f"The files hold each model's raw answers. This run's reports scored them under {describe(headline)}; "
        "VLMEvalKit scores them under the rules of whichever version reads them (`report --rules NAME` "
        "shows any of the three here, and every report shows all three side by side)."
    )


def headline_note(headline: RuleSet, judged: bool) -> str:
    """What the headline's rule set is, and when to use another."""
    note = (
        f"Scored under {describe(headline)}; use it {headline.use_when}. The other rule sets' figures are "
        "the same answers read by VLMEvalKit's other versions (`report --rules NAME` makes one the headline)."
    )
    if judged:
        note += " The judge's verdicts are kept under every set (it is not asked again)."
    return note


def rules_markdown(
    figures: Mapping[str, Mapping[str, RuleSetFigures]],
    headline: RuleSet,
    table: Callable[[list[str], list[list[str]]], str],
) -> list[str]:
    """report.md's section: the headline under every rule set, then each view's table."""
    parts = [
        "## Under each rule set",
        "",
        "The same answers read by each era of VLMEvalKit (acc %; * the headline's set). "
        + " ".join(f"{describe(rules)}: use it {rules.use_when}." for rules in RULE_SETS.values()),
        "",
        table(*headline_rows(figures, headline)),
        "",
    ]
    for _, view in GROUP_FIELDS:
        parts += [f"### By {view}, under each rule set", "", table(*group_rows(figures, view)), ""]
    return parts


def rules_table(figures: Mapping[str, Mapping[str, RuleSetFigures]], headline: RuleSet) -> Table:
    """The console's table: each model's headline under every rule set."""
    header, rows = headline_rows(figures, headline)
    table = Table(title=f"the same answers under each rule set (acc %; * = {headline.name}, the headline's)")
    for column in header:
        table.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def score_for_report(
    run_dir: Path, records: Sequence[Record], rules: RuleSet, *, rescore: bool = False
) -> list[Record]:
    """``records`` as the reports count them under ``rules``: each model's answers read back as
    one column of VLMEvalKit's prediction file (and, with ``rescore``, every answer read again).
    Where a letter changes, records.jsonl is rewritten, so that the journal and the metrics agree
    (the caller holds the folder's lock)."""
    scored = score_answer_set(records, rules, columns_only=not rescore)
    if scored != list(records):
        rewrite_records(run_dir / RECORDS_FILE, scored)
    return scored


# --- report.html -------------------------------------------------------------------------------


def _saved_rule_sets(run_dir: Path) -> dict[str, Any]:
    """metrics.json's ``rule_sets`` (written before report.html), or {} for a folder without one."""
    try:
        data = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = data.get("rule_sets") if isinstance(data, dict) else None
    return found if isinstance(found, dict) and isinstance(found.get("sets"), dict) else {}


def rules_html(run_dir: Path) -> str:
    """The headline section's paragraph and table: the rule set, and every set's overall figure."""
    saved = _saved_rule_sets(run_dir)
    if not saved:
        return ""
    name = str(saved.get("headline", ""))
    rules = RULE_SETS.get(name)
    sets: dict[str, Any] = saved["sets"]
    labels = list(next(iter(sets.values()), {}).get("models", {}))
    rows = []
    for label in labels:
        cells = [f'<th scope="row">{esc(label)}</th>']
        for set_name, found in sets.items():
            figures = found["models"].get(label, {})
            count = figures.get("letters_differ_from_headline", 0)
            differ = "" if set_name == name else f" <small>({count} letters differ)</small>"
            klass = "num acc" if set_name == name else "num"
            cells.append(f'<td class="{klass}">{pct(figures.get("accuracy"))}{differ}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    intro = (
        f"<p><strong>Rule set: {esc(name)}</strong>"
        + (
            f" (VLMEvalKit {esc(rules.vlmevalkit)}, matching of {esc(rules.matching)}): use it {esc(rules.use_when)}"
            if rules
            else ""
        )
        + ". VLMEvalKit's scoring changed twice after GMAI-MMBench was added: the same answers under each "
        "of its eras (<code>report --rules NAME</code> makes another the headline; nothing is sent):</p>"
    )
    header = ["model", *(f"{n} (headline)" if n == name else n for n in sets)]
    return intro + table(header, rows, caption="Accuracy (%) under each rule set", cls="rulesets") + _groups_html(sets)


def _groups_html(sets: Mapping[str, Any]) -> str:
    """Each view's table under every rule set, folded away (metrics.json holds the same figures)."""
    parts = []
    for _, view in GROUP_FIELDS:
        rows = []
        for label, figures in next(iter(sets.values()), {}).get("models", {}).items():
            for category in figures.get("groups", {}).get(view, {}):
                cells = "".join(
                    f'<td class="num">{pct(found["models"][label]["groups"][view].get(category))}</td>'
                    for found in sets.values()
                )
                rows.append(f'<tr><th scope="row">{esc(category)}</th><td>{esc(label)}</td>{cells}</tr>')
        summary = f"Table: accuracy by {esc(view)} under each rule set"
        parts.append(f"<details><summary>{summary}</summary>{table([view, 'model', *sets], rows)}</details>")
    return "".join(parts)


def paper_rules_note(run_dir: Path) -> str:
    """Beside the paper's table: whether this run's figures are scored under the table's rules."""
    name = str(_saved_rule_sets(run_dir).get("headline", ""))
    if not name:
        return ""
    if name == DEFAULT_RULES.name:
        return f"<p>This run's rows are scored under {esc(name)}, the rules the published table was computed under.</p>"
    return (
        f'<p class="warn">This run\'s rows are scored under {esc(name)}; the published table was computed under '
        f"{esc(DEFAULT_RULES.name)}: see the headline section for this run under that rule set.</p>"
    )

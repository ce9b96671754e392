"""Whether a run answered every item it selected, and what every output says when it did not.

A model's run is complete when every item the run selected has an answer record (ok, unparsed or
refused). What is missing is counted against the selection, not against the records
(``metrics.unanswered``): items that ended in an error, and items never recorded because the model
stopped early (a bad key, ``--token-budget``, ``--max-errors``, a model that could not start), or
the run was interrupted, ended early or was killed. ``assess`` says that from the records and the
run's figures (``rundir.RunFigures``: the selection count, who stopped and why); the console,
report.md and report.html print its ``notice_lines``; the exit statuses of ``run`` and ``report``
are made from its ``verdict`` (the table in ``cli``'s docstring).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gmai_client.protocol.metrics import ModelMetrics, unanswered
from gmai_client.results.report_format import pct
from gmai_client.results.rundir import COMPARE_FILE, RunFigures
from gmai_client.types import Record

#: What became of a run, worst first: the exit statuses are made from it.
Verdict = Literal["interrupted", "stopped", "errors", "empty", "complete"]


@dataclass(frozen=True)
class ModelState:
    """One model's records against the selection, and why it stopped early (if it did)."""

    label: str
    selected: int | None  # None: not counted (records alone)
    recorded: int = 0
    errored: int = 0
    stopped: str = ""
    bad_data: int = 0  # of ``errored``: items the data file holds wrong (``Record.is_data_error``)

    @property
    def unanswered(self) -> int:
        return unanswered(self.selected, self.recorded, self.errored)

    @property
    def never_recorded(self) -> int:
        """Selected items this model has no record of at all (never sent, or lost with the run)."""
        return 0 if self.selected is None else max(0, self.selected - self.recorded)


@dataclass(frozen=True)
class Completeness:
    models: tuple[ModelState, ...]
    selected: int | None
    interrupted: bool = False
    failure: str = ""  # why the whole run ended early
    judge_stopped: str = ""
    judge_failed: int = 0  # items the judge could not judge: every call for them failed
    first_bad_data: str = ""  # the first data error's message: file, row, index and field

    @property
    def verdict(self) -> Verdict:
        if self.interrupted:
            return "interrupted"
        stopped = any(m.stopped or m.never_recorded for m in self.models)
        if self.failure or self.judge_stopped or stopped:
            return "stopped"
        if self.judge_failed or any(m.errored for m in self.models):
            return "errors"
        if not any(m.recorded for m in self.models):
            return "empty"
        return "complete"


def assess(records: Iterable[Record], figures: RunFigures, labels: Sequence[str] = ()) -> Completeness:
    """The run's completeness: its models are ``labels`` (the configuration's order), those the
    figures name and those the records hold."""
    recorded: Counter[str] = Counter()
    errored: Counter[str] = Counter()
    bad_data: Counter[str] = Counter()
    first_bad_data = ""
    never_judged = 0
    for record in records:
        never_judged += record.never_judged
        recorded[record.model] += 1
        errored[record.model] += record.status == "error"
        if record.is_data_error:
            bad_data[record.model] += 1
            first_bad_data = first_bad_data or record.error
    stopped = {m.label: m.stopped for m in figures.models}
    every = dict.fromkeys([*labels, *stopped, *recorded])
    judge = figures.judge
    return Completeness(
        models=tuple(
            ModelState(
                label, figures.selected, recorded[label], errored[label], stopped.get(label, ""), bad_data[label]
            )
            for label in every
        ),
        selected=figures.selected,
        interrupted=figures.interrupted,
        failure=figures.failure,
        judge_stopped=judge.stopped if judge is not None else "",
        # This invocation's count, or the records' own (a judge that failed in an earlier one).
        judge_failed=max(judge.failed_items if judge is not None else 0, never_judged),
        first_bad_data=first_bad_data,
    )


def notice_lines(completeness: Completeness, run_dir: Path, metrics: Mapping[str, ModelMetrics]) -> list[str]:
    """What every output says about a run that did not answer every selected item (nothing when it
    did): per model, the items without an answer and why, both accuracy figures, and the command
    that finishes the run. ``metrics``: the figures of the models that have records."""
    c = completeness
    lines = []
    if c.selected == 0 or (c.verdict == "empty" and c.selected is None):
        lines.append(
            "NOTHING EVALUATED: no item was selected (a data file without rows, or a --select that matches nothing)."
        )
    if c.interrupted:
        lines.append("INTERRUPTED: the run was stopped (Ctrl-C or SIGTERM) before it finished.")
    if c.failure:
        lines.append(f"The run ended early: {c.failure}")
    for model in c.models:
        if model.unanswered:
            lines.append(_model_line(model, metrics.get(model.label)))
    bad_data = sum(model.bad_data for model in c.models)
    if bad_data:  # sending these again can never help: --retry-errors is not the advice
        lines.append(
            f"{bad_data} item(s) could not be read from the data file (the first: {c.first_bad_data}): correct the "
            "data file, then run the same command again (a corrected row is read and sent again)."
        )
    resumable = not (run_dir / COMPARE_FILE).exists()  # a comparison's folder is no run: its runs' lines say how
    if c.judge_failed:
        again = f" Run the same command again (or run --resume {run_dir}) to have them judged." if resumable else ""
        lines.append(
            f"{c.judge_failed} answer(s) no rule could read were never judged (every judge call failed, or the judge "
            f"stopped): counted wrong.{again}"
        )
    if any(model.unanswered > model.bad_data for model in c.models) and resumable:
        retry = " --retry-errors" if any(model.errored > model.bad_data for model in c.models) else ""
        lines.append(f"Finish the run with: python -m gmai_client run --resume {run_dir}{retry}")
    return lines


def _model_line(model: ModelState, m: ModelMetrics | None) -> str:
    of = f"{model.selected} selected" if model.selected is not None else f"{model.recorded} recorded"
    sendable = model.errored - model.bad_data
    why = [f"{sendable} ended in an error"] if sendable else []
    if model.bad_data:
        why.append(f"{model.bad_data} could not be read from the data file")
    if model.never_recorded:
        cause = f"{model.label} stopped early: {model.stopped}" if model.stopped else "the run did not finish"
        why.append(f"{model.never_recorded} never recorded; {cause}")
    line = f"INCOMPLETE: {model.label}: {model.unanswered} of {of} items got no answer ({'; '.join(why)})."
    if m is not None and m.overall.accuracy is not None:
        o = m.overall
        line += (
            f" acc {pct(o.accuracy)}% covers the {o.n} recorded items, errors counted wrong (VLMEvalKit's "
            f"figure); over the {o.scored} answered items: {pct(o.answered_accuracy)}%."
        )
    return line

"""A run is complete when every selected item has an answer; what is missing is counted against the
selection, and every output says how many items and why (the verdict gives the exit status)."""

from __future__ import annotations

from pathlib import Path

from gmai_client.protocol.metrics import compute_metrics
from gmai_client.results.completeness import assess, notice_lines
from gmai_client.results.rundir import JudgeFigures, ModelFigures, RunFigures
from gmai_client.types import Record


def rec(index: int, status: str = "ok") -> Record:
    prediction = None if status == "error" else "A"
    return Record(str(index), "m", status, prediction, answer=("A",), correct=status == "ok")  # type: ignore[arg-type]


def lines(records: list[Record], figures: RunFigures, run_dir: Path = Path("runs/r")) -> list[str]:
    return notice_lines(assess(records, figures, ["m"]), run_dir, compute_metrics(records, figures.selected))


def test_a_model_stopped_after_5_of_50_leaves_45_without_an_answer() -> None:
    figures = RunFigures(selected=50, models=(ModelFigures("m", done=5, stopped="401 from the server"),))
    records = [rec(i) for i in range(5)]
    assert assess(records, figures).verdict == "stopped"
    first, command = lines(records, figures)
    assert first.startswith(
        "INCOMPLETE: m: 45 of 50 selected items got no answer "
        "(45 never recorded; m stopped early: 401 from the server)."
    )
    assert command == "Finish the run with: python -m gmai_client run --resume runs/r"
    assert compute_metrics(records, 50)["m"].unanswered == 45


def test_max_errors_counts_every_item_without_an_answer_not_only_the_errors() -> None:
    # 9 errors and 19 answers recorded of 50 selected: 31 items have no answer.
    records = [rec(i, "error" if i < 9 else "ok") for i in range(28)]
    figures = RunFigures(selected=50, models=(ModelFigures("m", stopped="9 of 28 items failed (--max-errors 9)"),))
    first, command = lines(records, figures)
    assert "m: 31 of 50 selected items got no answer (9 ended in an error; 22 never recorded;" in first
    assert command.endswith("--retry-errors")


def test_a_run_killed_before_its_end_is_incomplete_without_any_stop_reason() -> None:
    records = [rec(i) for i in range(20)]
    figures = RunFigures(selected=60)  # a report of a killed run: the selection counted again, nothing else known
    assert assess(records, figures).verdict == "stopped"
    assert "40 never recorded; the run did not finish" in lines(records, figures)[0]


def test_an_interrupted_run_says_so_and_a_complete_one_says_nothing() -> None:
    records = [rec(i) for i in range(3)]
    interrupted = RunFigures(interrupted=True, selected=10)
    assert assess(records, interrupted).verdict == "interrupted"
    assert lines(records, interrupted)[0].startswith("INTERRUPTED")
    complete = RunFigures(selected=3)
    assert lines(records, complete) == [] and assess(records, complete).verdict == "complete"


def test_nothing_selected_and_a_model_that_never_started_give_their_real_reason() -> None:
    assert lines([], RunFigures(selected=0)) == [
        "NOTHING EVALUATED: no item was selected (a data file without rows, or a --select that matches nothing)."
    ]
    assert assess([], RunFigures(selected=0)).verdict == "empty"
    never = RunFigures(selected=3, models=(ModelFigures("m", stopped="could not start: no such file"),))
    assert assess([], never).verdict == "stopped"
    assert "m: 3 of 3 selected items got no answer (3 never recorded; m stopped early: could not start" in (
        lines([], never)[0]
    )


def test_a_judge_that_failed_on_some_items_is_not_a_complete_run() -> None:
    records = [rec(i, "unparsed") for i in range(4)]
    failed = RunFigures(selected=4, judge=JudgeFigures(model="j", asked=4, fallback=2, failed_items=2))
    assert assess(records, failed).verdict == "errors"
    stopped = RunFigures(selected=4, judge=JudgeFigures(model="j", stopped="every call failed"))
    assert assess(records, stopped).verdict == "stopped"

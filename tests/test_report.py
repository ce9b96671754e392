"""Tests for gmai_client.results.report: the incomplete-run warning, the judge's line, the Markdown report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gmai_client.protocol.metrics import compute_metrics
from gmai_client.results.completeness import assess, notice_lines
from gmai_client.results.report import judge_lines, token_lines, write_reports
from gmai_client.results.rundir import JudgeFigures, RunFigures, read_metrics
from gmai_client.types import Record


def rec(index: str, status: str = "ok", correct: bool = True) -> Record:
    return Record(
        index=index,
        model="m",
        status=status,  # type: ignore[arg-type]
        prediction=None if status == "error" else "A",
        letters=() if status == "error" else ("A",),
        answer=("A",),
        answer_cell="A",
        correct=correct and status != "error",
        lenient_letters=() if status == "error" else ("A",),
        lenient_correct=correct and status != "error",
        task="Bone",
    )


def test_a_run_with_errors_says_it_is_incomplete_with_both_figures_and_the_command(tmp_path: Path) -> None:
    records = [rec("1"), rec("2"), rec("3", correct=False), rec("4", status="error")]
    first, command = notice_lines(assess(records, RunFigures(selected=4)), tmp_path, compute_metrics(records))
    assert "INCOMPLETE: m: 1 of 4 selected items got no answer (1 ended in an error)" in first
    assert "acc 50.00% covers the 4 recorded items" in first and "over the 3 answered items: 66.67%" in first
    assert command == f"Finish the run with: python -m gmai_client run --resume {tmp_path} --retry-errors"
    assert notice_lines(assess([rec("1")], RunFigures(selected=1)), tmp_path, {}) == []


def test_every_output_carries_the_incomplete_warning(tmp_path: Path) -> None:
    records = [rec("1"), rec("2", status="error")]
    write_reports(tmp_path, records)  # no selection count (records alone): the errors are what is known
    assert "INCOMPLETE: m: 1 of 2 recorded items" in (tmp_path / "report.md").read_text()
    assert "Incomplete:" in (tmp_path / "report.html").read_text()
    metrics = (tmp_path / "metrics.json").read_text()
    assert '"incomplete": true' in metrics and '"answered_accuracy": 1.0' in metrics


def test_judge_lines_show_the_fallback_count() -> None:
    figures = RunFigures(judge=JudgeFigures(model="j", asked=5, rescued=2, no_match=1, fallback=2, requests=9))
    lines = judge_lines(figures)
    assert lines[0].startswith("judge j: asked for 5 answers, mapped 2, no option matches 1; 9 requests")
    assert "2 answers got no usable verdict" in lines[1] and "random letter" in lines[1]
    assert judge_lines(RunFigures()) == []


def test_metrics_json_reads_back_into_the_same_types(tmp_path: Path) -> None:
    figures = RunFigures(elapsed_s=1.5, judge=JudgeFigures(model="j", asked=2))
    write_reports(tmp_path, [rec("1"), rec("2", correct=False), rec("3", status="error")], figures)
    document = read_metrics(tmp_path)
    assert document is not None and document.schema == 2 and document.run == figures
    assert document.models["m"] == compute_metrics([rec("1"), rec("2", correct=False), rec("3", status="error")])["m"]


def test_the_token_estimate_is_shown_beside_the_reported_count(tmp_path: Path) -> None:
    records = [replace(rec(str(i)), input_tokens=1000, estimated_input_tokens=900) for i in range(3)] + [
        replace(rec("9"), input_tokens=None, estimated_input_tokens=500)
    ]  # no usage reported: left out
    metrics = compute_metrics(records)
    assert (metrics["m"].reported_input_tokens, metrics["m"].estimated_input_tokens) == (3000, 2700)
    assert token_lines(metrics) == ["m: input tokens reported 3,000, estimated before sending 2,700 (-10.0%)"]
    write_reports(tmp_path, records)
    assert "estimated before sending 2,700" in (tmp_path / "report.md").read_text()

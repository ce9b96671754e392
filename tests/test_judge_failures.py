"""A judge whose calls fail is never a silent success (issue 19 D10): items it could not judge make the
run exit 4 and are counted in every output; a judge failing item after item is stopped (exit 3)
rather than spend every retry on every item. The judge here is a scripted model that fails on cue."""

from __future__ import annotations

import json
from pathlib import Path

from gmai_client.cli import EXIT_ERRORS, EXIT_STOPPED, main

UNREADABLE = "Hard to say, more or less."  # no rule finds a letter: VLMEvalKit asks its judge


def run_with_judge(tmp_path: Path, data: Path, judge_answers: dict[str, object], items: int) -> tuple[int, Path]:
    model, judge = tmp_path / "model.json", tmp_path / "judge.json"
    model.write_text(json.dumps({str(i): UNREADABLE for i in range(items)}), encoding="utf-8")
    judge.write_text(json.dumps(judge_answers), encoding="utf-8")
    code = main(
        [
            "run", "--no-progress", "--data", str(data), "--limit", str(items), "--out", str(tmp_path),
            "--run-name", "j", "-m", f"scripted:{model}", "-B", "label=m", "--judge", f"scripted:{judge}",
            "-c", "1", "--max-attempts", "1",
        ]
    )  # fmt: skip
    return code, tmp_path / "j"


def test_a_judge_whose_every_call_fails_is_stopped_and_the_run_exits_3(tmp_path: Path, small_tsv: Path) -> None:
    failing = {f"judge:{i}": {"error": "ServerError", "message": "HTTP 500"} for i in range(8)}
    code, run_dir = run_with_judge(tmp_path, small_tsv, failing, items=8)
    assert code == EXIT_STOPPED
    judge = json.loads((run_dir / "metrics.json").read_text())["run"]["judge"]
    # Three items in a row, three tries each, all failed: the judge stops; the other five are not asked.
    assert judge["requests"] == 9 and judge["failed_items"] == 3 and judge["fallback"] == 8
    assert judge["stopped"].startswith("every call failed for 3 items in a row (the last: HTTP 500")
    assert "judge stopped: every call failed" in (run_dir / "report.md").read_text()
    assert main(["report", str(run_dir)]) == EXIT_STOPPED


def test_a_judge_failing_on_some_items_is_shown_and_the_run_exits_4(tmp_path: Path, small_tsv: Path) -> None:
    answers: dict[str, object] = {f"judge:{i}": "A" for i in range(5)}
    answers.update({"judge:1": {"error": "ServerError"}, "judge:3": {"error": "RequestTimeout"}})
    code, run_dir = run_with_judge(tmp_path, small_tsv, answers, items=5)
    assert code == EXIT_ERRORS
    judge = json.loads((run_dir / "metrics.json").read_text())["run"]["judge"]
    assert (judge["rescued"], judge["failed_items"], judge["stopped"]) == (3, 2, "")
    assert "judge: every call failed for 2 answers" in (run_dir / "report.md").read_text()
    assert main(["report", str(run_dir)]) == EXIT_ERRORS


def test_answers_a_stopped_judge_never_judged_are_judged_when_the_run_is_run_again(
    tmp_path: Path, small_tsv: Path
) -> None:
    failing = {f"judge:{i}": {"error": "ServerError", "message": "HTTP 500"} for i in range(8)}
    code, run_dir = run_with_judge(tmp_path, small_tsv, failing, items=8)
    assert code == EXIT_STOPPED
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert all(r["status"] == "unparsed" for r in records)  # no verdict: counted wrong, for now
    # Until judged, the folder says so, whatever its metrics.json last said of the judge.
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["run"].pop("judge")
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", str(run_dir)]) == EXIT_ERRORS
    assert "8 answer(s) no rule could read were never judged" in (run_dir / "report.md").read_text()

    # The judge works again: the same command judges the eight answers it never judged.
    code, run_dir = run_with_judge(tmp_path, small_tsv, {f"judge:{i}": "A" for i in range(8)}, items=8)
    assert code == 0
    judge = json.loads((run_dir / "metrics.json").read_text())["run"]["judge"]
    assert (judge["asked"], judge["rescued"]) == (8, 8)
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    latest = {r["index"]: r for r in records}
    assert len(latest) == 8 and all(r["status"] == "ok" and r["letters"] == ["A"] for r in latest.values())

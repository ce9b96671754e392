"""A judge whose calls fail is never a silent success (issue 19 D10): items it could not judge make the
run exit 4 and are counted in every output; a judge failing item after item is stopped (exit 3)
rather than spend every retry on every item. The judge here is a scripted model that fails on cue."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gmai_client.cli import EXIT_ERRORS, EXIT_STOPPED, main
from gmai_client.results.records import read_records

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


def test_a_rerun_judges_from_the_records_without_asking_the_model_again(tmp_path: Path, small_tsv: Path) -> None:
    failing = {f"judge:{i}": {"error": "ServerError", "message": "HTTP 500"} for i in range(4)}
    assert run_with_judge(tmp_path, small_tsv, failing, items=4)[0] == EXIT_STOPPED
    # The model can answer nothing now (every request an error): only its recorded answers can be judged.
    (tmp_path / "model.json").write_text(json.dumps({}), encoding="utf-8")
    judge = tmp_path / "judge.json"
    judge.write_text(json.dumps({f"judge:{i}": "B" for i in range(4)}), encoding="utf-8")
    code = main(["run", "--resume", str(tmp_path / "j"), "--no-progress"])
    assert code == 0
    metrics = json.loads((tmp_path / "j" / "metrics.json").read_text())
    assert metrics["run"]["models"]["m"]["requests_sent"] == 0 and metrics["run"]["judge"]["rescued"] == 4
    latest = {r["index"]: r for r in map(json.loads, (tmp_path / "j" / "records.jsonl").read_text().splitlines())}
    assert {r["prediction"] for r in latest.values()} == {UNREADABLE}
    assert all(r["letters"] == ["B"] and r["status"] == "ok" for r in latest.values())


def test_answers_recorded_before_a_kill_while_the_judge_thinks_are_judged_by_the_rerun(
    tmp_path: Path, small_tsv: Path
) -> None:
    from gmai_client import RunConfig, run
    from gmai_client.config import parse_model_spec
    from tests.batch_kit import interrupted

    model, judge = tmp_path / "model.json", tmp_path / "judge.json"
    model.write_text(json.dumps({str(i): UNREADABLE for i in range(4)}), encoding="utf-8")
    judge.write_text(json.dumps({f"judge:{i}": "A" for i in range(4)}), encoding="utf-8")
    slow_judge = parse_model_spec(f"scripted:{judge}", ["latency=30"])
    config = RunConfig.build(
        [f"scripted:{model}"], data=str(small_tsv), limit=4, out=str(tmp_path), run_name="k", progress=False,
        judge=slow_judge, concurrency=4,
    )  # fmt: skip
    records = tmp_path / "k" / "records.jsonl"

    def kept() -> int:
        return records.read_text().count("the run ended first") if records.exists() else 0

    assert interrupted(config, lambda: kept() == 4).interrupted  # Ctrl-C while the judge thinks
    assert all(r.never_judged for r in read_records(records))  # the four paid answers are on disk
    model.write_text(json.dumps({}), encoding="utf-8")  # the model is not asked again
    again = asyncio.run(run(config.updated(judge=parse_model_spec(f"scripted:{judge}"))))  # latency: no identity
    assert again.run_dir == tmp_path / "k" and not again.interrupted
    assert all(r.letters == ("A",) and r.status == "ok" for r in read_records(records))
    assert again.outcomes[0].sent == 0 and again.judge is not None and again.judge.rescued == 4


def test_a_batch_runs_unjudged_answers_are_judged_by_the_rerun_without_a_new_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.batch_kit import OPENAI_KEY, sample_items, serve, spec

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    api, batches = serve(sample_items(3), processing_polls=1)
    api.answers = lambda request: UNREADABLE  # every answer needs the judge
    judge = tmp_path / "judge.json"
    judge.write_text(json.dumps({"judge:0": "A", "judge:1": {"error": "ServerError"}, "judge:2": "A"}))
    with api:
        command = ["run", "--no-progress", "--limit", "3", "--out", str(tmp_path), "--run-name", "b", "--batch",
                   "-m", spec(api, "openai"), "-B", "batch_poll=0.02", "--judge", f"scripted:{judge}",
                   "--max-attempts", "1", "--no-cache"]  # fmt: skip
        assert main(command) == EXIT_ERRORS
        assert len(batches.batch_ids()) == 1
        judge.write_text(json.dumps({f"judge:{i}": "A" for i in range(3)}))
        assert main(command) == 0
        assert len(batches.batch_ids()) == 1  # no new batch: the recorded answer was judged
    latest = read_records(tmp_path / "b" / "records.jsonl")
    assert len(latest) == 3 and all(r.letters == ("A",) and r.status == "ok" for r in latest)

"""Tests for ``runs``: every run folder under --out in a line, whatever became of its run (finished,
incomplete, interrupted, killed, still running, batches left at the vendor), as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gmai_client import RunConfig
from gmai_client.cli import EXIT_EMPTY, EXIT_ERRORS, EXIT_OK, EXIT_USAGE, main
from gmai_client.data.splits import sample_path
from gmai_client.protocol.prices import load_prices
from gmai_client.results.records import read_records
from gmai_client.results.rundir import RunLock
from tests.batch_kit import interrupted_once_created, keys, sample_items, serve, spec

__all__ = ["keys"]  # the vendors' keys, for the fake API's runs


def _run(out: Path, name: str, *args: str) -> int:
    return main(["run", "--no-progress", "--out", str(out), "--run-name", name, *args])


def _listed(out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["runs", "--out", str(out), "--json"]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    return {Path(run["folder"]).name: run for run in document["runs"]}


def test_runs_says_what_became_of_every_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    items = sample_items(8)
    api, batches = serve(items, processing_polls=50)
    with api:
        assert _run(out, "finished", "--limit", "8", "-m", spec(api, "openai"), "--no-cache") == EXIT_OK
        half = {item.index: "A" for item in items[:4]}  # the other 4 items: nothing scripted, an error each
        script = tmp_path / "script.json"
        script.write_text(json.dumps(half), encoding="utf-8")
        assert _run(out, "incomplete", "--limit", "8", "-m", f"scripted:{script}") == EXIT_ERRORS
        assert _run(out, "killed", "--limit", "8") == EXIT_OK
        (out / "killed" / "metrics.json").unlink()  # what a SIGKILL leaves: records, no metrics
        assert _run(out, "running", "--limit", "5", "-m", "random", "-B", "label=other") == EXIT_OK
        config = RunConfig.build([spec(api, "openai")], limit=6, cache=False, batch=True, out=str(out),
                                 run_name="batched", progress=False)  # fmt: skip
        assert interrupted_once_created(config, batches, 1, out).interrupted

        with RunLock(out / "running"):  # a run still going
            listed = _listed(out, capsys)
            assert main(["runs", "--out", str(out)]) == EXIT_OK
            table = capsys.readouterr().out

    assert {name: run["status"] for name, run in listed.items()} == {
        "finished": "finished",
        "incomplete": "incomplete",
        "killed": "interrupted",
        "running": "in progress",
        "batched": "batches pending",
    }
    finished = listed["finished"]
    assert finished["models"] == ["gpt-4o"] and (finished["done"], finished["selected"]) == (8, 8)
    assert finished["headline"]["gpt-4o"] == 1.0  # the fake API answers every item right
    # Its cost: the tokens the (fake) provider reported, at the shipped list price of gpt-4o.
    records = read_records(out / "finished" / "records.jsonl")
    price = load_prices().price("openai", "gpt-4o")
    assert price is not None and all(r.input_tokens for r in records)
    expected = price.cost(sum(r.input_tokens or 0 for r in records), sum(r.output_tokens or 0 for r in records))
    assert finished["cost_usd"] == pytest.approx(expected, abs=1e-6) and expected > 0
    assert (listed["incomplete"]["done"], listed["incomplete"]["selected"]) == (4, 8)
    assert listed["incomplete"]["why"].endswith(f"run --resume {out / 'incomplete'} --retry-errors")
    assert listed["killed"]["selected"] is None and listed["killed"]["done"] == 8
    assert "batches collect" in listed["batched"]["why"]
    assert listed["running"]["why"].startswith("pid ")
    assert listed["finished"]["rules"] == "vlmevalkit-2024" and listed["finished"]["started"]
    for name in listed:
        assert name in table
    assert "batches pending" in table and "in progress" in table


def test_runs_of_an_empty_or_missing_folder_and_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--out", str(tmp_path / "none")]) == EXIT_OK
    assert "no run folders" in capsys.readouterr().out
    (tmp_path / "runs").write_text("not a folder", encoding="utf-8")
    assert main(["runs", "--out", str(tmp_path / "runs")]) == EXIT_USAGE
    assert "not a folder" in capsys.readouterr().err


def test_a_comparison_folder_is_not_listed_as_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert _run(out, "a", "--limit", "5") == EXIT_OK
    assert _run(out, "b", "--limit", "5", "-m", "random", "-B", "label=r2") == EXIT_OK
    assert main(["compare", str(out / "a"), str(out / "b")]) == EXIT_OK
    assert sorted(_listed(out, capsys)) == ["a", "b"]
    assert any(p.name.startswith("compare-") for p in out.iterdir())


def test_a_folder_with_broken_files_is_listed_as_unreadable_beside_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    assert _run(out, "good", "--limit", "5") == EXIT_OK
    assert _run(out, "edited", "--limit", "5", "-m", "random", "-B", "label=r2") == EXIT_OK
    config = json.loads((out / "edited" / "config.json").read_text(encoding="utf-8"))
    config["config"]["data"] = 5  # edited by hand into nonsense
    (out / "edited" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (out / "torn").mkdir()
    (out / "torn" / "records.jsonl").write_text('{"index": "1", "model": 3}\n', encoding="utf-8")

    listed = _listed(out, capsys)
    assert listed["good"]["status"] == "finished"
    assert listed["edited"]["status"] == listed["torn"]["status"] == "unreadable"
    assert listed["torn"]["why"] and listed["edited"]["why"]


def test_a_run_killed_after_a_resume_is_not_taken_for_the_run_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    assert _run(out, "grow", "--limit", "2") == EXIT_OK
    first_metrics = (out / "grow" / "metrics.json").read_bytes()
    started = json.loads((out / "grow" / "config.json").read_text(encoding="utf-8"))["started"]
    assert main(["run", "--resume", str(out / "grow"), "--limit", "6", "--no-progress"]) == EXIT_OK
    (out / "grow" / "metrics.json").write_bytes(first_metrics)  # as if killed before its metrics were written
    listed = _listed(out, capsys)["grow"]
    assert listed["status"] == "interrupted" and "records were written after its last metrics.json" in listed["why"]
    assert listed["done"] == 6 and listed["selected"] is None
    assert listed["started"] == started  # the run's start, not the resume's


def test_an_empty_run_and_a_run_folder_given_as_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    header_only = tmp_path / "header.tsv"
    header_only.write_text(sample_path().read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    assert _run(out, "none", "--data", str(header_only)) == EXIT_EMPTY
    listed = _listed(out, capsys)["none"]
    assert (listed["status"], listed["why"]) == ("empty", "no item was selected")
    assert (listed["done"], listed["selected"]) == (0, 0)
    assert _run(out, "some", "--limit", "3") == EXIT_OK
    assert main(["runs", "--out", str(out / "some")]) == EXIT_USAGE
    assert "is a run folder" in capsys.readouterr().err

"""The runner end to end: baselines, resume, isolation of failures, stopping, Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest

import gmai_client
from gmai_client.backends.random import RandomBackend
from gmai_client.backends.scripted import ScriptedBackend
from gmai_client.config import RunConfig
from gmai_client.dataset import iter_items, open_dataset
from gmai_client.errors import AuthError, ServerError
from gmai_client.records import read_records
from gmai_client.synthetic import write_tsv
from gmai_client.types import Request
from tests.conftest import write_rows


def run(config: RunConfig, **kwargs):
    return asyncio.run(gmai_client.run(config, **kwargs))


def config(tmp_path: Path, data: Path | str, models=("random",), **kwargs) -> RunConfig:
    return RunConfig.build(list(models), data=[str(data)], out=tmp_path / "runs", progress=False, **kwargs)


def expected_random_accuracy(records) -> float:
    """Random picks one of n options (single answer) or a uniform non-empty subset (multi-answer)."""
    return sum(1 / (2 ** len(r.options) - 1) if r.is_multi_answer else 1 / len(r.options) for r in records) / len(
        records
    )


def test_random_baseline_on_the_bundled_sample_matches_its_expectation(tmp_path: Path) -> None:
    result = run(config(tmp_path, "sample"))
    records = result.records
    assert len(records) == 300 and all(r.status == "ok" for r in records)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["models"]["random"]
    expected = expected_random_accuracy(records)
    standard_error = math.sqrt(expected * (1 - expected) / len(records))
    assert abs(metrics["overall"]["accuracy"] - expected) < 3 * standard_error  # a few points
    assert metrics["groups"]["department"]["N/A"]["n"] > 0
    assert len(metrics["groups"]["clinical VQA task"]) == 18
    assert len(metrics["groups"]["department"]) == 19
    assert len(metrics["groups"]["perceptual granularity"]) == 4


def test_random_baseline_per_view_on_a_larger_file(tmp_path: Path) -> None:
    data = write_tsv(tmp_path / "big.tsv", 2400, seed=11, image_size=16)
    result = run(config(tmp_path, data, concurrency=32))
    by_group: dict[tuple[str, str], list] = defaultdict(list)
    for record in result.records:
        for view, attribute in (
            ("task", record.task),
            ("granularity", record.granularity),
            ("dept", record.department),
        ):
            by_group[(view, attribute)].append(record)
    checked = 0
    for rows in by_group.values():
        if len(rows) < 60:
            continue
        expected = expected_random_accuracy(rows)
        observed = sum(bool(r.correct) for r in rows) / len(rows)
        standard_error = math.sqrt(expected * (1 - expected) / len(rows))
        assert abs(observed - expected) < 4 * standard_error, (rows[0].task, observed, expected)
        checked += 1
    assert checked >= 20


def test_metrics_equal_an_independent_computation_from_records(tmp_path: Path) -> None:
    result = run(config(tmp_path, "sample"))
    lines = [json.loads(line) for line in (result.run_dir / "records.jsonl").read_text().splitlines()]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["models"]["random"]
    for column, view in (
        ("task", "clinical VQA task"),
        ("department", "department"),
        ("granularity", "perceptual granularity"),
        ("modality", "modality"),
    ):
        hits: dict[str, list[int]] = defaultdict(list)
        for line in lines:
            hits[line[column]].append(1 if line["letters"] and sorted(line["letters"]) == sorted(line["answer"]) else 0)
        for name, values in hits.items():
            assert metrics["groups"][view][name]["accuracy"] == pytest.approx(sum(values) / len(values))
            assert metrics["groups"][view][name]["n"] == len(values)
    overall = [1 if sorted(line["letters"]) == sorted(line["answer"]) else 0 for line in lines]
    assert metrics["overall"]["accuracy"] == pytest.approx(sum(overall) / len(overall))


def test_same_command_resumes_and_sends_nothing_twice(tmp_path: Path, small_tsv: Path) -> None:
    sent: list[str] = []

    def answer(request: Request) -> str:
        sent.append(request.item_index)
        return "A"

    base = config(tmp_path, small_tsv, models=("scripted:x",), run_name="resume")
    first = run(RunConfig(**{**base.__dict__, "limit": 25}), backends={"scripted:x": ScriptedBackend(answer)})
    assert len(first.records) == 25
    second = run(base, backends={"scripted:x": ScriptedBackend(answer)})
    assert len(second.records) == 60
    assert sorted(sent, key=int) == [str(i) for i in range(60)]  # every item sent exactly once


def test_a_failing_item_is_isolated_and_recorded(tmp_path: Path, small_tsv: Path) -> None:
    def answer(request: Request) -> str | Exception:
        return ServerError("boom 500", status=500) if request.item_index in ("3", "7") else "A"

    cfg = config(tmp_path, small_tsv, models=("scripted:x",), max_attempts=2)
    result = run(cfg, backends={"scripted:x": ScriptedBackend(answer)})
    errors = {r.index: r for r in result.records if r.status == "error"}
    assert set(errors) == {"3", "7"} and errors["3"].error_kind == "server_error"
    assert errors["3"].attempts == 2 and errors["3"].retries == ("server_error", "server_error")
    assert len(result.records) == 60
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["models"]["scripted:x"]["overall"]
    assert metrics["errored"] == 2 and metrics["scored"] == 58


def test_auth_error_stops_only_that_model(tmp_path: Path, small_tsv: Path) -> None:
    def answer(request: Request) -> str | Exception:
        return AuthError("invalid key") if int(request.item_index) >= 5 else "B"

    cfg = config(tmp_path, small_tsv, models=("scripted:bad", "random"), concurrency=1)
    result = run(cfg, backends={"scripted:bad": ScriptedBackend(answer)})
    outcome = {o.spec.label: o for o in result.outcomes}
    assert "invalid key" in outcome["scripted:bad"].stopped
    bad = [r for r in result.records if r.model == "scripted:bad"]
    # The auth failure says nothing about the item: it is left unrecorded, so a rerun sends it.
    assert len(bad) == 5 and all(r.status == "ok" for r in bad)
    assert len([r for r in result.records if r.model == "random"]) == 60

    fixed = run(cfg, backends={"scripted:bad": ScriptedBackend(lambda request: "B")})
    assert len([r for r in fixed.records if r.model == "scripted:bad"]) == 60


def test_replay_rescores_predictions_made_elsewhere(tmp_path: Path, small_tsv: Path) -> None:
    items = list(iter_items(open_dataset([small_tsv])))
    predictions = tmp_path / "preds.jsonl"
    with predictions.open("w") as handle:
        for item in items[:40]:
            text = f"The answer is ({item.answer[0]})." if int(item.index) % 2 else "I cannot tell."
            handle.write(json.dumps({"index": int(item.index), "prediction": text}) + "\n")
    result = run(config(tmp_path, small_tsv, models=(f"replay:{predictions}",)))
    by_index = {r.index: r for r in result.records}
    assert all(by_index[str(i)].correct for i in range(1, 40, 2) if not items[i].is_multi_answer)
    assert all(by_index[str(i)].status == "unparsed" for i in range(0, 40, 2))
    assert all(by_index[str(i)].status == "error" and "no prediction" in by_index[str(i)].error for i in range(40, 60))


def test_bad_rows_become_error_records_naming_the_row(tmp_path: Path, small_tsv: Path) -> None:
    lines = small_tsv.read_text().splitlines()
    header = lines[0].split("\t")
    broken = lines[2].split("\t")
    broken[header.index("image")] = "not base64 at all!"
    path = write_rows(tmp_path / "broken.tsv", header, [lines[1].split("\t"), broken])
    result = run(config(tmp_path, path))
    errors = [r for r in result.records if r.status == "error"]
    assert len(errors) == 1 and errors[0].index == "1"
    assert "row 2" in errors[0].error and "image" in errors[0].error


def test_ctrl_c_keeps_what_finished(tmp_path: Path, small_tsv: Path) -> None:
    async def scenario():
        backend = ScriptedBackend(lambda request: "A", latency=0.05)
        task = asyncio.create_task(
            gmai_client.run(
                config(tmp_path, small_tsv, models=("scripted:slow",), concurrency=2),
                backends={"scripted:slow": backend},
            )
        )
        await asyncio.sleep(0.4)
        task.cancel()  # what asyncio.run does on Ctrl-C
        return await task

    result = asyncio.run(scenario())
    assert result.interrupted
    on_disk = read_records(result.run_dir / "records.jsonl")
    assert 0 < len(on_disk) < 60 and len(on_disk) == len(result.records)
    assert (result.run_dir / "metrics.json").exists()


def test_sdk_accepts_backend_objects_and_several_models(tmp_path: Path, small_tsv: Path) -> None:
    cfg = config(tmp_path, small_tsv, models=("random", "random:x"), select=["granularity=Box Level|Mask Level"])
    result = run(cfg, backends={"random:x": RandomBackend(seed=5)})
    models = {r.model for r in result.records}
    assert models == {"random", "random:x"}
    assert all(r.granularity in ("Box Level", "Mask Level") for r in result.records)

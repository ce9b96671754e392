"""The runner end to end: baselines, resume, isolation of failures, stopping, Ctrl-C; the run folder's
identity and lock; a failure that ends the whole run."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import math
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from rich.console import Console

import gmai_client
from gmai_client.backends import registry
from gmai_client.backends.random import RandomBackend
from gmai_client.backends.scripted import ScriptedBackend
from gmai_client.config import RunConfig, parse_model_spec
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.errors import AuthError, ConfigError, ServerError
from gmai_client.results.records import RecordWriter, read_records
from gmai_client.testing.synthetic import write_tsv
from gmai_client.types import Request, Response, SamplingParams
from tests.conftest import write_rows


def run(config: RunConfig, **kwargs):
    return asyncio.run(gmai_client.run(config, **kwargs))


def config(tmp_path: Path, data: Path | str, models=("random",), **kwargs) -> RunConfig:
    return RunConfig.build(list(models), data=[str(data)], out=tmp_path / "runs", progress=False, **kwargs)


def expected_random_accuracy(records) -> float:
    """Random picks one of n options (single answer) or a uniform non-empty subset (multi-answer).
    The headline is VLMEvalKit's reading, where a multi-answer key ("A,C") is never hit."""
    return sum(0.0 if r.is_multi_answer else 1 / len(r.options) for r in records) / len(records)


def expected_lenient_accuracy(records) -> float:
    """The lenient reading scores multi-answer items by set match: one of the 2^n - 1 subsets."""
    return sum(1 / (2 ** len(r.options) - 1) if r.is_multi_answer else 1 / len(r.options) for r in records) / len(
        records
    )


def test_random_baseline_on_the_bundled_sample_matches_its_expectation(tmp_path: Path) -> None:
    result = run(config(tmp_path, "sample"))
    records = result.records
    assert len(records) == 300 and all(r.status == "ok" for r in records if not r.is_multi_answer)
    assert all(r.lenient_status == "ok" for r in records)  # a subset of letters is read there
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["models"]["random"]
    for figure, expected in (
        (metrics["overall"]["accuracy"], expected_random_accuracy(records)),
        (metrics["overall"]["lenient_accuracy"], expected_lenient_accuracy(records)),
    ):
        standard_error = math.sqrt(expected * (1 - expected) / len(records))
        assert abs(figure - expected) < 3 * standard_error  # a few points
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
    first = run(base.updated(limit=25), backends={"scripted:x": ScriptedBackend(answer)})
    assert len(first.records) == 25
    second = run(base, backends={"scripted:x": ScriptedBackend(answer)})
    assert len(second.records) == 60
    assert sorted(sent, key=int) == [str(i) for i in range(60)]  # every item sent exactly once


class CountsStarts(ScriptedBackend):
    """A scripted backend that counts its starts (a Ray model's start launches its actors)."""

    starts = 0

    async def start(self) -> None:
        self.starts += 1


def test_reopening_a_finished_run_starts_no_backend(tmp_path: Path, small_tsv: Path) -> None:
    # `--executor ray` spent 34 s starting actors to reopen a run that had nothing left to send.
    cfg = config(tmp_path, small_tsv, models=("scripted:x",), run_name="done")
    first = CountsStarts(lambda request: "A")
    run(cfg, backends={"scripted:x": first})
    assert first.starts == 1 and len(first.requests) == 60

    again = CountsStarts(lambda request: "A")
    result = run(cfg, backends={"scripted:x": again})
    assert again.starts == 0 and again.requests == []
    (outcome,) = result.outcomes
    assert outcome.skipped == 60 and outcome.stopped == "" and len(result.records) == 60


def big_image_tsv(path: Path, n_items: int, side: int) -> tuple[Path, int]:
    """``n_items`` rows, each with its own copy of one noisy ``side`` px PNG (1.4 MB of base64 at
    600): (path, the image's base64 length)."""
    import base64
    import csv

    import numpy as np
    from PIL import Image as PILImage

    pixels = np.random.default_rng(0).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    small = write_tsv(path.with_suffix(".small.tsv"), n_items, seed=2, image_size=8)
    with small.open(encoding="utf-8", newline="") as source, path.open("w", encoding="utf-8", newline="") as out:
        csv.field_size_limit(1 << 30)
        rows = csv.reader(source, delimiter="\t")
        header = next(rows)
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            row[header.index("image")] = encoded
            writer.writerow(row)
    return path, len(encoded)


def test_a_worker_waiting_for_its_next_item_holds_nothing_of_the_last(tmp_path: Path) -> None:
    # At --concurrency 256, each idle worker kept its last item, ~2 MB of image: 500 MB held by
    # requests no longer in flight (what peer.py measured as "8 MB per request in flight").
    import tracemalloc

    n_items = 64
    data, image_chars = big_image_tsv(tmp_path / "big.tsv", n_items, side=600)
    cfg = config(tmp_path, data, models=("scripted:x",), concurrency=n_items, cache=False)
    held: list[int] = []  # memory in use as each request arrives

    class Answers(ScriptedBackend):
        async def generate(self, request: Request) -> Response:
            held.append(tracemalloc.get_traced_memory()[0])
            return Response("A")  # keeping no list of the requests, as a real backend

    tracemalloc.start()
    try:
        result = run(cfg, backends={"scripted:x": Answers(lambda request: "A")})
    finally:
        tracemalloc.stop()
    assert len(result.records) == n_items == len(held)
    # When the last item is asked, the others are answered: nothing should hold their images.
    images_held = (held[-1] - held[0]) / image_chars
    assert images_held < n_items / 4, f"{images_held:.0f} images held when the last item was asked"


def test_a_failing_item_is_isolated_and_recorded(tmp_path: Path, small_tsv: Path) -> None:
    def answer(request: Request) -> str | Exception:
        return ServerError("boom 500", status=500) if request.item_index in ("3", "7") else "A"

    cfg = config(tmp_path, small_tsv, models=("scripted:x",), max_attempts=2)
    result = run(cfg, backends={"scripted:x": ScriptedBackend(answer)})
    errors = {r.index: r for r in result.records if r.status == "error"}
    assert set(errors) == {"3", "7"} and errors["3"].error_kind == "server_error"
    assert errors["3"].attempts == 2 and errors["3"].retries == ("server_error", "server_error")
    assert len(result.records) == 60
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["models"]["x"]["overall"]
    assert metrics["errored"] == 2 and metrics["scored"] == 58


def test_auth_error_stops_only_that_model(tmp_path: Path, small_tsv: Path) -> None:
    def answer(request: Request) -> str | Exception:
        return AuthError("invalid key") if int(request.item_index) >= 5 else "B"

    cfg = config(tmp_path, small_tsv, models=("scripted:bad", "random"), concurrency=1)
    result = run(cfg, backends={"scripted:bad": ScriptedBackend(answer)})
    outcome = {o.spec.label: o for o in result.outcomes}
    assert "invalid key" in outcome["bad"].stopped
    bad = [r for r in result.records if r.model == "bad"]
    # The auth failure says nothing about the item: it is left unrecorded, so a rerun sends it.
    assert len(bad) == 5 and all(r.status == "ok" for r in bad)
    assert len([r for r in result.records if r.model == "random"]) == 60

    fixed = run(cfg, backends={"scripted:bad": ScriptedBackend(lambda request: "B")})
    assert len([r for r in fixed.records if r.model == "bad"]) == 60


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
    assert models == {"random", "x"}  # the default label is the model's name
    assert all(r.granularity in ("Box Level", "Mask Level") for r in result.records)


def test_run_prints_nothing_unless_given_a_console(tmp_path: Path, small_tsv: Path, capsys) -> None:
    result = run(config(tmp_path, small_tsv, run_name="quiet"))
    assert (result.run_dir / "report.md").exists() and str(result.run_dir / "metrics.json") in result.files
    assert capsys.readouterr() == ("", "")
    console = Console(file=io.StringIO(), width=160)
    run(config(tmp_path, small_tsv, run_name="loud"), console=console)
    assert "GMAI-MMBench accuracy" in console.file.getvalue()
    assert capsys.readouterr() == ("", "")


# --- resume sends only what is not finished --------------------------------------------------------


def test_resume_sends_only_unfinished_items_and_retry_errors_only_the_errors(tmp_path: Path, small_tsv: Path) -> None:
    """Finished means any record that is not an error: ok, unparsed and refused answers are never
    asked again; errored ones only with --retry-errors; the rest (beyond the first run's limit) once."""
    sent: list[str] = []

    def answer(request: Request) -> str | Exception:
        sent.append(request.item_index)
        kind = int(request.item_index) % 4
        if kind == 1:
            return "Hmm, hard to say."  # no rule reads a letter: unparsed
        if kind == 2:
            return "Sorry, I can't help with images of people yet."  # refused
        if kind == 3:
            return ServerError("boom 500", status=500)
        return "A"

    def once(**changes) -> list[str]:
        sent.clear()
        base = config(tmp_path, small_tsv, models=("scripted:x",), run_name="resume", max_attempts=1)
        run(base.updated(**changes), backends={"scripted:x": ScriptedBackend(answer)})
        return sorted(sent, key=int)

    assert once(limit=40) == [str(i) for i in range(40)]
    statuses = {r.index: r.status for r in read_records(tmp_path / "runs/resume/records.jsonl")}
    assert {statuses[str(i)] for i in range(40)} == {"ok", "unparsed", "refused", "error"}

    assert once() == [str(i) for i in range(40, 60)]  # the larger set: only the 20 never asked
    assert once() == []  # all finished (errors included, without --retry-errors)
    assert once(retry_errors=True) == [str(i) for i in range(3, 60, 4)]  # exactly the errored ones
    records = read_records(tmp_path / "runs/resume/records.jsonl")
    assert len(records) == 60


# --- the run folder's identity (issue 13.3) ---------------------------------------------------------


class Identified(RandomBackend):
    """The random baseline, reporting whatever endpoint it is told (as an API backend reports the
    endpoint it resolved from @URL, base_url= or OPENAI_BASE_URL)."""

    def __init__(self, endpoint: str):
        super().__init__(seed=0)
        self.endpoint = endpoint

    def identity(self):
        return {**super().identity(), "endpoint": self.endpoint}


def folder_of(cfg: RunConfig, backends=None) -> str:
    from gmai_client.results import rundir

    files = [str(f.path) for f in open_dataset([Path(cfg.data.files[0])])]
    built = {spec.label: (backends or {}).get(spec.label) or registry.create(spec) for spec in cfg.models}
    judge = registry.create(cfg.protocol.judge) if cfg.protocol.judge else None
    return rundir.folder_name(cfg, rundir.identity(cfg, files, built, judge, registry.answer_neutral_options))


def test_every_option_that_can_change_an_answer_names_another_folder(tmp_path: Path, small_tsv: Path) -> None:
    pytest.importorskip("openai")

    def openai(*options: str) -> RunConfig:
        spec = parse_model_spec("openai:gpt-4o@http://127.0.0.1:9/v1", ["label=gpt", *options])
        return RunConfig.build([spec], data=[str(small_tsv)], out=tmp_path)

    low = folder_of(openai("detail=low"))
    assert folder_of(openai("detail=high")) != low
    assert folder_of(openai("detail=low", "max_image_side=512")) != low
    assert folder_of(openai("detail=low", "max_tokens_field=max_completion_tokens")) != low
    # Pace, patience and the account change no answer: the same folder, so a rerun resumes it.
    assert folder_of(openai("detail=low", "rpm=60", "tpm=1000", "timeout=5", "api_key_env=MY_CRED")) == low
    assert folder_of(openai("detail=low").updated(concurrency=3, max_attempts=2, rpm=5.0)) == low
    assert folder_of(openai("detail=low").updated(params=SamplingParams(max_tokens=64))) != low
    assert folder_of(openai("detail=low").updated(judge=parse_model_spec("random"))) != low
    # The paper's multi-answer instruction changes what a multi-answer item is asked.
    assert folder_of(openai("detail=low").updated(multi_answer_instruction=True)) != low

    # The endpoint the backend resolved (not only the one written in the spec) is part of it.
    random_run = RunConfig.build(["random"], data=[str(small_tsv)], out=tmp_path)
    here = folder_of(random_run, {"random": Identified("http://a:8000/v1")})
    assert folder_of(random_run, {"random": Identified("http://b:8000/v1")}) != here
    assert folder_of(random_run, {"random": Identified("http://a:8000/v1")}) == here


def test_a_named_folder_holding_another_run_is_refused_saying_what_differs(tmp_path: Path, small_tsv: Path) -> None:
    first = config(tmp_path, small_tsv, models=("random",), run_name="fixed", limit=10)
    run(first)
    run_dir = tmp_path / "runs/fixed"
    saved = (run_dir / "config.json").read_text()
    journal = (run_dir / "records.jsonl").read_text()

    with_seed = first.updated(models=[parse_model_spec("random", ["seed=7"])])
    with pytest.raises(ConfigError, match=r"holds another run.*models\.random\.options\.seed: not set in the folder"):
        run(with_seed)
    other_model = first.updated(models=[parse_model_spec("random", ["label=other"])])
    with pytest.raises(ConfigError, match="models: random in the folder, other here"):
        run(other_model)
    with pytest.raises(ConfigError, match=r"resolved\.models\.random\.endpoint"):
        run(first, backends={"random": Identified("http://elsewhere/v1")})
    with pytest.raises(ConfigError, match="a limit may only grow"):
        run(first.updated(limit=5))
    with pytest.raises(ConfigError, match=r"params\.temperature: 0\.0 in the folder, 0\.5 here"):
        run(first.updated(params=SamplingParams(temperature=0.5)))
    # Refused before anything was sent or rewritten: the folder still describes its own records.
    assert (run_dir / "config.json").read_text() == saved
    assert (run_dir / "records.jsonl").read_text() == journal

    grown = run(first.updated(limit=20))  # a larger limit extends the run
    assert len(grown.records) == 20
    assert json.loads((run_dir / "config.json").read_text())["config"]["data"]["limit"] == 20


# --- the run-folder lock (issue 13.7) ---------------------------------------------------------------


def test_a_second_process_in_a_run_folder_is_refused_naming_the_first(tmp_path: Path, small_tsv: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({str(i): "A" for i in range(60)}))
    spec = f"scripted:{script}"
    command = [
        sys.executable, "-m", "gmai_client", "run", "--no-progress", "--data", str(small_tsv), "-m", spec,
        "-B", "latency=0.5", "-c", "1", "--out", str(tmp_path / "runs"), "--run-name", "shared",
    ]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "runs/shared/.lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = config(tmp_path, small_tsv, models=(spec,), run_name="shared")
        busy = rf"runs/shared is in use by another gmai_client process \(pid {first.pid}\)"
        with pytest.raises(ConfigError, match=busy):
            run(second)
    finally:
        first.kill()
        first.wait(timeout=30)
    # The first process died holding the lock: the lock died with it, and the next run takes over.
    assert (tmp_path / "runs/shared/.lock").read_text().strip() == str(first.pid)
    resumed = run(config(tmp_path, small_tsv, models=(spec,), run_name="shared", concurrency=8))
    assert len(resumed.records) == 60


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path: Path, small_tsv: Path) -> None:
    run_dir = tmp_path / "runs/stale"
    run_dir.mkdir(parents=True)
    (run_dir / ".lock").write_text("999999999\n")  # no such process, and no lock held on the file
    result = run(config(tmp_path, small_tsv, run_name="stale"))
    assert len(result.records) == 60


# --- a failure ends the run at once (issue 13.12) ---------------------------------------------------


@pytest.mark.timeout(60)
def test_a_full_disk_ends_the_run_promptly_keeping_what_was_recorded(
    tmp_path: Path, small_tsv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = 0
    original = RecordWriter.write

    def write(self: RecordWriter, record) -> None:
        nonlocal written
        if written >= 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, record)
        written += 1

    monkeypatch.setattr(RecordWriter, "write", write)
    # Two models, queues far smaller than the file: a producer waiting on a full queue nobody
    # drains any more is what hung for ever before.
    result = run(config(tmp_path, small_tsv, models=("random", "random:b"), concurrency=2))
    assert "No space left on device" in result.failure and "records.jsonl" in result.failure
    assert all("No space left on device" in o.stopped for o in result.outcomes)
    assert len(read_records(result.run_dir / "records.jsonl")) == 10  # everything recorded is kept
    assert json.loads((result.run_dir / "metrics.json").read_text())["run"]["models"]["random"]["stopped"]


@pytest.mark.timeout(60)
def test_data_that_breaks_mid_file_ends_the_run_with_the_reason(
    tmp_path: Path, small_tsv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gmai_client.runner.wiring import Items

    real = Items.entries

    def breaking(self: Items):
        for n, entry in enumerate(real(self)):
            if n == 30:
                raise OSError(errno.EIO, "Input/output error", str(small_tsv))
            yield entry

    monkeypatch.setattr(Items, "entries", breaking)
    result = run(config(tmp_path, small_tsv, concurrency=2))
    assert "reading the data failed" in result.failure and "Input/output error" in result.failure
    assert 0 < len(read_records(result.run_dir / "records.jsonl")) <= 30

"""``run --batch`` as a process that dies: SIGKILL after it submitted, SIGKILL right after a create whose
answer was lost, a server restarted in the middle, Ctrl-C then ``batches cancel`` and ``batches collect``.

The client is ``python -m gmai_client run`` in a subprocess; FakeAPI + FakeBatches (the real SDKs'
wire formats) run in this process, keeping their state in a directory that survives a restart.
The fake's stats say whether any batch was created twice (``duplicate_batches``) and how often an
item was submitted; records.jsonl is read line by line, so an item recorded twice would show.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

from gmai_client.cli import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, main
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.splits import sample_path
from gmai_client.results.batch_journal import BatchJournal
from gmai_client.results.records import read_records
from gmai_client.testing.fake_api import FakeAPI, oracle
from gmai_client.testing.fake_batches import FakeBatches
from gmai_client.types import Item
from tests.conftest import free_ports

ENV = {"OPENAI_API_KEY": "sk-test-CRASH-0123456789abcdef", "ANTHROPIC_API_KEY": "sk-ant-test-CRASH-0123456789"}
VENDORS = ("openai", "anthropic")
CREATE = {"openai": "batches.create", "anthropic": "messages.batches.create"}
LIST = {"openai": "batches.list", "anthropic": "messages.batches.list"}


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def sample_items(n: int) -> list[Item]:
    return [e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item)][:n]


def model_spec(api: FakeAPI, vendor: str) -> str:
    return f"openai:gpt-4o@{api.base_url_openai}" if vendor == "openai" else f"anthropic:c@{api.base_url_anthropic}"


def command(api: FakeAPI, vendor: str, out: Path, n: int, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "gmai_client", "run", "--no-progress", "--no-cache", "--batch", "--limit", str(n),
        "--out", str(out), "-m", model_spec(api, vendor), "-B", "batch_poll=0.05", *options,
    ]  # fmt: skip


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env={**os.environ, **ENV}, stdout=out, stderr=subprocess.STDOUT)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended early ({process.returncode}): {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting; the run said: {log.read_text()[-2000:]}")
        time.sleep(0.02)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def only_run_dir(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def submitted(out: Path) -> int:
    """Batches the client's journal holds with their vendor ids."""
    if not out.exists() or not any(out.iterdir()):
        return 0
    return sum(1 for b in BatchJournal(only_run_dir(out)).read().values() if b.batch_id)


def recorded_lines(run_dir: Path) -> Counter[str]:
    """How many lines of records.jsonl each item has (a torn last line is not a record)."""
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    return Counter(json.loads(line)["index"] for line in lines if line.strip())


def rerun(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=180)


# ---------------------------------------------------------------------- SIGKILL


@pytest.mark.parametrize("vendor", VENDORS)
def test_killed_after_submitting_the_rerun_follows_its_batches_and_pays_nothing_twice(
    tmp_path: Path, vendor: str
) -> None:
    items = sample_items(40)
    api = FakeAPI(answers=oracle(items))
    batches = FakeBatches(api, processing_s=4.0)  # every batch runs 4 s: the kill comes first
    with api:
        argv = command(api, vendor, tmp_path / "runs", 40, "-B", "batch_size=8")
        process = start(argv, tmp_path / "first.log")
        wait_for(lambda: submitted(tmp_path / "runs") == 5, process, tmp_path / "first.log")
        kill(process)
        run_dir = only_run_dir(tmp_path / "runs")
        assert not (run_dir / "records.jsonl").exists() or recorded_lines(run_dir) == Counter()

        again = rerun(argv)
        assert again.returncode == EXIT_OK, again.stdout + again.stderr
        stats = api.stats()["batches"]
    assert stats["created"] == {vendor: 5}  # the rerun created none
    assert stats["duplicate_batches"] == 0 and stats["max_submissions_per_item"] == 1
    assert stats["max_answers_per_item"] == 1
    lines = recorded_lines(run_dir)
    assert sorted(lines) == sorted(i.index for i in items) and set(lines.values()) == {1}
    assert all(r.status != "error" for r in read_records(run_dir / "records.jsonl"))
    assert batches.batch_ids(vendor) == [b.batch_id for b in BatchJournal(run_dir).read().values()]


@pytest.mark.parametrize("vendor", VENDORS)
def test_killed_right_after_a_create_whose_answer_was_lost_the_rerun_finds_that_batch(
    tmp_path: Path, vendor: str
) -> None:
    items = sample_items(12)
    api = FakeAPI(answers=oracle(items))
    batches = FakeBatches(api, processing_polls=2)
    batches.inject(CREATE[vendor], "lost")  # the first batch is created; the client hears a reset
    batches.inject(LIST[vendor], "status", status=503, times=1000)  # ...and cannot look for it yet
    with api:
        argv = command(api, vendor, tmp_path / "runs", 12, "-B", "batch_size=6")
        process = start(argv, tmp_path / "first.log")

        def looking() -> bool:
            return api.stats()["batches"]["refused"].get(f"{LIST[vendor]}:503", 0) >= 1

        wait_for(looking, process, tmp_path / "first.log")
        kill(process)
        run_dir = only_run_dir(tmp_path / "runs")
        (intent,) = BatchJournal(run_dir).read().values()
        assert intent.state == "intent" and not intent.batch_id  # on disk before the create was sent
        assert len(batches.batch_ids(vendor)) == 1  # ...and the vendor made it

        batches.reset()  # the list endpoint answers again
        again = rerun(argv)
        assert again.returncode == EXIT_OK, again.stdout + again.stderr
        stats = api.stats()["batches"]
    assert len(batches.batch_ids(vendor)) == 2  # the lost one adopted, the second chunk sent once
    assert stats["duplicate_batches"] == 0 and stats["max_submissions_per_item"] == 1
    journal = BatchJournal(run_dir).read()
    assert journal[intent.key].batch_id == batches.batch_ids(vendor)[0]
    assert set(recorded_lines(run_dir).values()) == {1} and len(recorded_lines(run_dir)) == 12
    assert not any((run_dir / "batch-spool").glob("*"))  # what the killed run had spooled is gone


@pytest.mark.parametrize(
    ("vendor", "stuck", "fault"),
    [("openai", "files.create", "status"), ("openai", "batches.create", "reset"),
     ("anthropic", "messages.batches.create", "reset")],
)  # fmt: skip
def test_killed_before_the_vendor_created_a_batch_the_rerun_sends_its_items(
    tmp_path: Path, vendor: str, stuck: str, fault: str
) -> None:
    items = sample_items(12)
    api = FakeAPI(answers=oracle(items))
    batches = FakeBatches(api, processing_polls=2)
    # The first batch's upload, or its create, never gets through (an error, a dropped connection):
    # the run is killed there, its journal holding that batch as an intent the vendor never made.
    batches.inject(stuck, fault, status=500, times=1000)
    with api:
        argv = command(api, vendor, tmp_path / "runs", 12, "-B", "batch_size=6")
        process = start(argv, tmp_path / "first.log")
        wait_for(lambda: sum(c.endpoint == stuck for c in batches.calls) >= 2, process, tmp_path / "first.log")
        kill(process)
        run_dir = only_run_dir(tmp_path / "runs")
        assert [b.state for b in BatchJournal(run_dir).read().values()] == ["intent"]
        assert batches.batch_ids() == []

        batches.reset()
        again = rerun(argv)
        assert again.returncode == EXIT_OK, again.stdout + again.stderr
        stats = api.stats()["batches"]
    lines = recorded_lines(run_dir)  # every item sent and recorded, once
    assert sorted(lines) == sorted(i.index for i in items) and set(lines.values()) == {1}
    assert stats["created"] == {vendor: 2} and stats["max_submissions_per_item"] == 1
    assert [b.state for b in BatchJournal(run_dir).read().values()] == ["void", "collected", "collected"]


def test_an_upload_a_killed_run_never_heard_back_from_is_deleted_by_the_rerun(tmp_path: Path) -> None:
    items = sample_items(6)
    api = FakeAPI(answers=oracle(items))
    batches = FakeBatches(api, processing_polls=2)
    batches.inject("files.create", "lost", times=1000)  # stored at the vendor; the client never hears
    with api:
        argv = command(api, "openai", tmp_path / "runs", 6)
        process = start(argv, tmp_path / "first.log")
        wait_for(lambda: api.stats()["batches"]["files"] >= 2, process, tmp_path / "first.log")
        kill(process)
        assert [b.state for b in BatchJournal(only_run_dir(tmp_path / "runs")).read().values()] == ["intent"]

        batches.reset()
        again = rerun(argv)
        assert again.returncode == EXIT_OK, again.stdout + again.stderr
        stats = api.stats()["batches"]
    assert stats["files"] == 0  # the orphaned uploads too, not only the batch's own files
    assert len(recorded_lines(only_run_dir(tmp_path / "runs"))) == 6


# ---------------------------------------------------------------------- the server restarts


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_server_restart_in_the_middle_loses_nothing(tmp_path: Path, vendor: str) -> None:
    items = sample_items(16)
    (port,) = free_ports(1)
    state = tmp_path / "state"

    def server() -> FakeAPI:
        api = FakeAPI(answers=oracle(items), port=port)
        FakeBatches(api, state_dir=state, processing_polls=8)
        return api.start()

    api = server()
    try:
        argv = command(api, vendor, tmp_path / "runs", 16, "-B", "batch_size=8")
        process = start(argv, tmp_path / "run.log")

        def polled() -> bool:
            return api.stats()["batches"]["calls"].get(CREATE[vendor].replace("create", "retrieve"), 0) >= 4

        wait_for(polled, process, tmp_path / "run.log")
        api.stop()  # down: the client's polls fail to connect and back off
        time.sleep(0.3)
        api = server()  # the same port, the same state: every batch is still there
        process.wait(timeout=120)
        assert process.returncode == EXIT_OK, (tmp_path / "run.log").read_text()[-2000:]
        stats = api.stats()["batches"]
    finally:
        api.stop()
    assert stats["created"] == {vendor: 2} and stats["duplicate_batches"] == 0 and stats["answered"] == 16
    run_dir = only_run_dir(tmp_path / "runs")
    assert set(recorded_lines(run_dir).values()) == {1} and len(recorded_lines(run_dir)) == 16


# ---------------------------------------------------------------------- Ctrl-C, cancel, collect


@pytest.mark.parametrize("vendor", VENDORS)
def test_ctrl_c_then_batches_cancel_then_collect_then_retry_errors(
    tmp_path: Path, vendor: str, capsys: pytest.CaptureFixture[str]
) -> None:
    items = sample_items(10)
    api = FakeAPI(answers=oracle(items))
    batches = FakeBatches(api, processing_s=600)  # would take ten minutes
    with api:
        argv = command(api, vendor, tmp_path / "runs", 10, "-B", "batch_size=5")
        process = start(argv, tmp_path / "run.log")
        wait_for(lambda: submitted(tmp_path / "runs") == 2, process, tmp_path / "run.log")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == EXIT_INTERRUPTED
        said = (tmp_path / "run.log").read_text()
        run_dir = only_run_dir(tmp_path / "runs")
        assert "2 batch(es) of 10 request(s) are still in progress" in said.replace("\n", " ")
        assert f"batches collect {run_dir}" in said.replace("\n", "") and "batches cancel" in said

        assert main(["batches", "cancel", str(run_dir)]) == EXIT_OK
        assert capsys.readouterr().out.count("cancel asked") == 2
        assert main(["batches", "collect", str(run_dir), "--no-progress"]) == EXIT_ERRORS
        records = read_records(run_dir / "records.jsonl")
        assert len(records) == 10 and {r.error_kind for r in records} == {"batch_canceled"}
        assert BatchJournal(run_dir).open_batches() == []

        batches.processing_s, batches.processing_polls = None, 1  # new batches end at their first poll
        again = rerun([*argv, "--retry-errors"])
        assert again.returncode == EXIT_OK, again.stdout + again.stderr
        stats = api.stats()["batches"]
    assert stats["status"] == ({"openai:cancelled": 2, "openai:completed": 2} if vendor == "openai"
                               else {"anthropic:ended": 4})  # fmt: skip
    assert stats["max_answers_per_item"] == 1
    assert set(recorded_lines(run_dir).values()) == {2}  # the canceled error, then the answer
    assert all(r.status != "error" for r in read_records(run_dir / "records.jsonl"))

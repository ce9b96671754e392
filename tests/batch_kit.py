"""What the in-process batch-mode tests share: sample items, the fake API with its batch APIs on
loopback, a model spec per vendor, the CLI's ``run``, a run folder's records, and a ``--batch`` run
interrupted (as Ctrl-C does) once its batches are created."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gmai_client import RunConfig
from gmai_client.api import run
from gmai_client.cli import main
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.splits import sample_path
from gmai_client.results.batch_journal import JOURNAL_FILE, BatchJournal
from gmai_client.results.records import read_records
from gmai_client.runner.loop import RunResult
from gmai_client.testing.fake_api import FakeAPI, oracle
from gmai_client.testing.fake_batches import FakeBatches
from gmai_client.types import Item, Record

OPENAI_KEY = "sk-test-BATCH-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-BATCH-0123456789"
FAST = ("-B", "batch_poll=0.02")  # the fake ends a batch after a few polls: poll without waiting
VENDORS = ("openai", "anthropic")


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both vendors' keys (import this fixture into a test module to use it there)."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)


def sample_items(n: int) -> list[Item]:
    return [e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item)][:n]


def serve(items: list[Item], **knobs: Any) -> tuple[FakeAPI, FakeBatches]:
    api = FakeAPI(answers=oracle(items))
    return api, FakeBatches(api, processing_polls=knobs.pop("processing_polls", 2), **knobs)


def spec(api: FakeAPI, vendor: str, model: str = "") -> str:
    if vendor == "openai":
        return f"openai:{model or 'gpt-4o'}@{api.base_url_openai}"
    return f"anthropic:{model or 'claude'}@{api.base_url_anthropic}"


def batch_config(model: str, out: Path, limit: int, *options: str) -> RunConfig:
    """A ``--batch`` run of ``model`` polling every 0.02 s, with ``-B`` ``options`` (``name=value``)."""
    config = RunConfig.build([model], limit=limit, cache=False, batch=True, out=str(out), progress=False)
    wanted = {"batch_poll": "0.02", **dict(option.split("=", 1) for option in options)}
    return config.updated(models=(replace(config.models[0], options=wanted),))


def run_cli(*args: str) -> int:
    return main(["run", "--no-progress", *args])


def run_dir_of(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def records_of(out: Path) -> list[Record]:
    return read_records(run_dir_of(out) / "records.jsonl")


def interrupted(config: RunConfig, when: Callable[[], bool]) -> RunResult:
    """``run(config)`` cancelled, as Ctrl-C does, once ``when()`` holds."""

    async def go() -> RunResult:
        task = asyncio.create_task(run(config))
        while not when():
            assert not task.done(), "the run ended before it was to be interrupted"
            await asyncio.sleep(0.01)
        task.cancel()
        return await task

    return asyncio.run(go())


def interrupted_once_created(config: RunConfig, batches: FakeBatches, count: int, out: Path) -> RunResult:
    """``run(config)`` (run folders under ``out``) cancelled, as Ctrl-C does, once the vendor holds
    ``count`` batches and the run's journal says they were submitted. (Cancelled between the two,
    a batch stays "intent" in the journal and the next run finds it at the vendor: tested apart.)"""

    def journaled() -> int:
        folders = {path.parent for path in out.glob(f"*/{JOURNAL_FILE}")}
        return sum(b.state == "submitted" for folder in folders for b in BatchJournal(folder).open_batches())

    return interrupted(config, lambda: len(batches.batch_ids()) >= count and journaled() >= count)

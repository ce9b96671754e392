"""A live run (``--no-batch``) of a run folder whose batches are still in progress, and a rerun after
a run stopped before the vendor created its batch: the answers the batches hold are recorded, items
whose batch never came to be are sent, and nothing is counted twice."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

from gmai_client import RunConfig
from gmai_client.backends.openai import OpenAIBackend, OpenAIOptions
from gmai_client.cli import EXIT_OK
from gmai_client.policy.retry import RetryPolicy
from gmai_client.results.batch_journal import BatchJournal
from gmai_client.results.records import read_records
from gmai_client.runner.batch.mode import BatchRun, Hooks, Ledger
from gmai_client.runner.progress import SilentProgress
from gmai_client.runner.wiring import request_builder
from gmai_client.types import Record
from tests.batch_kit import (
    batch_config,
    interrupted,
    interrupted_once_created,
    keys,
    run_cli,
    sample_items,
    serve,
    spec,
)

__all__ = ["keys"]  # the kit's autouse fixture, active in this module


def model_figures(run_dir: Path) -> dict[str, int]:
    (figures,) = json.loads((run_dir / "metrics.json").read_text())["run"]["models"].values()
    return figures


def test_batches_beside_a_live_loop_that_ended_first_are_still_recorded(tmp_path: Path) -> None:
    items = sample_items(6)
    api, batches = serve(items, processing_polls=3)
    with api:
        config = batch_config(spec(api, "openai"), tmp_path, 6)
        run_dir = interrupted_once_created(config, batches, 1, tmp_path).run_dir
        # The live loop beside had nothing to send: it ended (its stop is set) before the batch
        # side read a single item. The batch holds paid answers: they are recorded all the same.
        backend = OpenAIBackend("gpt-4o", endpoint=api.base_url_openai, options=OpenAIOptions(batch_poll=0.02))
        kept: list[Record] = []

        async def finish(entry: object, record: Record) -> None:
            kept.append(record)

        async def beside() -> None:
            stop = asyncio.Event()
            stop.set()
            hooks = Hooks(finish=finish, skip=lambda: None, halt=lambda reason: None, stop=stop,
                          track=SilentProgress().add_model("m"))  # fmt: skip
            try:
                await beside_run(config, run_dir, backend).run(hooks)
            finally:
                await backend.close()

        asyncio.run(beside())
    assert sorted(r.index for r in kept) == sorted(i.index for i in items)
    assert all(r.status == "ok" for r in kept)
    assert [b.state for b in BatchJournal(run_dir).read().values()] == ["collected"]


def beside_run(config: RunConfig, run_dir: Path, backend: OpenAIBackend) -> BatchRun:
    """A batch run collecting ``run_dir``'s batches beside a live loop, as the runner makes it."""
    return BatchRun(
        label=config.models[0].label, backend=backend, mode="beside", wait=True, ledger=Ledger.of(run_dir),
        run_dir=run_dir, entries=lambda: iter(sample_items(6)), ask=request_builder(config.protocol),
        identity=lambda: dict(backend.identity()), previous=[], finished=set(), cache=None, budget=None,
        retry=RetryPolicy(), progress=SilentProgress(),
    )  # fmt: skip


def test_a_live_run_waits_for_an_earlier_batch_to_be_found_before_it_ends(tmp_path: Path) -> None:
    items = sample_items(6)
    api, batches = serve(items)
    batches.inject("batches.create", "lost")  # made at the vendor, the answer lost...
    batches.inject("batches.list", "status", status=503, times=1000)  # ...and it cannot be looked for
    with api:
        config = batch_config(spec(api, "openai"), tmp_path, 6)
        run_dir = interrupted(config, lambda: any(c.endpoint == "batches.list" for c in batches.calls)).run_dir
        (intent,) = BatchJournal(run_dir).read().values()
        assert intent.state == "intent" and len(batches.batch_ids()) == 1
        batches.reset()
        # The live run has nothing to send while the batch is looked for (slowly: a 503 first).
        batches.inject("batches.list", "status", status=503, retry_after=0.5)
        assert run_cli("--resume", str(run_dir), "--limit", "6", "--no-batch") == EXIT_OK
        assert api.requests == []  # found at the vendor: nothing sent live
        assert api.stats()["batches"]["created"] == {"openai": 1}
    records = read_records(run_dir / "records.jsonl")
    assert sorted(r.index for r in records) == sorted(i.index for i in items)
    assert all(r.status == "ok" for r in records)


def test_items_collected_from_batches_beside_a_live_run_are_counted_once(tmp_path: Path) -> None:
    items = sample_items(10)
    api, batches = serve(items, processing_polls=4)
    with api:
        model = spec(api, "openai")
        run_dir = interrupted_once_created(batch_config(model, tmp_path, 6), batches, 1, tmp_path).run_dir
        assert run_cli("--resume", str(run_dir), "--limit", "10", "--no-batch") == EXIT_OK
    figures = model_figures(run_dir)
    # Six answers from the batch, four live; none was finished by an earlier run.
    assert (figures["done"], figures["skipped"], figures["errors"]) == (10, 0, 0)


def test_a_live_run_after_a_batch_that_was_never_created_sends_its_items(tmp_path: Path) -> None:
    items = sample_items(6)
    api, batches = serve(items)
    batches.inject("files.create", "status", status=500, retry_after=30)  # the upload does not get through
    with api:
        model = spec(api, "openai")
        # Interrupted while it waits to upload again: the journal holds the batch as an intent only.
        run_dir = interrupted(batch_config(model, tmp_path, 6), lambda: len(batches.calls) >= 1).run_dir
        (intent,) = BatchJournal(run_dir).read().values()
        assert intent.state == "intent" and batches.batch_ids() == []
        batches.reset()
        assert run_cli("--resume", str(run_dir), "--limit", "6", "--no-batch") == EXIT_OK
        live = Counter(r.key for r in api.requests)
    assert len(live) == 6 and max(live.values()) == 1  # the vendor never had them: sent live, once
    records = read_records(run_dir / "records.jsonl")
    assert sorted(r.index for r in records) == sorted(i.index for i in items)
    assert [b.state for b in BatchJournal(run_dir).read().values()] == ["void"]

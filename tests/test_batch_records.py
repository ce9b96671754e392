"""What an ended batch leaves: a record per item (a batch cancelled at the vendor, not by ``batches
cancel``, leaves its unprocessed items ``batch_canceled``), no result file at the vendor once its
records are written, and, when its results cannot be read, words that say so (not "in progress")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

import anthropic
import openai

from gmai_client.api import run
from gmai_client.batch_api import BatchStatus
from gmai_client.cli import EXIT_ERRORS, EXIT_OK, main
from gmai_client.results.batch_journal import JournalBatch
from gmai_client.runner.batch.records import unanswered
from gmai_client.runner.loop import RunResult
from gmai_client.testing.fake_api import FakeAPI
from tests.batch_kit import (
    ANTHROPIC_KEY,
    FAST,
    OPENAI_KEY,
    VENDORS,
    batch_config,
    keys,
    records_of,
    run_cli,
    run_dir_of,
    sample_items,
    serve,
    spec,
)

__all__ = ["keys"]  # the kit's autouse fixture, active in this module


def cancel_at_the_vendor(api: FakeAPI, vendor: str, batch_id: str) -> None:
    """What a person does in the vendor's console (or with its SDK), not through ``batches cancel``."""
    if vendor == "openai":
        openai.OpenAI(base_url=api.base_url_openai, api_key=OPENAI_KEY).batches.cancel(batch_id)
    else:
        anthropic.Anthropic(base_url=api.base_url_anthropic, api_key=ANTHROPIC_KEY).messages.batches.cancel(batch_id)


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_batch_cancelled_at_the_vendor_leaves_its_unprocessed_items_batch_canceled(
    tmp_path: Path, vendor: str
) -> None:
    items = sample_items(5)
    api, batches = serve(items, processing_polls=None, processing_s=600)  # would take ten minutes
    with api:
        config = batch_config(spec(api, vendor), tmp_path, 5)

        async def go() -> RunResult:
            task = asyncio.create_task(run(config))
            while not batches.batch_ids():
                assert not task.done(), "the run ended before its batch was created"
                await asyncio.sleep(0.01)
            (batch_id,) = batches.batch_ids()
            await asyncio.to_thread(cancel_at_the_vendor, api, vendor, batch_id)
            return await task

        result = asyncio.run(go())
    assert {r.index for r in result.records} == {i.index for i in items}
    assert {r.error_kind for r in result.records} == {"batch_canceled"}  # sent again by --retry-errors


def test_a_request_an_ended_batch_holds_no_result_for_is_named_by_the_batchs_end() -> None:
    entry = JournalBatch(key="k", model="m", vendor="openai", created=0.0, requests=1, bytes=1)

    def kind(vendor_status: str, entry: JournalBatch = entry) -> str:
        status = BatchStatus("b1", vendor_status, ended=True, total=1, processed=0, created_at=0.0)
        return unanswered(status, entry).kind

    assert kind("cancelled") == kind("cancelling") == "batch_canceled"  # cancelled at the vendor
    assert kind("completed", JournalBatch(**{**entry.__dict__, "cancel_asked": True})) == "batch_canceled"
    assert kind("expired") == "batch_expired"
    assert kind("completed") == "server_error"


def test_openai_result_files_are_deleted_once_their_records_are_written(tmp_path: Path) -> None:
    items = sample_items(4)
    api, _batches = serve(items, error_ids={items[0].index})  # an output file and an error file
    with api:
        code = run_cli("--limit", "4", "--no-cache", "--batch", "--out", str(tmp_path), "-m", spec(api, "openai"),
                       *FAST)  # fmt: skip
        stats = api.stats()["batches"]
    assert code == EXIT_ERRORS and len(records_of(tmp_path)) == 4
    assert stats["calls"]["files.delete"] == 3 and stats["files"] == 0  # the input, the output, the errors


def test_results_that_cannot_be_downloaded_are_said_to_be_unread_not_in_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = sample_items(4)
    api, batches = serve(items)
    batches.inject("files.content", "status", status=500, times=1000)
    with api:
        command = ("--limit", "4", "--no-cache", "--batch", "--out", str(tmp_path), "-m", spec(api, "openai"),
                   "--max-attempts", "2", *FAST)  # fmt: skip
        capsys.readouterr()
        assert run_cli(*command) == 3
        said = capsys.readouterr().out.replace("\n", " ")
        assert "in progress" not in said
        assert "1 batch(es) of 4 request(s) have ended" in said and "could not be read" in said
        batches.reset()
        assert main(["batches", "collect", str(run_dir_of(tmp_path)), "--no-progress"]) == EXIT_OK
    assert len(records_of(tmp_path)) == 4

"""A batch whose create answer was lost (or whose create failed without saying whether it made the
batch), looked for at the vendor: OpenAI by the key in its metadata, Anthropic (no metadata) by its
request count and creation time, and then by its results: a batch another run made on the same
account, of the same size at the same moment, is never taken for this run's; when the vendor's
clock is behind ours, this run's batch is still found."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

import anthropic

from gmai_client.cli import EXIT_OK, main
from gmai_client.results.batch_journal import BatchJournal
from gmai_client.testing.fake_api import FakeAPI
from gmai_client.testing.fake_batches import FakeBatches
from tests.batch_kit import (
    ANTHROPIC_KEY,
    FAST,
    VENDORS,
    batch_config,
    interrupted_once_created,
    keys,
    records_of,
    run_cli,
    run_dir_of,
    sample_items,
    serve,
    spec,
)

__all__ = ["keys"]  # the kit's autouse fixture, active in this module

CREATE = {"openai": "batches.create", "anthropic": "messages.batches.create"}
SONNET, OPUS = "claude-sonnet-4-5", "claude-opus-4-1"


def run_of(api: FakeAPI, model: str, out: Path, *more: str) -> int:
    """A ``--batch`` run of the first six sample items by the Anthropic ``model``."""
    return run_cli("--limit", "6", "--no-cache", "--batch", "--out", str(out), "-m", spec(api, "anthropic", model),
                   *FAST, *more)  # fmt: skip


def sent_to(batches: FakeBatches, model: str) -> dict[str, int]:
    """How many batches held each custom_id for ``model``."""
    return {cid: n for (_, m, cid), n in batches.submissions().items() if m == model}


def own_batch_ids(run_dir: Path) -> list[str]:
    return [b.batch_id for b in BatchJournal(run_dir).read().values() if b.batch_id]


def test_a_failed_create_never_adopts_another_runs_ended_batch_of_the_same_size(tmp_path: Path) -> None:
    items = sample_items(6)
    api, batches = serve(items)
    with api:
        # Another run on the same account, another model, the same six items: its batch ended a moment ago.
        assert run_of(api, OPUS, tmp_path / "opus") == EXIT_OK
        (opus_batch,) = batches.batch_ids()
        # This run's create fails without an answer: a batch of six created in the last minute exists...
        batches.inject(CREATE["anthropic"], "status", status=500)
        assert run_of(api, SONNET, tmp_path / "sonnet") == EXIT_OK
    # ...but its answers are another model's: this run sent its own batch and recorded its answers.
    assert sent_to(batches, SONNET) == {i.index: 1 for i in items}
    assert opus_batch not in own_batch_ids(run_dir_of(tmp_path / "sonnet"))
    assert len(records_of(tmp_path / "sonnet")) == 6


def test_another_runs_batch_still_in_progress_is_followed_but_never_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = sample_items(6)
    api, batches = serve(items, processing_polls=3)
    with api:
        # Another run's batch of the same six items, still in progress (that run was stopped).
        opus = batch_config(spec(api, "anthropic", OPUS), tmp_path / "opus", 6)
        interrupted_once_created(opus, batches, 1, tmp_path / "opus")
        (opus_batch,) = batches.batch_ids()
        batches.inject(CREATE["anthropic"], "status", status=500)
        capsys.readouterr()
        # The only candidate for this run's failed create: followed, but its results show another
        # model's answers: nothing recorded, the user told, the batch looked for again next time.
        assert run_of(api, SONNET, tmp_path / "sonnet") == 3
        said = capsys.readouterr().out
        run_dir = run_dir_of(tmp_path / "sonnet")
        assert not (run_dir / "records.jsonl").exists() or records_of(tmp_path / "sonnet") == []
        assert opus_batch in said and "another run" in said.replace("\n", " ")
        assert [b.state for b in BatchJournal(run_dir).read().values()] == ["intent"]
        # The next run finds no batch of its own (the create had failed): it sends its items, once.
        assert run_of(api, SONNET, tmp_path / "sonnet") == EXIT_OK
    assert sent_to(batches, SONNET) == {i.index: 1 for i in items}
    assert opus_batch not in own_batch_ids(run_dir)
    assert len(records_of(tmp_path / "sonnet")) == 6


def test_batches_cancel_leaves_alone_a_batch_that_may_be_another_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = sample_items(6)
    api, batches = serve(items, processing_polls=50)
    with api:
        opus = batch_config(spec(api, "anthropic", OPUS), tmp_path / "opus", 6)
        interrupted_once_created(opus, batches, 1, tmp_path / "opus")
        (opus_batch,) = batches.batch_ids()
        # This run's create fails; the only batch of its size is followed, its results not in yet.
        batches.inject(CREATE["anthropic"], "status", status=500)
        sonnet = batch_config(spec(api, "anthropic", SONNET), tmp_path / "sonnet", 6)
        run_dir = interrupted_once_created(sonnet, batches, 1, tmp_path / "sonnet").run_dir
        assert own_batch_ids(run_dir) == [opus_batch]
        capsys.readouterr()
        assert main(["batches", "cancel", str(run_dir)]) == EXIT_OK
        said = capsys.readouterr().out.replace("\n", " ")
        status = anthropic.Anthropic(base_url=api.base_url_anthropic, api_key=ANTHROPIC_KEY).messages.batches.retrieve(
            opus_batch
        )
    assert "not canceled" in said and "another run" in said
    assert status.processing_status == "in_progress" and status.cancel_initiated_at is None


def test_two_batches_that_cannot_be_told_apart_yet_stop_the_run_until_they_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = sample_items(6)
    api, batches = serve(items, processing_polls=3)
    with api:
        opus = batch_config(spec(api, "anthropic", OPUS), tmp_path / "opus", 6)
        interrupted_once_created(opus, batches, 1, tmp_path / "opus")
        batches.inject(CREATE["anthropic"], "lost")  # made, the answer lost: two candidates, both running
        capsys.readouterr()
        assert run_of(api, SONNET, tmp_path / "sonnet") == 3  # stopped: which one is ours cannot be told yet
        said = capsys.readouterr().out.replace("\n", " ")
        opus_batch, sonnet_batch = batches.batch_ids()
        assert opus_batch in said and sonnet_batch in said
        run_dir = run_dir_of(tmp_path / "sonnet")
        assert [b.state for b in BatchJournal(run_dir).read().values()] == ["intent"]
        # Once both have ended, their results tell: this run's batch is adopted, nothing sent again.
        client = anthropic.Anthropic(base_url=api.base_url_anthropic, api_key=ANTHROPIC_KEY)
        for batch_id in (opus_batch, sonnet_batch):
            while client.messages.batches.retrieve(batch_id).processing_status != "ended":
                pass
        assert run_of(api, SONNET, tmp_path / "sonnet") == EXIT_OK
    assert sent_to(batches, SONNET) == {i.index: 1 for i in items}
    assert own_batch_ids(run_dir) == [sonnet_batch]
    assert len(records_of(tmp_path / "sonnet")) == 6


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_lost_create_is_found_when_the_vendors_clock_is_behind_ours(tmp_path: Path, vendor: str) -> None:
    items = sample_items(6)
    api, batches = serve(items, clock_skew_s=-30.0)  # the vendor's creation times read 30 s early
    batches.inject(CREATE[vendor], "lost")
    with api:
        assert run_cli("--limit", "6", "--no-cache", "--batch", "--out", str(tmp_path), "-m", spec(api, vendor),
                       *FAST) == EXIT_OK  # fmt: skip
        stats = api.stats()["batches"]
    assert stats["created"] == {vendor: 1} and stats["duplicate_batches"] == 0
    assert stats["max_submissions_per_item"] == 1 and len(records_of(tmp_path)) == 6

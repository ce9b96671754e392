"""How often a batch is polled and when a refused create is tried again: the poll interval grows
1.5x per poll to its cap whether or not the vendor's counts move, and a create the vendor refused
with a Retry-After is not tried again sooner, even when another of the model's batches ends first."""

from __future__ import annotations

from itertools import islice, pairwise
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

from gmai_client.cli import EXIT_OK
from gmai_client.runner.batch.follow import MAX_POLL_S, poll_intervals
from tests.batch_kit import batch_config, interrupted_once_created, keys, records_of, run_cli, sample_items, serve, spec

__all__ = ["keys"]  # the kit's autouse fixture, active in this module


def test_the_poll_interval_grows_half_again_per_poll_to_two_minutes() -> None:
    assert list(islice(poll_intervals(15.0), 8)) == pytest.approx(
        [15.0, 22.5, 33.75, 50.625, 75.9375, 113.90625, MAX_POLL_S, MAX_POLL_S]
    )
    assert list(islice(poll_intervals(300.0), 3)) == [300.0, 300.0, 300.0]  # a longer -B batch_poll is kept


def test_an_openai_batch_whose_counts_move_at_every_poll_is_polled_less_and_less_often(tmp_path: Path) -> None:
    items = sample_items(8)
    api, batches = serve(items, processing_polls=7)  # the counts move at every poll
    with api:
        code = run_cli("--limit", "8", "--no-cache", "--batch", "--out", str(tmp_path), "-m", spec(api, "openai"),
                       "-B", "batch_poll=0.05")  # fmt: skip
        polls = [c.timestamp for c in batches.calls if c.endpoint == "batches.retrieve"]
    assert code == EXIT_OK and len(records_of(tmp_path)) == 8
    gaps = [later - earlier for earlier, later in pairwise(polls)]
    assert len(gaps) >= 5
    for waited, planned in zip(gaps, poll_intervals(0.05), strict=False):
        assert waited >= planned  # each wait at least the planned interval: 0.05, 0.075, 0.1125, ... s


def test_a_create_refused_with_retry_after_waits_that_long_even_when_another_batch_ends(tmp_path: Path) -> None:
    items = sample_items(6)
    api, batches = serve(items, processing_polls=2)
    with api:
        # An earlier run's batch of three items is in progress; this run follows it and sends the
        # other three in a new batch, whose create is refused: 429, Retry-After 1.5 s.
        model = spec(api, "anthropic")
        run_dir = interrupted_once_created(batch_config(model, tmp_path, 3), batches, 1, tmp_path).run_dir
        batches.inject("messages.batches.create", "status", status=429, retry_after=1.5)
        assert run_cli("--resume", str(run_dir), "--limit", "6", "--batch") == EXIT_OK
        calls = batches.calls
    creates = [c for c in calls if c.endpoint == "messages.batches.create"]
    refused, created = creates[-2], creates[-1]
    assert (refused.status, created.status) == (429, 200)
    # The earlier batch ended (its results were read) long before the 1.5 s were up...
    assert any(c.endpoint == "messages.batches.results" and c.timestamp < refused.timestamp + 1.0 for c in calls)
    # ...and the create was still not tried again before the vendor said it may be.
    assert created.timestamp - refused.timestamp >= 1.5
    assert len(records_of(tmp_path)) == 6

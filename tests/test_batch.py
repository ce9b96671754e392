"""``run --batch`` end to end: the real OpenAI and Anthropic SDKs against FakeAPI + FakeBatches on 127.0.0.1.

The fake answers a batched request with exactly what its live endpoint answers (the same oracle,
the same usage), so a batch run must leave the same records as a live run; its stats say how many
batches were created, which requests each held and how often an item was sent and answered.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

from gmai_client import RunConfig
from gmai_client.cli import EXIT_ERRORS, EXIT_OK, main
from gmai_client.results.batch_journal import BatchJournal
from gmai_client.results.records import read_records
from gmai_client.types import Record
from tests.batch_kit import (
    FAST,
    VENDORS,
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


def answers(records: list[Record]) -> dict[str, tuple[Any, ...]]:
    """What a record says an item's answer was, without what differs by how it was sent."""
    return {r.index: (r.status, r.prediction, r.letters, r.correct, r.input_tokens, r.output_tokens) for r in records}



# ---------------------------------------------------------------------- answers, cache, reports


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_batch_run_records_what_a_live_run_records(tmp_path: Path, vendor: str) -> None:
    items = sample_items(24)
    api, batches = serve(items)
    with api:
        common = ("--limit", "24", "--no-cache", "-m", spec(api, vendor))
        assert run_cli("--out", str(tmp_path / "live"), *common) == EXIT_OK
        live_requests = len(api.requests)
        assert run_cli("--out", str(tmp_path / "batch"), "--batch", *common, *FAST) == EXIT_OK
        assert len(api.requests) == live_requests == 24  # the batch run sent nothing live
        stats = api.stats()["batches"]
    assert stats["created"] == {vendor: 1} and stats["items_submitted"] == 24 and stats["answered"] == 24
    live, batched = records_of(tmp_path / "live"), records_of(tmp_path / "batch")
    assert answers(batched) == answers(live)
    assert all(r.correct for r in batched if not r.is_multi_answer)
    assert all(r.attempts == 1 and not r.cached for r in batched)
    assert _metrics_but_latency(tmp_path / "live") == _metrics_but_latency(tmp_path / "batch")
    journal = BatchJournal(run_dir_of(tmp_path / "batch")).read()
    (entry,) = journal.values()
    assert entry.state == "collected" and entry.requests == 24 and entry.batch_id in batches.batch_ids()


def _metrics_but_latency(out: Path) -> dict[str, Any]:
    """metrics.json's per-model figures but the wall-clock one."""
    models = json.loads((run_dir_of(out) / "metrics.json").read_text())["models"]
    for figures in models.values():
        figures.pop("mean_latency_s", None)
    return models


@pytest.mark.parametrize("vendor", VENDORS)
def test_batch_answers_and_live_answers_share_the_cache(tmp_path: Path, vendor: str) -> None:
    items = sample_items(12)
    cache = str(tmp_path / "cache.sqlite")
    api, _batches = serve(items)
    with api:
        common = ("--limit", "12", "--cache-path", cache, "-m", spec(api, vendor))
        assert run_cli("--out", str(tmp_path / "batch"), "--batch", *common, *FAST) == EXIT_OK
        # A live run in a new folder is answered by the cache the batch filled: nothing is sent.
        assert run_cli("--out", str(tmp_path / "live"), *common) == EXIT_OK
        assert api.requests == []
        assert all(r.cached for r in records_of(tmp_path / "live"))
        # And the other way round: live answers make a batch run send no batch.
        assert run_cli("--out", str(tmp_path / "live2"), "--temperature", "0.5", *common) == EXIT_OK
        assert len(api.requests) == 12
        assert run_cli("--out", str(tmp_path / "batch2"), "--temperature", "0.5", "--batch", *common) == EXIT_OK
        assert api.stats()["batches"]["created"] == {vendor: 1}
    assert answers(records_of(tmp_path / "batch2")) == answers(records_of(tmp_path / "live2"))


# ---------------------------------------------------------------------- failures inside a batch


@pytest.mark.parametrize("vendor", VENDORS)
def test_failed_and_expired_requests_are_error_records_and_retry_errors_resends_only_them(
    tmp_path: Path, vendor: str, capsys: pytest.CaptureFixture[str]
) -> None:
    items = sample_items(10)
    failing, expiring = items[2].index, items[5].index
    # First submission only: the resubmission succeeds.
    api, batches = serve(items, error_ids={failing: 1}, expire_ids={expiring: 1}, error_status=500)
    with api:
        command = ("--limit", "10", "--no-cache", "--batch", "--out", str(tmp_path), "-m", spec(api, vendor), *FAST)
        assert run_cli(*command) == EXIT_ERRORS
        errors = {r.index: r for r in records_of(tmp_path) if r.status == "error"}
        assert set(errors) == {failing, expiring}
        assert errors[failing].error_kind == "server_error" and "HTTP 500" in errors[failing].error
        assert errors[expiring].error_kind == "batch_expired"
        assert "--retry-errors" in capsys.readouterr().err

        assert run_cli(*command, "--retry-errors") == EXIT_OK
        submissions = batches.submissions()
    model = "gpt-4o" if vendor == "openai" else "claude"
    assert {cid: n for (_, m, cid), n in submissions.items() if m == model and n > 1} == {failing: 2, expiring: 2}
    assert sum(submissions.values()) == 12  # ten, then the two errors again
    records = records_of(tmp_path)
    assert len(records) == 10 and all(r.status != "error" for r in records)
    assert api.requests == []


def test_retry_errors_live_with_no_batch_sends_only_the_errors_live(tmp_path: Path) -> None:
    items = sample_items(8)
    api, _batches = serve(items, error_ids={items[1].index})
    with api:
        command = ("--limit", "8", "--no-cache", "--out", str(tmp_path), "-m", spec(api, "openai"), *FAST)
        assert run_cli(*command, "--batch") == EXIT_ERRORS
        assert run_cli(*command, "--retry-errors", "--no-batch") == EXIT_OK
        assert len(api.requests) == 1  # the one error, live
        assert api.stats()["batches"]["created"] == {"openai": 1}
    assert all(r.status != "error" for r in records_of(tmp_path))


def test_a_batch_that_expires_whole_leaves_every_item_an_error(tmp_path: Path) -> None:
    items = sample_items(6)
    api, _ = serve(items, expire_batches={1})
    with api:
        command = ("--limit", "6", "--no-cache", "--batch", "--out", str(tmp_path), "-m", spec(api, "anthropic"))
        assert run_cli(*command, *FAST) == EXIT_ERRORS
        assert {r.error_kind for r in records_of(tmp_path)} == {"batch_expired"}
        assert run_cli(*command, *FAST, "--retry-errors") == EXIT_OK  # batch 2 does not expire
    assert all(r.status != "error" for r in records_of(tmp_path))


# ---------------------------------------------------------------------- limits


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_vendors_limits_split_the_work(tmp_path: Path, vendor: str) -> None:
    items = sample_items(30)
    # The fake's limits, lowered so that 30 small items (lines of about 6 kB) need several batches:
    # first 7 requests per batch, then also about 32 kB per batch.
    api, batches = serve(items, **{f"{vendor}_max_requests": 7})
    line_bytes = 32_000
    with api:
        command = ("--limit", "30", "--no-cache", "--batch", "-m", spec(api, vendor), "-B", "batch_size=7", *FAST)
        assert run_cli("--out", str(tmp_path / "count"), *command) == EXIT_OK
        by_count = len(batches.batch_ids(vendor))
        setattr(batches, f"{vendor}_max_bytes", line_bytes + 1024)
        by_bytes = ("-B", f"batch_mb={line_bytes / 2**20}")
        assert run_cli("--out", str(tmp_path / "bytes"), *command, *by_bytes) == EXIT_OK
        by_bytes_too = len(batches.batch_ids(vendor)) - by_count
        stats = api.stats()["batches"]
    assert by_count == 5  # 7 + 7 + 7 + 7 + 2
    assert by_bytes_too >= 30 * 6_000 // line_bytes  # at most 32 kB each: 6 or more
    assert stats["refused"] == {} and stats["duplicate_batches"] == 0 and stats["max_submissions_per_item"] == 2
    created = [c.requests for c in batches.calls if c.endpoint.endswith("batches.create")]
    assert sum(created) == 60 and max(created) == 7
    for out in ("count", "bytes"):
        records = records_of(tmp_path / out)
        assert len(records) == 30 and all(r.status != "error" for r in records)


def test_a_request_larger_than_a_batch_is_an_error_record_naming_the_limit(tmp_path: Path) -> None:
    items = sample_items(3)
    api, _ = serve(items)
    with api:
        code = run_cli("--limit", "3", "--no-cache", "--batch", "--out", str(tmp_path), "-m", spec(api, "openai"),
                       "-B", "batch_mb=0.001", *FAST)  # fmt: skip
    assert code == EXIT_ERRORS
    records = records_of(tmp_path)
    assert {r.error_kind for r in records} == {"unsupported_input"}
    assert "a batch takes at most" in records[0].error and "--no-batch" in records[0].error


def test_batches_in_progress_at_once_stay_within_the_queue_limit(tmp_path: Path) -> None:
    items = sample_items(20)
    # The vendor's processing queue holds 5 requests: batches of 5, one at a time, are never refused.
    api, _batches = serve(items, anthropic_queue_limit=5, processing_polls=3)
    with api:
        code = run_cli("--limit", "20", "--no-cache", "--batch", "--out", str(tmp_path / "one"),
                       "-m", spec(api, "anthropic"), "-B", "batch_size=5", "-B", "batch_queue=1", *FAST)  # fmt: skip
        assert code == EXIT_OK and api.stats()["batches"]["refused"] == {}
        # With room for many, the vendor refuses some creates (429): each waits for a batch to end.
        code = run_cli("--limit", "20", "--no-cache", "--batch", "--out", str(tmp_path / "many"),
                       "-m", spec(api, "anthropic"), "-B", "batch_size=5", *FAST)  # fmt: skip
        stats = api.stats()["batches"]
    assert code == EXIT_OK
    assert stats["refused"].get("messages.batches.create:429", 0) > 0
    assert stats["duplicate_batches"] == 4  # run 2 sent run 1's four batches again: nothing more
    assert len(records_of(tmp_path / "many")) == 20


def test_openai_enqueued_token_limit_resubmits_the_same_file(tmp_path: Path) -> None:
    items = sample_items(12)
    # Each batch of 4 holds ~4 x 300 input tokens; the limit takes one batch at a time.
    api, _batches = serve(items, openai_enqueued_tokens=1_500, processing_polls=3)
    with api:
        code = run_cli("--limit", "12", "--no-cache", "--batch", "--out", str(tmp_path),
                       "-m", spec(api, "openai"), "-B", "batch_size=4", *FAST)  # fmt: skip
        stats = api.stats()["batches"]
    assert code == EXIT_OK
    assert stats["status"].get("openai:failed", 0) > 0  # refused for the queue at least once...
    assert stats["calls"]["files.create"] == 3  # ...and created again from the file already uploaded
    assert stats["max_submissions_per_item"] == 1
    assert len(records_of(tmp_path)) == 12


@pytest.mark.parametrize("vendor", VENDORS)
def test_polls_honour_the_vendors_retry_after(tmp_path: Path, vendor: str) -> None:
    items = sample_items(4)
    # Polls of one batch closer than 0.5 s apart get 429 with Retry-After (1 s, rounded up); the
    # client would poll every 0.02 s.
    api, batches = serve(items, processing_polls=3, poll_interval=0.5)
    with api:
        code = run_cli("--limit", "4", "--no-cache", "--batch", "--out", str(tmp_path), "-m", spec(api, vendor), *FAST)
        polls = [c for c in batches.calls if c.endpoint.endswith("batches.retrieve")]
    assert code == EXIT_OK and len(records_of(tmp_path)) == 4
    refused = [c for c in polls if c.status == 429]
    assert refused  # the client was told to wait...
    for early, then in pairwise(polls):
        if early.status == 429:  # ...and waited as long as it was told before polling again
            assert then.status == 200 and then.timestamp - early.timestamp >= 1.0


# ---------------------------------------------------------------------- lost answers


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_create_whose_answer_is_lost_is_found_not_sent_again(tmp_path: Path, vendor: str) -> None:
    items = sample_items(9)
    api, batches = serve(items)
    endpoint = "batches.create" if vendor == "openai" else "messages.batches.create"
    batches.inject(endpoint, "lost")  # the batch is made; the client hears a reset connection
    with api:
        code = run_cli("--limit", "9", "--no-cache", "--batch", "--out", str(tmp_path), "-m", spec(api, vendor),
                       "-B", "batch_size=3", *FAST)  # fmt: skip
        stats = api.stats()["batches"]
    assert code == EXIT_OK
    assert stats["faults"] == {f"{endpoint}:lost": 1}
    assert stats["created"] == {vendor: 3} and stats["duplicate_batches"] == 0
    assert stats["max_submissions_per_item"] == 1 and stats["max_answers_per_item"] == 1
    assert sorted(r.index for r in records_of(tmp_path)) == sorted(i.index for i in items)


@pytest.mark.parametrize("status", [503, 400])  # a failure worth retrying, and one that is not
def test_a_lost_create_that_cannot_be_looked_for_stops_the_model_and_is_never_forgotten(
    tmp_path: Path, status: int
) -> None:
    items = sample_items(4)
    api, batches = serve(items)
    batches.inject("batches.create", "lost")
    batches.inject("batches.list", "status", status=status, times=100)
    with api:
        command = ("--limit", "4", "--no-cache", "--batch", "--out", str(tmp_path), "--max-attempts", "2",
                   "-m", spec(api, "openai"), *FAST)  # fmt: skip
        assert run_cli(*command) == 3  # stopped: whether the batch exists cannot be told
        (entry,) = BatchJournal(run_dir_of(tmp_path)).read().values()
        assert entry.state == "intent"  # kept: the next run asks again
        batches.reset()  # the vendor answers lists again
        assert run_cli(*command) == EXIT_OK
        stats = api.stats()["batches"]
    assert stats["created"] == {"openai": 1} and stats["max_submissions_per_item"] == 1
    assert len(records_of(tmp_path)) == 4


# ---------------------------------------------------------------------- batches left in progress


def test_an_interrupted_run_leaves_its_batches_running_and_says_how_to_collect_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = sample_items(6)
    api, batches = serve(items, processing_polls=50)
    with api:
        config = RunConfig.build([spec(api, "openai")], limit=6, cache=False, batch=True, out=str(tmp_path),
                                 progress=False)  # fmt: skip
        result = interrupted_once_created(config, batches, 1, tmp_path)
        assert result.interrupted and result.records == ()
        (entry,) = BatchJournal(result.run_dir).open_batches()
        assert entry.state == "submitted" and entry.requests == 6
        # The CLI's words for it: the batch keeps running; collect or cancel it.
        assert main(["batches", "collect", str(result.run_dir), "--no-wait", "--no-progress"]) == 3
        said = capsys.readouterr().out
    assert "still in progress at the vendor" in said and "batches collect" in said and "batches cancel" in said


def test_a_live_run_collects_an_earlier_runs_batches_beside_and_sends_the_rest_live(tmp_path: Path) -> None:
    items = sample_items(12)
    api, batches = serve(items, processing_polls=4)
    with api:
        model = spec(api, "openai")
        # A --batch run of the first 6 items, interrupted with its batch in progress; then a live
        # run of 12: it collects that batch beside its workers and sends only the other 6 live.
        config = RunConfig.build([model], limit=6, cache=False, batch=True, out=str(tmp_path), progress=False)
        config = config.updated(models=(replace(config.models[0], options={"batch_poll": "0.02"}),))
        run_dir = interrupted_once_created(config, batches, 1, tmp_path).run_dir
        assert run_cli("--resume", str(run_dir), "--limit", "12", "--no-batch") == EXIT_OK
        live = Counter(r.key for r in api.requests)
        stats = api.stats()["batches"]
    assert len(live) == 6 and max(live.values()) == 1
    assert stats["created"] == {"openai": 1} and stats["answered"] == 6
    records = read_records(run_dir / "records.jsonl")
    assert len(records) == 12 and all(r.status != "error" for r in records)
    assert BatchJournal(run_dir).open_batches() == []


def test_batches_list_prints_the_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = sample_items(4)
    api, batches = serve(items)
    with api:
        assert run_cli("--limit", "4", "--no-cache", "--batch", "--out", str(tmp_path), "-m", spec(api, "openai"),
                       *FAST) == EXIT_OK  # fmt: skip
    capsys.readouterr()
    assert main(["batches", "list", str(run_dir_of(tmp_path))]) == EXIT_OK
    out = capsys.readouterr().out
    (batch_id,) = batches.batch_ids()
    assert batch_id in out and "collected" in out and "completed" in out


def test_batches_commands_name_a_folder_that_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batches", "collect", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err

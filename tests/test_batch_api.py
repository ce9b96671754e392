"""The vendors' halves of the batch contract (``backends/_openai_batches.py``, ``_anthropic_batches.py``),
driven directly against FakeAPI + FakeBatches with the real SDKs: a batch line carries exactly the
body a live call posts, the limits and options, statuses, per-request errors read as live errors of
the same status, and a lost create found again."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

from gmai_client.backends._api import Holes, encode_body, prepared_images
from gmai_client.backends.anthropic import AnthropicBackend, AnthropicOptions
from gmai_client.backends.openai import OpenAIBackend, OpenAIOptions
from gmai_client.batch_api import BatchApi, BatchResult, BatchStatus
from gmai_client.errors import ModelNotFound, RetryableError
from gmai_client.testing.fake_api import FakeAPI
from gmai_client.testing.fake_batches import FakeBatches
from tests.api_backend_kit import sample_request

T = TypeVar("T")


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-BATCHAPI-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-BATCHAPI-012345")


def backend_for(api: FakeAPI, vendor: str, **options: Any) -> Any:
    if vendor == "openai":
        return OpenAIBackend("gpt-4o", endpoint=api.base_url_openai, options=OpenAIOptions(**options))
    return AnthropicBackend("claude", endpoint=api.base_url_anthropic, options=AnthropicOptions(**options))


def drive(backend: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await work(backend)
        finally:
            await backend.close()

    return asyncio.run(go())


async def submit(backend: BatchApi, lines: dict[str, bytes], tmp: Any, key: str = "k1") -> BatchStatus:
    spool = tmp / f"{key}.jsonl"
    spool.write_bytes(b"".join(lines.values()))
    file_id = await backend.upload_input(spool)
    return await backend.create_batch(spool, file_id, key, len(lines))


async def until_ended(backend: BatchApi, status: BatchStatus) -> BatchStatus:
    for _ in range(50):
        if status.ended:
            return status
        status = await backend.poll_batch(status.batch_id)
    raise AssertionError("the batch never ended")


VENDORS = ("openai", "anthropic")


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_batch_line_carries_the_body_a_live_call_posts(vendor: str) -> None:
    with FakeAPI() as api:
        backend = backend_for(api, vendor, detail="high") if vendor == "openai" else backend_for(api, vendor)
        request = sample_request()

        async def both(b: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            line = json.loads(await b.batch_line("item-1", request))
            holes = Holes()
            images = await prepared_images(request, b.max_image_side)
            live = json.loads(encode_body(b.request_body(request, images, embed=holes), holes.pieces))  # send()'s body
            return line, live

        line, live = drive(backend, both)
    if vendor == "openai":
        assert line == {"custom_id": "item-1", "method": "POST", "url": "/v1/chat/completions", "body": live}
        assert live["messages"][-1]["content"][0]["image_url"]["detail"] == "high"
    else:
        assert line == {"custom_id": "item-1", "params": live}
        assert live["temperature"] == request.params.temperature and live["system"] == request.system


def test_batch_settings_apply_the_vendors_limits() -> None:
    with FakeAPI() as api:
        openai_default = backend_for(api, "openai").batch_settings()
        anthropic_default = backend_for(api, "anthropic").batch_settings()
        capped = backend_for(api, "openai", batch_size=10**6, batch_mb=10**4, batch_queue=3).batch_settings()
        small = backend_for(api, "anthropic", batch=True, batch_size=10, batch_mb=1.5, batch_poll=0.5).batch_settings()
    assert (openai_default.max_requests, openai_default.enabled) == (50_000, None)
    assert 199 * 2**20 < openai_default.max_bytes <= 200 * 2**20
    assert anthropic_default.max_requests == 100_000 and 255 * 2**20 < anthropic_default.max_bytes <= 256 * 2**20
    assert (capped.max_requests, capped.max_bytes <= 200 * 2**20, capped.queue) == (50_000, True, 3)
    assert (small.enabled, small.max_requests, small.poll_s) == (True, 10, 0.5)
    assert small.max_bytes < 1.5 * 2**20  # room left for what wraps the lines


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limited"), (400, "bad_request"), (500, "server_error")])
def test_a_request_the_vendor_failed_is_the_error_a_live_call_would_raise(
    tmp_path: Any, vendor: str, status: int, kind: str
) -> None:
    api = FakeAPI()
    FakeBatches(api, error_ids={"bad"}, error_status=status)
    with api:

        async def work(b: Any) -> list[BatchResult]:
            lines = {cid: await b.batch_line(cid, sample_request()) for cid in ("good", "bad")}
            return await b.batch_results(await until_ended(b, await submit(b, lines, tmp_path)))

        results = {r.custom_id: r for r in drive(backend_for(api, vendor), work)}
    assert results["good"].response is not None and results["good"].response.text
    error = results["bad"].error
    assert error is not None and error.kind == kind and f"HTTP {status}" in str(error)


@pytest.mark.parametrize("vendor", VENDORS)
def test_expired_requests_are_batch_expired(tmp_path: Any, vendor: str) -> None:
    api = FakeAPI()
    FakeBatches(api, expire_ids={"late"})
    with api:

        async def work(b: Any) -> tuple[BatchStatus, list[BatchResult]]:
            lines = {cid: await b.batch_line(cid, sample_request()) for cid in ("early", "late")}
            ended = await until_ended(b, await submit(b, lines, tmp_path))
            return ended, await b.batch_results(ended)

        ended, results = drive(backend_for(api, vendor), work)
    assert ended.ended and ended.total == 2 and ended.processed == 2
    by_id = {r.custom_id: r for r in results}
    assert by_id["late"].error is not None and by_id["late"].error.kind == "batch_expired"
    assert by_id["early"].response is not None


@pytest.mark.parametrize("vendor", VENDORS)
def test_requests_a_cancel_stopped_before_they_ran_are_batch_canceled(tmp_path: Any, vendor: str) -> None:
    api = FakeAPI()
    FakeBatches(api, processing_polls=8)
    with api:

        async def work(b: Any) -> list[BatchResult]:
            lines = {cid: await b.batch_line(cid, sample_request()) for cid in ("a", "b", "c", "d")}
            created = await submit(b, lines, tmp_path)
            for _ in range(3):
                await b.poll_batch(created.batch_id)  # some of it processed, not all
            return await b.batch_results(await until_ended(b, await b.cancel_batch(created.batch_id)))

        results = {r.custom_id: r for r in drive(backend_for(api, vendor), work)}
    assert set(results) == {"a", "b", "c", "d"}
    stopped = {cid for cid, r in results.items() if r.error is not None}
    assert stopped and all(results[cid].error.kind == "batch_canceled" for cid in stopped)  # type: ignore[union-attr]
    assert any(r.response is not None for r in results.values())  # what ran before the cancel is kept


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_lost_create_is_found_and_nothing_else_passes_for_it(tmp_path: Any, vendor: str) -> None:
    api = FakeAPI()
    batches = FakeBatches(api)
    with api:

        async def work(b: Any) -> tuple[Any, ...]:
            two = {cid: await b.batch_line(cid, sample_request()) for cid in ("a", "b")}
            before = await submit(b, two, tmp_path, key="other")  # an earlier batch of the same size
            since = time.time()
            batches.inject("batches.create" if vendor == "openai" else "messages.batches.create", "lost")
            with pytest.raises(RetryableError):  # no answer: the SDK's connection error, mapped
                await submit(b, two, tmp_path, key="mine")
            known = frozenset({before.batch_id})
            found = await b.find_batch("mine", 2, since, known)
            wrong_size = await b.find_batch("mine", 3, since, known)
            return before, found, wrong_size

        before, found, wrong_size = drive(backend_for(api, vendor), work)
    lost = batches.batch_ids(vendor)[-1]
    assert [status.batch_id for status in found] == [lost] != [before.batch_id]
    if vendor == "anthropic":
        assert wrong_size == []  # Anthropic keeps no metadata: the count must match
    else:  # OpenAI: the key in its metadata decides
        assert [(status.batch_id, status.key) for status in wrong_size] == [(lost, "mine")]


def test_a_server_without_the_batch_api_is_named(tmp_path: Any) -> None:
    with FakeAPI() as api:  # the live endpoints only

        async def work(b: Any) -> None:
            await submit(b, {"a": await b.batch_line("a", sample_request())}, tmp_path)

        with pytest.raises(ModelNotFound, match="batch API cannot take --batch"):
            drive(backend_for(api, "openai"), work)

"""The fake batch APIs' limits, refusals and lists, with the real OpenAI and Anthropic SDKs: the
vendors' request and size limits, input-file validation, queue limits, polls too close together,
the key check, and list pages newest first."""

from __future__ import annotations

import json

import pytest

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

from tests.test_fake_batches import (  # noqa: E402
    anthropic_client,
    batch_file,
    batches_of,
    chat_body,
    close_clients,
    messages_params,
    openai_client,
    running,
    submit_openai,
)

__all__ = ["close_clients"]  # the autouse fixture closing the clients, active in this module


def test_openai_request_count_limit_fails_the_batch() -> None:
    with running() as api:  # the vendor's 50,000
        client = openai_client(api)
        batch = submit_openai(client, {f"r{i}": {"model": "m", "messages": [{"role": "user", "content": "q"}]}
                                       for i in range(50_001)})  # fmt: skip
        failed = client.batches.retrieve(batch.id)
        assert failed.status == "failed" and failed.failed_at is not None and failed.output_file_id is None
        (error,) = failed.errors.data
        assert error.code == "too_many_tasks" and "50,000" in error.message


def test_openai_file_size_limit_refuses_the_upload() -> None:
    bodies = {f"r{i}": chat_body(f"q{i}") for i in range(4)}
    size = len(batch_file(bodies))
    with running(openai_max_bytes=size) as api:
        client = openai_client(api)
        assert client.files.create(file=("ok.jsonl", batch_file(bodies)), purpose="batch").bytes == size
        bodies["r4"] = chat_body("q4")
        with pytest.raises(openai.BadRequestError, match="File is too large") as refused:
            client.files.create(file=("big.jsonl", batch_file(bodies)), purpose="batch")
        assert refused.value.body["type"] == "invalid_request_error"
        with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
            client.files.create(file=("requests.txt", b"{}"), purpose="batch")
        assert api.stats()["batches"]["refused"] == {"files.create:400": 2}


def test_openai_input_file_validation_errors() -> None:
    good = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": chat_body("q")}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps(good),  # the same custom_id again
        json.dumps({**good, "custom_id": "b", "url": "/v1/embeddings"}),
        json.dumps({**good, "custom_id": "c", "body": chat_body("q", model="gpt-4o-mini")}),
    ]
    with running() as api:
        client = openai_client(api)
        upload = client.files.create(file=("in.jsonl", "\n".join(lines).encode()), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        failed = client.batches.retrieve(batch.id)
        assert failed.status == "failed"
        found = [(e.code, e.line) for e in failed.errors.data]
        assert found == [("invalid_json_line", 2), ("duplicate_custom_id", 3), ("url_mismatch", 4),
                         ("model_mismatch", 5)]  # fmt: skip
        assert api.stats()["batches"]["items_submitted"] == 0

        with pytest.raises(openai.NotFoundError, match="file-nope"):
            client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_nope")


def test_anthropic_limits() -> None:
    with running() as api:  # the vendor's 100,000
        client = anthropic_client(api)
        small = {"model": "c", "max_tokens": 4, "messages": [{"role": "user", "content": "q"}]}
        with pytest.raises(anthropic.BadRequestError, match="at most 100,000") as refused:
            client.messages.batches.create(requests=[{"custom_id": f"r{i}", "params": small} for i in range(100_001)])
        assert refused.value.body["error"]["type"] == "invalid_request_error"
        with pytest.raises(anthropic.BadRequestError, match="unique"):
            client.messages.batches.create(requests=[{"custom_id": "r", "params": small}] * 2)
        with pytest.raises(anthropic.BadRequestError, match="custom_id"):
            client.messages.batches.create(requests=[{"custom_id": "has space", "params": small}])

    requests = [{"custom_id": f"r{i}", "params": messages_params(f"q{i}")} for i in range(3)]
    size = len(json.dumps({"requests": requests}))
    with running(anthropic_max_bytes=size + 64) as api:
        client = anthropic_client(api)
        assert client.messages.batches.create(requests=requests).request_counts.processing == 3
        requests.append({"custom_id": "r3", "params": messages_params("q3")})
        with pytest.raises(anthropic.APIStatusError) as too_big:
            client.messages.batches.create(requests=requests)
        assert too_big.value.status_code == 413 and too_big.value.body["error"]["type"] == "request_too_large"
        assert api.stats()["batches"]["created"] == {"anthropic": 1}


def test_queue_limits() -> None:
    with running(processing_polls=5, openai_enqueued_tokens=60, anthropic_queue_limit=3) as api:
        oa, an = openai_client(api), anthropic_client(api)
        first = submit_openai(oa, {"a": chat_body("x" * 100)})  # ~ 26 text + 85 image tokens: over 60
        failed = oa.batches.retrieve(first.id)
        assert failed.status == "failed" and failed.errors.data[0].code == "token_limit_exceeded"

        two = [{"custom_id": c, "params": messages_params("q")} for c in ("a", "b")]
        queued = an.messages.batches.create(requests=two)
        with pytest.raises(anthropic.RateLimitError):
            an.messages.batches.create(requests=two)  # 4 > 3 requests processing
        an.messages.batches.cancel(queued.id)
        an.messages.batches.retrieve(queued.id)  # ended: the queue is free again
        assert an.messages.batches.create(requests=two).request_counts.processing == 2


def test_polling_too_fast_gets_429_with_retry_after() -> None:
    with running(processing_polls=2, poll_interval=60) as api:
        client = openai_client(api)
        batch = submit_openai(client, {"a": chat_body("q")})
        assert client.batches.retrieve(batch.id).status == "in_progress"  # poll 1 of 2
        with pytest.raises(openai.RateLimitError) as early:
            client.batches.retrieve(batch.id)
        assert 59 <= int(early.value.response.headers["retry-after"]) <= 60
        batches_of(api).poll_interval = None  # as if the interval had passed
        assert client.batches.retrieve(batch.id).status == "completed"  # the refused poll did not count
        batches_of(api).poll_interval = 60
        assert client.batches.retrieve(batch.id).status == "completed"  # an ended batch is never refused
        assert api.stats()["batches"]["early_polls"] == 1


def test_batch_endpoints_check_the_key() -> None:
    with running() as api:
        api.require_key = "sk-right"
        with pytest.raises(openai.AuthenticationError):
            openai_client(api, key="sk-wrong").batches.list()
        with pytest.raises(anthropic.AuthenticationError):
            anthropic_client(api, key="sk-wrong").messages.batches.list()
        assert openai_client(api, key="sk-right").batches.list().data == []
        assert anthropic_client(api, key="sk-right").messages.batches.list().data == []  # sent as Bearer


# ---------------------------------------------------------------------- listing


def test_listing_pages_newest_first() -> None:
    with running() as api:
        oa, an = openai_client(api), anthropic_client(api)
        upload = oa.files.create(file=("in.jsonl", batch_file({"a": chat_body("q")})), purpose="batch")
        created = [
            oa.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h").id
            for _ in range(5)
        ]
        first_page = oa.batches.list(limit=2)
        assert [b.id for b in first_page.data] == created[::-1][:2] and first_page.has_more
        assert [b.id for b in oa.batches.list(limit=2)] == created[::-1]  # the SDK follows ``after``

        messages = [
            an.messages.batches.create(requests=[{"custom_id": "a", "params": messages_params("q")}]).id
            for _ in range(3)
        ]
        assert [b.id for b in an.messages.batches.list(limit=2)] == messages[::-1]  # follows ``after_id``
        older = an.messages.batches.list(limit=1, after_id=messages[2])
        assert [b.id for b in older.data] == [messages[1]] and older.has_more
        newer = an.messages.batches.list(limit=5, before_id=messages[0])
        assert [b.id for b in newer.data] == [messages[2], messages[1]] and not newer.has_more
        assert batches_of(api).batch_ids("anthropic") == messages



"""The fake batch APIs' Files list and clock, with the real OpenAI and Anthropic SDKs: uploads and
result files listed newest first (by purpose, page by page), and a vendor clock set apart from ours."""

from __future__ import annotations

import time

import pytest

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
pytest.importorskip("aiohttp")

from tests.test_fake_batches import (  # noqa: E402
    anthropic_client,
    batch_file,
    chat_body,
    close_clients,
    messages_params,
    openai_client,
    poll_openai,
    running,
    submit_openai,
)

__all__ = ["close_clients"]  # the autouse fixture closing the clients, active in this module


def test_files_are_listed_newest_first_by_purpose_page_by_page() -> None:
    with running(processing_polls=1) as api:
        client = openai_client(api)
        uploads = [
            client.files.create(file=(f"in-{n}.jsonl", batch_file({"a": chat_body("q")})), purpose="batch").id
            for n in range(3)
        ]
        batch = submit_openai(client, {"a": chat_body("q")})
        poll_openai(client, batch)
        output = client.batches.retrieve(batch.id).output_file_id
        listed = [f.id for f in client.files.list(purpose="batch", limit=2)]  # the SDK follows ``after``
        assert set(uploads) < set(listed) and output not in listed
        assert [f.id for f in client.files.list(purpose="batch_output")] == [output]
        assert [f.filename for f in client.files.list(purpose="batch", order="asc")][:3] == [
            "in-0.jsonl", "in-1.jsonl", "in-2.jsonl"
        ]  # fmt: skip
        client.files.delete(uploads[0])
        assert uploads[0] not in {f.id for f in client.files.list()}


def test_the_vendors_clock_can_run_behind_ours() -> None:
    with running(clock_skew_s=-30.0) as api:
        before = time.time()
        batch = submit_openai(openai_client(api), {"a": chat_body("q")})
        message_batch = anthropic_client(api).messages.batches.create(
            requests=[{"custom_id": "a", "params": messages_params("q")}]
        )
        after = time.time()
    assert before - 31 <= batch.created_at <= after - 29
    assert before - 30 <= message_batch.created_at.timestamp() <= after - 30

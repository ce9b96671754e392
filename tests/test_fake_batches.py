"""The fake server's batch APIs, driven by the real SDKs: ``client.files`` + ``client.batches``
(openai) and ``client.messages.batches`` (anthropic) against 127.0.0.1, as a ``--batch`` client uses them."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp")
openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
httpx = pytest.importorskip("httpx")

from openai.types.chat import ChatCompletion  # noqa: E402

from gmai_client.testing.fake_api import FakeAPI, item_key  # noqa: E402
from gmai_client.testing.fake_batches import FakeBatches  # noqa: E402
from tests.conftest import free_ports  # noqa: E402

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNoAAAAggCBd81ytgAAAABJRU5ErkJggg==")
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
ENDED = ("completed", "failed", "expired", "cancelled")


# ---------------------------------------------------------------------- the server and clients


@contextmanager
def running(state_dir: Path | None = None, answers: dict[str, str] | None = None, **knobs: Any) -> Iterator[FakeAPI]:
    api = FakeAPI(answers=answers or {})
    FakeBatches(api, state_dir=state_dir, **knobs)
    with api:
        yield api


def batches_of(api: FakeAPI) -> FakeBatches:
    (extension,) = api.extensions
    return extension


CLIENTS: list[Any] = []  # closed after each test


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while CLIENTS:
        CLIENTS.pop().close()


def openai_client(api: FakeAPI | str, key: str = "sk-test-batch") -> Any:
    base_url = api if isinstance(api, str) else api.base_url_openai
    CLIENTS.append(openai.OpenAI(api_key=key, base_url=base_url, max_retries=0))
    return CLIENTS[-1]


def anthropic_client(api: FakeAPI, key: str = "sk-ant-test-batch") -> Any:
    CLIENTS.append(anthropic.Anthropic(api_key=key, base_url=api.base_url_anthropic, max_retries=0))
    return CLIENTS[-1]


def chat_body(question: str, model: str = "gpt-4o") -> dict[str, Any]:
    content = [{"type": "image_url", "image_url": {"url": DATA_URL}}, {"type": "text", "text": question}]
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 16}


def messages_params(question: str, model: str = "claude-sonnet") -> dict[str, Any]:
    source = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    content = [{"type": "image", "source": source}, {"type": "text", "text": question}]
    return {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": content}]}


def batch_file(bodies: dict[str, dict[str, Any]]) -> bytes:
    url = "/v1/chat/completions"
    lines = ({"custom_id": cid, "method": "POST", "url": url, "body": body} for cid, body in bodies.items())
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def submit_openai(client: Any, bodies: dict[str, dict[str, Any]]) -> Any:
    upload = client.files.create(file=("requests.jsonl", batch_file(bodies)), purpose="batch")
    return client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")


def poll_openai(client: Any, batch: Any, limit: int = 50) -> list[str]:
    seen = [batch.status]
    for _ in range(limit):
        if seen[-1] in ENDED:
            return seen
        seen.append(client.batches.retrieve(batch.id).status)
    raise AssertionError(f"batch still {seen[-1]} after {limit} polls")


def jsonl(text: str) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {line["custom_id"]: line for line in lines}


def poll_anthropic(client: Any, batch: Any, limit: int = 50) -> list[str]:
    seen = [batch.processing_status]
    for _ in range(limit):
        if seen[-1] == "ended":
            return seen
        seen.append(client.messages.batches.retrieve(batch.id).processing_status)
    raise AssertionError(f"batch still {seen[-1]} after {limit} polls")


QUESTIONS = {f"item-{i}": f"Question {i}: which option?" for i in range(6)}
ORACLE = {item_key(q, [PNG]): f"The answer is ({'ABCDE'[i % 5]})." for i, q in enumerate(QUESTIONS.values())}


# ---------------------------------------------------------------------- a batch completes


def test_openai_batch_walks_the_statuses_and_answers_like_the_live_endpoint() -> None:
    with running(answers=ORACLE, processing_polls=4) as api:
        client = openai_client(api)
        batch = submit_openai(client, {cid: chat_body(q) for cid, q in QUESTIONS.items()})
        assert batch.status == "validating" and batch.request_counts.total == 6 and batch.output_file_id is None

        statuses = poll_openai(client, batch)
        assert statuses == ["validating", "in_progress", "in_progress", "finalizing", "completed"]
        done = client.batches.retrieve(batch.id)
        assert (done.request_counts.completed, done.request_counts.failed) == (6, 0)
        assert done.model == "gpt-4o" and done.error_file_id is None
        assert done.in_progress_at <= done.finalizing_at <= done.completed_at

        output = client.files.content(done.output_file_id).text
        lines = jsonl(output)
        assert set(lines) == set(QUESTIONS)
        for cid, question in QUESTIONS.items():
            line = lines[cid]
            assert line["id"].startswith("batch_req_") and line["error"] is None
            assert line["response"]["status_code"] == 200
            live = client.chat.completions.create(**chat_body(question))
            batched = ChatCompletion.model_validate(line["response"]["body"])  # as a client parses it
            assert batched.choices[0].message.content == ORACLE[item_key(question, [PNG])]
            assert batched.choices == live.choices and batched.usage == live.usage
        usage = done.usage
        assert usage is not None
        assert usage.input_tokens == sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in lines.values())
        assert client.files.retrieve(done.output_file_id).purpose == "batch_output"


def test_anthropic_batch_ends_and_answers_like_the_live_endpoint() -> None:
    with running(answers=ORACLE, processing_polls=3) as api:
        client = anthropic_client(api)
        batch = client.messages.batches.create(
            requests=[{"custom_id": cid, "params": messages_params(q)} for cid, q in QUESTIONS.items()]
        )
        assert batch.processing_status == "in_progress" and batch.results_url is None
        assert batch.request_counts.processing == 6 and batch.request_counts.succeeded == 0
        assert batch.id.startswith("msgbatch_") and batch.expires_at > batch.created_at

        assert poll_anthropic(client, batch) == ["in_progress", "in_progress", "in_progress", "ended"]
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.request_counts.succeeded == 6 and ended.request_counts.processing == 0
        assert ended.results_url == f"{api.base_url}/v1/messages/batches/{batch.id}/results"

        results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
        assert set(results) == set(QUESTIONS)
        for cid, question in QUESTIONS.items():
            assert results[cid].type == "succeeded"
            live = client.messages.create(**messages_params(question))
            message = results[cid].message
            assert message.content == live.content and message.usage == live.usage
            assert message.content[0].text == ORACLE[item_key(question, [PNG])]


def test_time_based_processing() -> None:
    with running(processing_s=1.0) as api:
        client = openai_client(api)
        started = time.time()
        batch = submit_openai(client, {"a": chat_body("q")})
        assert client.batches.retrieve(batch.id).status in ("validating", "in_progress")
        while client.batches.retrieve(batch.id).status != "completed":
            assert time.time() - started < 10, "the batch never completed"
            time.sleep(0.1)
        assert time.time() - started >= 1.0  # not before its processing time


# ---------------------------------------------------------------------- partial failures and expiry


def test_openai_partial_failures_go_to_the_error_file() -> None:
    with running(answers=ORACLE, error_ids={"item-1", "item-4"}, error_status=500) as api:
        client = openai_client(api)
        bodies = {cid: chat_body(q) for cid, q in QUESTIONS.items()}
        bodies["bad-body"] = {"model": "gpt-4o", "messages": []}  # the live endpoint refuses it too
        batch = submit_openai(client, bodies)
        poll_openai(client, batch)
        done = client.batches.retrieve(batch.id)
        assert done.status == "completed"
        assert (done.request_counts.completed, done.request_counts.failed, done.request_counts.total) == (4, 3, 7)

        assert set(jsonl(client.files.content(done.output_file_id).text)) == {"item-0", "item-2", "item-3", "item-5"}
        errors = jsonl(client.files.content(done.error_file_id).text)
        assert set(errors) == {"item-1", "item-4", "bad-body"}
        assert errors["item-1"]["response"]["status_code"] == 500 and errors["item-1"]["error"] is None
        assert errors["item-1"]["response"]["body"]["error"]["type"] == "server_error"
        assert errors["bad-body"]["response"]["status_code"] == 400
        assert errors["bad-body"]["response"]["body"]["error"]["type"] == "invalid_request_error"


def test_an_item_that_expires_expires_the_openai_batch_with_partial_results() -> None:
    with running(answers=ORACLE, expire_ids={"item-2"}) as api:
        client = openai_client(api)
        batch = submit_openai(client, {cid: chat_body(q) for cid, q in QUESTIONS.items()})
        assert poll_openai(client, batch)[-1] == "expired"
        done = client.batches.retrieve(batch.id)
        assert done.expired_at is not None and done.completed_at is None
        assert len(jsonl(client.files.content(done.output_file_id).text)) == 5
        (expired,) = jsonl(client.files.content(done.error_file_id).text).values()
        assert expired["custom_id"] == "item-2" and expired["response"] is None
        assert expired["error"]["code"] == "batch_expired"


def test_anthropic_errored_and_expired_results() -> None:
    with running(answers=ORACLE, error_ids={"item-0"}, expire_ids={"item-3"}) as api:
        client = anthropic_client(api)
        requests = [{"custom_id": cid, "params": messages_params(q)} for cid, q in QUESTIONS.items()]
        no_max_tokens = {"model": "c", "messages": [{"role": "user", "content": "q"}]}
        requests.append({"custom_id": "no-max-tokens", "params": no_max_tokens})
        batch = client.messages.batches.create(requests=requests)  # params are checked while processing
        poll_anthropic(client, batch)
        counts = client.messages.batches.retrieve(batch.id).request_counts
        assert (counts.succeeded, counts.errored, counts.expired, counts.canceled) == (4, 2, 1, 0)
        results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
        assert results["item-0"].type == "errored" and results["item-0"].error.error.type == "api_error"
        assert results["no-max-tokens"].type == "errored"
        assert results["no-max-tokens"].error.error.type == "invalid_request_error"
        assert results["item-3"].type == "expired" and results["item-5"].type == "succeeded"


def test_errors_for_the_first_submissions_only_then_a_resubmission_succeeds() -> None:
    with running(answers=ORACLE, error_ids={"item-1": 1}) as api:
        client = openai_client(api)
        first = submit_openai(client, {"item-1": chat_body(QUESTIONS["item-1"])})
        poll_openai(client, first)
        assert client.batches.retrieve(first.id).request_counts.failed == 1
        retry = submit_openai(client, {"item-1": chat_body(QUESTIONS["item-1"])})  # --retry-errors
        poll_openai(client, retry)
        assert client.batches.retrieve(retry.id).request_counts.completed == 1

        stats = api.stats()["batches"]
        assert stats["max_submissions_per_item"] == 2 and stats["resubmitted_items"] == 1
        assert stats["duplicate_batches"] == 1  # the same request set sent twice
        assert batches_of(api).answers()[("openai", "gpt-4o", "item-1")] == 2  # an error, then the answer


def test_error_rate_is_a_seeded_fraction() -> None:
    requests = [{"custom_id": f"r{i}", "params": messages_params(f"q{i}")} for i in range(40)]

    def errored(seed: int) -> set[str]:
        with running(error_rate=0.3, seed=seed) as api:
            client = anthropic_client(api)
            batch = client.messages.batches.create(requests=requests)
            poll_anthropic(client, batch)
            return {r.custom_id for r in client.messages.batches.results(batch.id) if r.result.type == "errored"}

    first = errored(seed=1)
    assert 0 < len(first) < 40 and errored(seed=1) == first and errored(seed=2) != first


def test_a_whole_batch_expires() -> None:
    with running(answers=ORACLE, expire_batches={2, 3}) as api:
        oa, an = openai_client(api), anthropic_client(api)
        kept = submit_openai(oa, {"a": chat_body("q")})  # batch 1 completes
        lost = submit_openai(oa, {"a": chat_body("q"), "b": chat_body("r")})  # batch 2 expires
        assert poll_openai(oa, kept)[-1] == "completed" and poll_openai(oa, lost)[-1] == "expired"
        expired = oa.batches.retrieve(lost.id)
        assert expired.output_file_id is None and expired.request_counts.failed == 2
        lines = jsonl(oa.files.content(expired.error_file_id).text).values()
        assert {line["error"]["code"] for line in lines} == {"batch_expired"}

        batch = an.messages.batches.create(requests=[{"custom_id": "a", "params": messages_params("q")}])  # batch 3
        poll_anthropic(an, batch)
        assert an.messages.batches.retrieve(batch.id).request_counts.expired == 1
        assert [r.result.type for r in an.messages.batches.results(batch.id)] == ["expired"]


# ---------------------------------------------------------------------- cancel


def test_openai_cancel_keeps_what_was_processed() -> None:
    with running(answers=ORACLE, processing_polls=10) as api:
        client = openai_client(api)
        batch = submit_openai(client, {cid: chat_body(q) for cid, q in QUESTIONS.items()})
        for _ in range(5):
            client.batches.retrieve(batch.id)  # half way: 0.5 of the schedule, 4 of 6 processed
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        cancelled = client.batches.retrieve(batch.id)
        assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
        assert cancelled.request_counts.completed == 4
        kept = jsonl(client.files.content(cancelled.output_file_id).text)
        assert set(kept) == {"item-0", "item-1", "item-2", "item-3"}  # in input order
        stopped = jsonl(client.files.content(cancelled.error_file_id).text)  # the unprocessed, "batch_cancelled"
        assert {cid: line["error"]["code"] for cid, line in stopped.items()} == {
            "item-4": "batch_cancelled", "item-5": "batch_cancelled"
        }  # fmt: skip

        with pytest.raises(openai.BadRequestError, match="Cannot cancel"):
            client.batches.cancel(batch.id)


def test_anthropic_cancel_cancels_the_rest() -> None:
    with running(answers=ORACLE, processing_polls=3, cancel_polls=2) as api:
        client = anthropic_client(api)
        batch = client.messages.batches.create(
            requests=[{"custom_id": cid, "params": messages_params(q)} for cid, q in QUESTIONS.items()]
        )
        client.messages.batches.retrieve(batch.id)  # a third of the way: 2 of 6 processed
        canceling = client.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
        assert poll_anthropic(client, canceling) == ["canceling", "canceling", "ended"]
        counts = client.messages.batches.retrieve(batch.id).request_counts
        assert (counts.succeeded, counts.canceled) == (2, 4)
        results = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
        assert results == {f"item-{i}": "succeeded" if i < 2 else "canceled" for i in range(6)}


# ---------------------------------------------------------------------- restarts and records


def test_a_restart_on_the_same_state_directory_keeps_every_batch(tmp_path: Path) -> None:
    with running(tmp_path, answers=ORACLE, processing_polls=3) as api:
        oa, an = openai_client(api), anthropic_client(api)
        openai_batch = submit_openai(oa, {cid: chat_body(q) for cid, q in QUESTIONS.items()})
        anthropic_batch = an.messages.batches.create(
            requests=[{"custom_id": cid, "params": messages_params(q)} for cid, q in QUESTIONS.items()]
        )
        assert oa.batches.retrieve(openai_batch.id).status == "in_progress"  # poll 1 of 3
        an.messages.batches.retrieve(anthropic_batch.id)

    with running(tmp_path, answers={}, processing_polls=1) as api:  # new port, new knobs, other answers
        oa, an = openai_client(api), anthropic_client(api)
        assert oa.batches.retrieve(openai_batch.id).status == "in_progress"  # poll 2: its own schedule
        assert poll_openai(oa, oa.batches.retrieve(openai_batch.id))[-1] == "completed"
        output = jsonl(oa.files.content(oa.batches.retrieve(openai_batch.id).output_file_id).text)
        assert output["item-0"]["response"]["body"]["choices"][0]["message"]["content"] == ORACLE[
            item_key(QUESTIONS["item-0"], [PNG])
        ]  # answered when the batch was created
        assert poll_anthropic(an, an.messages.batches.retrieve(anthropic_batch.id))[-1] == "ended"
        assert len(list(an.messages.batches.results(anthropic_batch.id))) == 6
        assert an.messages.batches.retrieve(anthropic_batch.id).results_url.startswith(api.base_url)

        stats = api.stats()["batches"]
        assert stats["created"] == {"openai": 1, "anthropic": 1}
        assert stats["calls"]["batches.create"] == 1 and stats["calls"]["files.create"] == 1  # from before
        assert stats["answered"] == 12 and stats["max_answers_per_item"] == 1


def test_out_of_process_server_survives_sigkill(tmp_path: Path) -> None:
    def start(port: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "gmai_client.testing.fake_batches", "--port", str(port),
                   "--state-dir", str(tmp_path / "state"), "--batch-polls", "3", "--batch-error-id", "b"]  # fmt: skip
        with (tmp_path / f"server-{port}.log").open("wb") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/_fake/stats", timeout=1)
                return server
            except httpx.TransportError:
                time.sleep(0.1)
        server.kill()
        server.wait(10)
        raise AssertionError(f"the fake server did not start: {(tmp_path / f'server-{port}.log').read_text()}")

    first, second = free_ports(2)
    server = start(first)
    try:
        client = openai_client(f"http://127.0.0.1:{first}/v1")
        batch = submit_openai(client, {"a": chat_body("q"), "b": chat_body("r")})
        assert client.batches.retrieve(batch.id).status == "in_progress"
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)

    server = start(second)
    try:
        client = openai_client(f"http://127.0.0.1:{second}/v1")
        # polls 2 and 3 of 3: the count made before the kill was kept
        assert poll_openai(client, client.batches.retrieve(batch.id)) == ["in_progress", "completed"]
        done = client.batches.retrieve(batch.id)
        assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
        stats = httpx.get(f"http://127.0.0.1:{second}/_fake/stats").json()["batches"]
        assert stats["calls"]["batches.create"] == 1 and stats["max_submissions_per_item"] == 1
    finally:
        server.terminate()
        server.wait(10)


def test_every_call_is_recorded() -> None:
    with running() as api:
        client = openai_client(api)
        batch = submit_openai(client, {"a": chat_body("q"), "b": chat_body("r")})
        client.batches.retrieve(batch.id)
        calls = batches_of(api).calls
        assert [c.endpoint for c in calls] == ["files.create", "batches.create", "batches.retrieve"]
        assert calls[0].requests == 2 and calls[0].file_id.startswith("file-")
        assert calls[1].batch_id == batch.id and calls[1].requests == 2 and calls[2].status == 200
        assert batches_of(api).submissions() == {("openai", "gpt-4o", "a"): 1, ("openai", "gpt-4o", "b"): 1}
        assert api.requests == []  # batched requests are not live requests

        api.reset()
        assert batches_of(api).calls == [] and api.stats()["batches"]["created"] == {"openai": 1}


def test_injected_call_faults() -> None:
    with running() as api:
        client, batches = openai_client(api), batches_of(api)
        upload = client.files.create(file=("in.jsonl", batch_file({"a": chat_body("q")})), purpose="batch")

        batches.inject("batches.create", "lost")  # created, but the answer never arrives
        with pytest.raises(openai.APIConnectionError):
            client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        (created,) = client.batches.list().data  # what a client finds when it looks before resubmitting
        assert created.input_file_id == upload.id

        batches.inject("batches.retrieve", "status", status=503, retry_after=2)
        with pytest.raises(openai.InternalServerError) as unavailable:
            client.batches.retrieve(created.id)
        assert unavailable.value.response.headers["retry-after"] == "2"
        assert client.batches.retrieve(created.id).status == "completed"

        httpx.post(f"{api.base_url}/_fake/batches/inject", json={"endpoint": "*", "kind": "reset"}).raise_for_status()
        with pytest.raises(anthropic.APIConnectionError):
            anthropic_client(api).messages.batches.create(requests=[{"custom_id": "a", "params": messages_params("q")}])

        stats = api.stats()["batches"]
        assert stats["created"] == {"openai": 1}  # the reset create did nothing
        assert stats["faults"] == {
            "batches.create:lost": 1, "batches.retrieve:status": 1, "messages.batches.create:reset": 1,
        }  # fmt: skip
        assert [c.status for c in batches.calls if c.fault] == [0, 503, 0]  # 0: no answer reached the client


def test_async_clients() -> None:
    """The runner is asyncio: the async SDK clients speak the same wire format (results streamed)."""

    async def go(api: FakeAPI) -> tuple[str, list[str]]:
        oa = openai.AsyncOpenAI(api_key="k", base_url=api.base_url_openai, max_retries=0)
        an = anthropic.AsyncAnthropic(api_key="k", base_url=api.base_url_anthropic, max_retries=0)
        requests = batch_file({"a": chat_body(QUESTIONS["item-0"])})
        upload = await oa.files.create(file=("in.jsonl", requests), purpose="batch")
        batch = await oa.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        while batch.status not in ENDED:
            batch = await oa.batches.retrieve(batch.id)
        output = (await oa.files.content(batch.output_file_id)).text
        message_batch = await an.messages.batches.create(
            requests=[{"custom_id": "a", "params": messages_params(QUESTIONS["item-0"])}]
        )
        while message_batch.processing_status != "ended":
            message_batch = await an.messages.batches.retrieve(message_batch.id)
        texts = [r.result.message.content[0].text async for r in await an.messages.batches.results(message_batch.id)]
        await oa.close()
        await an.close()
        return jsonl(output)["a"]["response"]["body"]["choices"][0]["message"]["content"], texts

    with running(answers=ORACLE, processing_polls=2) as api:
        expected = ORACLE[item_key(QUESTIONS["item-0"], [PNG])]
        assert asyncio.run(go(api)) == (expected, [expected])

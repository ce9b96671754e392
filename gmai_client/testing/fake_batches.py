"""The batch APIs of the fake model server: OpenAI's Files + Batch API and Anthropic's Message Batches.

Owns the test double that ``--batch`` clients are tested against with the real vendor SDKs. It mounts
on a ``FakeAPI`` (same app, same port, same oracle), so a request gets the same answer and the same
usage numbers live or in a batch: every batched request is answered by ``FakeAPI.answer``.

OpenAI (``client.files`` / ``client.batches``)::

    POST   /v1/files                      multipart upload, purpose "batch", a .jsonl file
    GET    /v1/files                      newest first (``order``), ``purpose`` / ``after`` / ``limit``
    GET    /v1/files/{id}                 the File object
    GET    /v1/files/{id}/content         the bytes (input, output or error file)
    DELETE /v1/files/{id}
    POST   /v1/batches                    {input_file_id, endpoint, completion_window "24h", metadata}
    GET    /v1/batches                    newest first, ``after`` / ``limit`` cursor pages
    GET    /v1/batches/{id}               a status poll
    POST   /v1/batches/{id}/cancel

Anthropic (``client.messages.batches``; ``results_url`` points at this server)::

    POST   /v1/messages/batches           {"requests": [{"custom_id", "params"}]}
    GET    /v1/messages/batches           newest first, ``after_id`` / ``before_id`` / ``limit`` pages
    GET    /v1/messages/batches/{id}      a status poll
    POST   /v1/messages/batches/{id}/cancel
    GET    /v1/messages/batches/{id}/results   JSONL, one {"custom_id", "result"} per request

How a batch behaves (its statuses, its schedule, its result files, what a cancel keeps) is the
business of ``fake_batch_states``; what each endpoint accepts and refuses and the objects it answers
with, of ``fake_batch_wire``; the state directory, of ``fake_batch_store``; the Files endpoints, of
``fake_batch_files``. Those parts follow the
vendors' documents; the rest is this fake's choice.

Knobs (constructor arguments and public attributes; command-line flags in ``fake_batch_cli``):
processing time in seconds or in status polls; custom_ids (or a seeded fraction) that error or
expire; batches (by creation number) that expire as a whole; a minimum interval between polls of an
unfinished batch (429 with Retry-After when polled sooner); the vendors' size limits; OpenAI's
enqueued-token limit and Anthropic's processing-queue limit; the vendor's clock skew. ``inject`` (or ``POST
/_fake/batches/inject``) makes the next call(s) to an endpoint fail: an error status, a reset
connection, or a "lost" answer (the batch is created, the client never hears of it). The live
endpoints' faults, latency and rate limit do not apply to these endpoints; ``require_key`` does.

Records: every call (``calls``, persisted), each (api, model, custom_id)'s submissions and delivered
results, and batches sent twice with the same requests; ``stats()`` / ``GET /_fake/stats`` sums them.

State: files, batches, their items and results, and the call log live in ``state_dir`` (a temporary
directory when none is given). A new server on the same directory (a restart in the middle) sees
every batch, its progress and its call history.

Out of process: ``python -m gmai_client.testing.fake_batches --port 8000 --state-dir DIR
--batch-polls 3`` (every ``fake_api`` flag too); ``GET /_fake/stats`` then has a ``batches`` entry.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from typing import Any

from aiohttp import web

from gmai_client.testing import fake_batch_wire as wire
from gmai_client.testing.fake_api import FakeAPI, api_from_args, build_parser, serve
from gmai_client.testing.fake_batch_cli import add_batch_flags, batch_knobs
from gmai_client.testing.fake_batch_files import FileEndpoints
from gmai_client.testing.fake_batch_states import ENDED, advance, draw_fate, input_tokens, start_cancel
from gmai_client.testing.fake_batch_store import FILE_LIFETIME_S, Batch, BatchCall, BatchStore, CallNote, signature
from gmai_client.testing.fake_batch_wire import (
    ANTHROPIC_MAX_BYTES,
    ANTHROPIC_MAX_REQUESTS,
    OPENAI_ENDPOINT,
    OPENAI_MAX_BYTES,
    OPENAI_MAX_REQUESTS,
    WINDOW_S,
    Refused,
)
from gmai_client.testing.fake_errors import vendor_error
from gmai_client.testing.fake_faults import reset_connection
from gmai_client.testing.fake_wire import credentials

__all__ = [
    "ANTHROPIC_MAX_BYTES",
    "ANTHROPIC_MAX_REQUESTS",
    "CALL_FAULTS",
    "FILE_LIFETIME_S",
    "OPENAI_ENDPOINT",
    "OPENAI_MAX_BYTES",
    "OPENAI_MAX_REQUESTS",
    "WINDOW_S",
    "BatchCall",
    "FakeBatches",
    "main",
]

#: What ``FakeBatches.inject`` can do to a call: answer an error status and do nothing, reset the
#: connection and do nothing, or do the work and then reset the connection (the answer is lost).
CALL_FAULTS = ("status", "reset", "lost")


class FakeBatches(FileEndpoints):
    """Batch APIs on ``api`` (create before ``api.start()``). Every knob is a public attribute."""

    def __init__(
        self,
        api: FakeAPI,
        *,
        state_dir: str | os.PathLike[str] | None = None,
        processing_s: float | None = None,
        processing_polls: int | None = None,
        cancel_polls: int = 1,
        error_ids: Mapping[str, int] | Collection[str] = (),
        error_rate: float = 0.0,
        error_status: int = 500,
        expire_ids: Mapping[str, int] | Collection[str] = (),
        expire_rate: float = 0.0,
        seed: int = 0,
        expire_batches: Collection[int] = (),
        poll_interval: float | None = None,
        openai_max_requests: int = OPENAI_MAX_REQUESTS,
        openai_max_bytes: int = OPENAI_MAX_BYTES,
        anthropic_max_requests: int = ANTHROPIC_MAX_REQUESTS,
        anthropic_max_bytes: int = ANTHROPIC_MAX_BYTES,
        openai_enqueued_tokens: int | None = None,
        anthropic_queue_limit: int | None = None,
        clock_skew_s: float = 0.0,
    ):
        """``processing_s`` / ``processing_polls``: a batch ends that many seconds after creation or
        after that many status polls, whichever comes first (both None: at the first look).
        ``cancel_polls``: polls a cancelling batch takes to end. ``error_ids`` / ``expire_ids``:
        custom_ids that error (HTTP ``error_status``) or expire every time, or, as a mapping, in their
        first N submissions; ``error_rate`` / ``expire_rate``: seeded fractions, drawn per (model,
        custom_id, submission number). ``expire_batches``: creation numbers (1, 2, ...) of batches that
        expire as a whole. ``poll_interval``: polls of one unfinished batch closer than this get 429."""
        if api._thread is not None:  # routes are mounted when the app is built, in start()
            raise RuntimeError("create FakeBatches before starting its FakeAPI")
        if error_status == 502:
            raise ValueError("error_status 502 is a gateway's HTML page, not an answer a batch can hold")
        self.api = api
        self.processing_s, self.processing_polls, self.cancel_polls = processing_s, processing_polls, cancel_polls
        self.error_ids, self.error_rate, self.error_status = error_ids, error_rate, error_status
        self.expire_ids, self.expire_rate, self.seed = expire_ids, expire_rate, seed
        self.expire_batches = expire_batches
        self.poll_interval = poll_interval
        self.openai_max_requests, self.openai_max_bytes = openai_max_requests, openai_max_bytes
        self.anthropic_max_requests, self.anthropic_max_bytes = anthropic_max_requests, anthropic_max_bytes
        self.openai_enqueued_tokens = openai_enqueued_tokens
        self.anthropic_queue_limit = anthropic_queue_limit
        self.clock_skew_s = clock_skew_s
        self._store = BatchStore(state_dir)  # the state directory: a private temporary one when None
        self.state_dir = self._store.dir
        self._lock = threading.RLock()  # guards the store and the pending faults
        self._faults: list[tuple[str, str, int, float | None]] = []  # (endpoint, kind, status, retry_after)
        api.extensions.append(self)

    def now(self) -> float:
        """The vendor's clock: what its creation times and stamps read."""
        return time.time() + self.clock_skew_s

    # ---------------------------------------------------------------- what tests read

    @property
    def calls(self) -> list[BatchCall]:
        with self._lock:
            return list(self._store.calls)

    def submissions(self) -> Counter[tuple[str, str, str]]:
        """How many created batches held each (api, model, custom_id)."""
        with self._lock:
            return Counter(self._store.submissions)

    def answers(self) -> Counter[tuple[str, str, str]]:
        """How many ended batches delivered a result (succeeded or errored) for each (api, model, custom_id)."""
        with self._lock:
            return Counter(self._store.answers)

    def batch_ids(self, api: str | None = None) -> list[str]:
        """Ids of the batches created, oldest first (``api`` "openai" or "anthropic" for one vendor's)."""
        with self._lock:
            batches = sorted(self._store.batches.values(), key=lambda b: b.ordinal)
            return [b.id for b in batches if api is None or b.api == api]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"batches": self._store.stats()}

    def inject(
        self, endpoint: str, kind: str, *, times: int = 1, status: int = 500, retry_after: float | None = None
    ) -> None:
        """The next ``times`` calls to ``endpoint`` (a ``BatchCall.endpoint`` name such as
        "batches.create", or "*" for any) meet ``kind``: "status" answers the vendor's error JSON for
        ``status`` (with Retry-After when given) and does nothing; "reset" resets the connection and
        does nothing; "lost" does the work (uploads the file, creates the batch, cancels it) and then
        resets the connection, so the client never learns the outcome."""
        if kind not in CALL_FAULTS:
            raise ValueError(f"unknown call fault {kind!r}; known: {', '.join(CALL_FAULTS)}")
        with self._lock:
            self._faults.extend((endpoint, kind, status, retry_after) for _ in range(times))

    def _take_fault(self, endpoint: str) -> tuple[str, str, int, float | None] | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault[0] in (endpoint, "*"):
                    return self._faults.pop(i)
        return None

    def reset(self) -> None:
        """Forget the recorded calls and pending injections. Files and batches are the provider's
        state and stay."""
        with self._lock:
            self._store.clear_calls()
            self._faults.clear()

    # ---------------------------------------------------------------- routes

    def add_routes(self, app: web.Application) -> None:
        routes = [
            ("POST", "/v1/files", "files.create", "openai", self._files_create),
            ("GET", "/v1/files/{file_id}", "files.retrieve", "openai", self._files_retrieve),
            ("DELETE", "/v1/files/{file_id}", "files.delete", "openai", self._files_delete),
            ("GET", "/v1/files", "files.list", "openai", self._files_list),
            ("GET", "/v1/files/{file_id}/content", "files.content", "openai", self._files_content),
            ("POST", "/v1/batches", "batches.create", "openai", self._openai_create),
            ("GET", "/v1/batches", "batches.list", "openai", self._list),
            ("GET", "/v1/batches/{batch_id}", "batches.retrieve", "openai", self._retrieve),
            ("POST", "/v1/batches/{batch_id}/cancel", "batches.cancel", "openai", self._cancel),
            ("POST", "/v1/messages/batches", "messages.batches.create", "anthropic", self._anthropic_create),
            ("GET", "/v1/messages/batches", "messages.batches.list", "anthropic", self._list),
            ("GET", "/v1/messages/batches/{batch_id}", "messages.batches.retrieve", "anthropic", self._retrieve),
            ("POST", "/v1/messages/batches/{batch_id}/cancel", "messages.batches.cancel", "anthropic", self._cancel),
            ("GET", "/v1/messages/batches/{batch_id}/results", "messages.batches.results", "anthropic",
             self._anthropic_results),
        ]  # fmt: skip
        for method, path, endpoint, api, handler in routes:
            app.router.add_route(method, path, self._endpoint(endpoint, api, handler))
        app.router.add_post("/_fake/batches/inject", self._handle_inject)

    def _endpoint(self, endpoint: str, api: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        async def handle(http: web.Request) -> web.StreamResponse:
            call = CallNote(api, http.match_info.get("batch_id", ""), http.match_info.get("file_id", ""))
            fault = self._take_fault(endpoint)
            kind = fault[1] if fault else ""
            try:
                self._check_key(api, http)
                if fault and kind == "status":
                    retry_after = {} if fault[3] is None else {"retry-after": f"{fault[3]:g}"}
                    raise Refused(vendor_error(api, fault[2], headers=retry_after))
                if kind == "reset":
                    await http.read()  # the body arrived; the answer never leaves
                    response: web.StreamResponse = web.Response(status=500)
                else:
                    response = await handler(http, call)
            except Refused as refused:
                response = refused.response
            status = 0 if kind in ("reset", "lost") else response.status  # 0: the client got no answer
            record = BatchCall(endpoint, status, call.batch_id, call.file_id, call.requests, time.time(), kind)
            with self._lock:
                self._store.record(record)
            if kind in ("reset", "lost"):
                reset_connection(http)
            return response

        return handle

    async def _handle_inject(self, http: web.Request) -> web.Response:
        """``POST /_fake/batches/inject`` {"endpoint", "kind", "times", "status", "retry_after"}: ``inject``
        for a server in another process."""
        body = await http.json()
        try:
            self.inject(
                str(body["endpoint"]), str(body["kind"]), times=int(body.get("times", 1)),
                status=int(body.get("status", 500)), retry_after=body.get("retry_after"),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    def _check_key(self, api: str, http: web.Request) -> None:
        if self.api.require_key is None:
            return
        _, presented = credentials(http.headers)
        if self.api.require_key not in presented:
            raise Refused(vendor_error(api, 401))

    # ---------------------------------------------------------------- creating batches

    async def _openai_create(self, http: web.Request, call: CallNote) -> web.Response:
        body = await wire.batch_request(http)
        file = self._file(body["input_file_id"])
        if file["purpose"] != "batch":
            message = "The input file must be uploaded with purpose 'batch'."
            return wire.batch_error("openai", 400, message, param="input_file_id")
        batch = await asyncio.to_thread(self._new_openai_batch, file["id"], body.get("metadata"))
        call.batch_id, call.requests = batch.id, batch.total
        return web.json_response(wire.render(batch, _origin(http)))

    def _new_openai_batch(self, file_id: str, metadata: dict[str, str] | None) -> Batch:
        data = self._store.file_path(file_id).read_bytes()
        requests, errors = wire.read_batch_file(data, self.openai_max_requests)
        model = str(requests[0][1].get("model", "")) if requests else ""
        batch_id = f"batch_{uuid.uuid4().hex[:24]}"
        extra = {"input_file_id": file_id, "endpoint": OPENAI_ENDPOINT, "metadata": metadata, "model": model}
        if errors:  # a file that does not validate: the batch is created and fails at the first look
            with self._lock:
                return self._commit(batch_id, "openai", [], "", errors=errors, **extra)
        items, fates = self._answer_all("openai", requests)
        tokens = sum(input_tokens(item["body"]) for item in items)
        with self._lock:
            limit = self.openai_enqueued_tokens
            if limit is not None:
                queued = sum(b.tokens for b in self._unfinished("openai") if b.model == model)
                if queued + tokens > limit:
                    failure = wire.token_limit_error(model, limit)
                    return self._commit(batch_id, "openai", [], "", errors=[failure], **extra)
            return self._commit(batch_id, "openai", items, fates, tokens=tokens, **extra)

    async def _anthropic_create(self, http: web.Request, call: CallNote) -> web.Response:
        limit = self.anthropic_max_bytes
        raw = await wire.read_at_most(http, limit)
        if raw is None:
            message = f"Request exceeds the maximum allowed number of bytes ({limit:,}) for a Message Batch."
            return wire.batch_error("anthropic", 413, message)
        batch = await asyncio.to_thread(self._new_anthropic_batch, raw)
        call.batch_id, call.requests = batch.id, batch.total
        return web.json_response(wire.render(batch, _origin(http)))

    def _new_anthropic_batch(self, raw: bytes) -> Batch:
        requests = wire.message_batch_requests(raw, self.anthropic_max_requests)
        with self._lock:
            queue = self.anthropic_queue_limit
            queued = sum(b.total for b in self._unfinished("anthropic"))
            if queue is not None and queued + len(requests) > queue:
                message = f"Number of batch requests in the processing queue would exceed your limit of {queue:,}."
                raise Refused(wire.batch_error("anthropic", 429, message))
        items, fates = self._answer_all("anthropic", requests)
        with self._lock:
            return self._commit(f"msgbatch_{uuid.uuid4().hex[:24]}", "anthropic", items, fates)

    def _unfinished(self, api: str) -> list[Batch]:
        """``api``'s batches still processing (called holding the lock)."""
        now = self.now()
        for batch in self._store.batches.values():
            advance(self._store, batch, now)
        return [b for b in self._store.batches.values() if b.api == api and b.status not in ENDED]

    def _answer_all(self, api: str, requests: wire.Requests) -> tuple[list[dict[str, Any]], str]:
        """Each request's answer, as the live endpoint gives it, and its fate letter. Answered when the
        batch is created and kept, so a restart cannot change a result."""
        models = [str(body.get("model", "")) for _, body in requests]
        with self._lock:
            pairs = zip(models, requests, strict=True)
            submission = [self._store.submissions[(api, model, custom_id)] + 1 for model, (custom_id, _) in pairs]
        items, fates = [], []
        for (custom_id, body), model, n in zip(requests, models, submission, strict=True):
            fate = draw_fate(
                api, model, custom_id, n, error_ids=self.error_ids, error_rate=self.error_rate,
                expire_ids=self.expire_ids, expire_rate=self.expire_rate, seed=self.seed,
            )  # fmt: skip
            key, status, answer = self.api.answer(api, body)
            if fate == "e":  # chosen to fail: the vendor's error for error_status
                status, answer = self.error_status, json.loads(vendor_error(api, self.error_status).text)
            elif fate == "s" and status != 200:  # a request the live endpoint refuses fails here too
                fate = "e"
            fates.append(fate)
            items.append({
                "custom_id": custom_id, "model": model, "key": key, "status": status, "body": answer,
                "request_id": f"req_{uuid.uuid4().hex[:24]}",
            })  # fmt: skip
        return items, "".join(fates)

    def _commit(self, batch_id: str, api: str, items: list[dict[str, Any]], fates: str, **extra: Any) -> Batch:
        """Store a new batch (called holding the lock), on the schedule in force now."""
        ordinal = self._store.next_ordinal()
        batch = Batch(
            id=batch_id, api=api, ordinal=ordinal, created_at=self.now(), total=len(items), fates=fates,
            processing_s=self.processing_s, processing_polls=self.processing_polls, cancel_polls=self.cancel_polls,
            expire_whole=ordinal in self.expire_batches, signature=signature(items),
            status="validating" if api == "openai" else "in_progress", **extra,
        )  # fmt: skip
        self._store.add_batch(batch, items)
        return batch

    # ---------------------------------------------------------------- polling, listing, cancelling

    def _batch(self, http: web.Request, call: CallNote) -> Batch:
        api, batch_id = call.api, http.match_info["batch_id"]
        batch = self._store.batches.get(batch_id)
        if batch is None or batch.api != api:
            what = "No batch found with id" if api == "openai" else "No Message Batch found with id"
            raise Refused(wire.batch_error(api, 404, f"{what} '{batch_id}'."))
        return batch

    async def _retrieve(self, http: web.Request, call: CallNote) -> web.Response:
        with self._lock:
            batch, now = self._batch(http, call), self.now()
            advance(self._store, batch, now)
            wait = (batch.last_poll + self.poll_interval - now) if self.poll_interval and batch.last_poll else 0.0
            if wait > 0 and batch.status not in ENDED:
                # Too soon: refused, and not counted as a poll (a refused poll moves nothing).
                message = "Too many status requests for this batch; retry after the interval in Retry-After."
                return wire.batch_error(batch.api, 429, message, headers={"retry-after": str(math.ceil(wait))})
            batch.polls += 1
            batch.last_poll = now
            advance(self._store, batch, now)
            self._store.save_batch(batch)
            return web.json_response(wire.render(batch, _origin(http)))

    async def _list(self, http: web.Request, call: CallNote) -> web.Response:
        with self._lock:
            now = self.now()
            batches = sorted((b for b in self._store.batches.values() if b.api == call.api),
                             key=lambda b: b.ordinal, reverse=True)  # newest first  # fmt: skip
            page, has_more = wire.page_of(batches, call.api, http.query)
            for batch in page:
                advance(self._store, batch, now)
            data = [wire.render(b, _origin(http)) for b in page]
        return web.json_response(wire.listing(call.api, data, has_more))

    async def _cancel(self, http: web.Request, call: CallNote) -> web.Response:
        with self._lock:
            batch, now = self._batch(http, call), self.now()
            advance(self._store, batch, now)
            if batch.status in ENDED or batch.cancel_processed is not None:
                what = "a batch with status" if batch.api == "openai" else "a Message Batch whose processing_status is"
                return wire.batch_error(batch.api, 400, f"Cannot cancel {what} '{batch.status}'.")
            start_cancel(self._store, batch, now)
            self._store.save_batch(batch)
            return web.json_response(wire.render(batch, _origin(http)))

    async def _anthropic_results(self, http: web.Request, call: CallNote) -> web.StreamResponse:
        with self._lock:
            batch = self._batch(http, call)
            advance(self._store, batch, self.now())
            if batch.status != "ended":
                message = f"Message Batch {batch.id} has not ended; its results are not ready."
                return wire.batch_error("anthropic", 400, message)
        return web.FileResponse(self._store.results_path(batch), headers={"Content-Type": "application/x-jsonl"})


def _origin(http: web.Request) -> str:
    return str(http.url.origin())


def main(argv: list[str] | None = None) -> None:
    """``python -m gmai_client.testing.fake_batches``: every ``fake_api`` flag and the batch flags."""
    parser = build_parser("A fake OpenAI/Anthropic API with the batch APIs, for batch-mode tests.")
    add_batch_flags(parser)
    args = parser.parse_args(argv)
    api = api_from_args(args)
    FakeBatches(api, **batch_knobs(args))
    serve(api)


if __name__ == "__main__":
    main()

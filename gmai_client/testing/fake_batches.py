"""The batch APIs of the fake model server: OpenAI's Files + Batch API and Anthropic's Message Batches.

Owns the test double that ``--batch`` clients are tested against with the real vendor SDKs. It mounts
on a ``FakeAPI`` (same app, same port, same oracle), so a request gets the same answer and the same
usage numbers live or in a batch: every batched request is answered by ``FakeAPI.answer``.

OpenAI (``client.files`` / ``client.batches``)::

    POST   /v1/files                      multipart upload, purpose "batch", a .jsonl file
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

How a batch behaves, and which parts follow the vendors' documents (the rest is this fake's choice):

* OpenAI: ``validating -> in_progress -> finalizing -> completed``; ``cancelling -> cancelled``;
  ``expired``; ``failed`` when the input file does not validate (``errors.data`` lines with
  ``code`` / ``line`` / ``message`` / ``param``: ``invalid_json_line``, ``duplicate_custom_id``,
  ``url_mismatch``, ``model_mismatch``, ``empty_file``, ``too_many_tasks`` beyond 50,000 requests,
  ``token_limit_exceeded`` beyond the enqueued-token limit, ``missing_required_parameter``,
  ``invalid_method``). An upload over 200 MB is refused with 400 "File is too large.".
  ``request_counts`` grow while in progress. The output file holds the successes, the error file
  the failures: an HTTP error as ``response.status_code`` + ``response.body.error`` (``error``
  null), a request the window closed on as ``response`` null + ``error.code`` "batch_expired".
  Requests a cancel stopped appear in neither file (a client must treat a custom_id in neither
  file as not answered). Lines come in a shuffled order, as the vendor warns they may.
* Anthropic: ``in_progress -> ended``, ``canceling -> ended``; ``request_counts`` stay at
  ``processing`` until the batch ends; each result is succeeded / errored / canceled / expired.
  More than 100,000 requests is a 400 ``invalid_request_error``, more than 256 MB a 413
  ``request_too_large``. As the vendor documents, each request's ``params`` are validated while the
  batch is processed: a bad one becomes an ``errored`` result, not a refused batch.

Knobs (constructor arguments and public attributes; CLI flags in ``main``): processing time in
seconds or in status polls; custom_ids (or a seeded fraction) that error or expire; batches (by
creation number) that expire as a whole; a minimum interval between polls of an unfinished batch
(429 with Retry-After when polled sooner); the vendors' size limits; OpenAI's enqueued-token limit
and Anthropic's processing-queue limit. ``inject`` (or ``POST /_fake/batches/inject``) makes the
next call(s) to an endpoint fail: an error status, a reset connection, or a "lost" answer (the batch
is created, the client never hears of it). The live endpoints' faults, latency and rate limit do not
apply to these endpoints; ``require_key`` does.

Records: every call (``calls``, persisted), each (api, model, custom_id)'s submissions and delivered
results, and batches sent twice with the same requests; ``stats()`` / ``GET /_fake/stats`` sums them.

State: files, batches, their items and results, and the call log live in ``state_dir`` (a temporary
directory when none is given). A new server on the same directory (a restart in the middle) sees
every batch, its progress and its call history; time-based progress counts wall-clock time, so a
batch keeps "processing" while the server is down.

Out of process: ``python -m gmai_client.testing.fake_batches --port 8000 --state-dir DIR
--batch-polls 3`` (every ``fake_api`` flag too); ``GET /_fake/stats`` then has a ``batches`` entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from gmai_client.testing.fake_api import FakeAPI, api_from_args, build_parser, serve
from gmai_client.testing.fake_errors import vendor_error as _vendor_error
from gmai_client.testing.fake_faults import reset_connection as _reset_connection
from gmai_client.testing.fake_wire import credentials as _credentials

OPENAI_MAX_REQUESTS = 50_000  # per input file
OPENAI_MAX_BYTES = 200 * 1024 * 1024  # per input file
ANTHROPIC_MAX_REQUESTS = 100_000  # per batch
ANTHROPIC_MAX_BYTES = 256 * 1024 * 1024  # per batch-creation request body
OPENAI_ENDPOINT = "/v1/chat/completions"  # the one batch endpoint this fake serves
WINDOW_S = 24 * 3600
FILE_LIFETIME_S = 30 * 24 * 3600  # purpose=batch files expire after 30 days

# Fractions of an OpenAI batch's processing at which it leaves "validating" and enters "finalizing".
_VALIDATED, _FINALIZING = 0.1, 0.7
_ENDED = frozenset({"completed", "expired", "cancelled", "failed", "ended"})
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # Anthropic's rule for custom_id
_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
#: What ``FakeBatches.inject`` can do to a call: answer an error status and do nothing, reset the
#: connection and do nothing, or do the work and then reset the connection (the answer is lost).
CALL_FAULTS = ("status", "reset", "lost")


@dataclass(frozen=True)
class BatchCall:
    """One call to a file or batch endpoint, as recorded (and kept in the state directory)."""

    endpoint: str  # "files.create", "batches.retrieve", "messages.batches.results", ...
    status: int  # the HTTP status answered
    batch_id: str = ""
    file_id: str = ""
    requests: int = 0  # requests in the uploaded file or the created batch
    timestamp: float = 0.0
    fault: str = ""  # the injected fault ("status", "reset", "lost"), if any


@dataclass
class _Batch:
    """A batch's persisted state (``batches/<id>.json``); its answered items are in ``<id>.items.jsonl``."""

    id: str
    api: str  # "openai" or "anthropic"
    ordinal: int  # 1 for the first batch created in this state directory, 2 for the next, ...
    created_at: float
    total: int
    fates: str  # one letter per request, in input order: s(ucceeds), e(rrors), x (expires)
    processing_s: float | None  # the schedule in force when the batch was created
    processing_polls: int | None
    cancel_polls: int
    expire_whole: bool
    signature: str  # sha256 over its (model, custom_id, item key) set: the same batch sent twice
    status: str
    tokens: int = 0  # input tokens of its requests (the enqueued-token limit)
    model: str = ""
    input_file_id: str = ""
    endpoint: str = ""
    metadata: dict[str, str] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # OpenAI validation errors: it fails
    stamps: dict[str, float] = field(default_factory=dict)  # "in_progress_at", "cancelling_at", ... -> time
    polls: int = 0
    last_poll: float = 0.0
    processed: int = 0  # requests processed so far, in input order
    cancel_processed: int | None = None  # requests processed when the cancel arrived
    cancel_poll: int = 0  # ``polls`` when the cancel arrived
    final: str = ""  # once ended, one letter per request: s, e, x, or c (canceled)
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: dict[str, Any] | None = None


@dataclass
class _Call:
    """What a handler tells the call record: the vendor, and the batch / file / request count it saw."""

    api: str
    batch_id: str = ""
    file_id: str = ""
    requests: int = 0


class _Refused(Exception):
    """A request the vendor refuses outright: answered with ``response``."""

    def __init__(self, response: web.Response):
        super().__init__(response.status)
        self.response = response


class FakeBatches:
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
        self.processing_s = processing_s
        self.processing_polls = processing_polls
        self.cancel_polls = cancel_polls
        self.error_ids = error_ids
        self.error_rate = error_rate
        self.error_status = error_status
        self.expire_ids = expire_ids
        self.expire_rate = expire_rate
        self.seed = seed
        self.expire_batches = expire_batches
        self.poll_interval = poll_interval
        self.openai_max_requests = openai_max_requests
        self.openai_max_bytes = openai_max_bytes
        self.anthropic_max_requests = anthropic_max_requests
        self.anthropic_max_bytes = anthropic_max_bytes
        self.openai_enqueued_tokens = openai_enqueued_tokens
        self.anthropic_queue_limit = anthropic_queue_limit
        if state_dir is None:  # a private directory, removed with this object
            state_dir = tempfile.mkdtemp(prefix="fake-batches-")
            weakref.finalize(self, shutil.rmtree, state_dir, ignore_errors=True)
        self.state_dir = Path(state_dir)
        self._files_dir = self.state_dir / "files"
        self._batches_dir = self.state_dir / "batches"
        self._files_dir.mkdir(parents=True, exist_ok=True)
        self._batches_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._files: dict[str, dict[str, Any]] = {}
        self._batches: dict[str, _Batch] = {}
        self._calls: list[BatchCall] = []
        self._submissions: Counter[tuple[str, str, str]] = Counter()  # (api, model, custom_id)
        self._answers: Counter[tuple[str, str, str]] = Counter()  # results delivered (succeeded, errored)
        self._signatures: Counter[str] = Counter()
        self._faults: list[tuple[str, str, int, float | None]] = []  # (endpoint, kind, status, retry_after)
        self._load()
        api.extensions.append(self)

    # ---------------------------------------------------------------- what tests read

    @property
    def calls(self) -> list[BatchCall]:
        with self._lock:
            return list(self._calls)

    def submissions(self) -> Counter[tuple[str, str, str]]:
        """How many created batches held each (api, model, custom_id)."""
        with self._lock:
            return Counter(self._submissions)

    def answers(self) -> Counter[tuple[str, str, str]]:
        """How many ended batches delivered a result (succeeded or errored) for each (api, model, custom_id)."""
        with self._lock:
            return Counter(self._answers)

    def batch_ids(self, api: str | None = None) -> list[str]:
        """Ids of the batches created, oldest first (``api`` "openai" or "anthropic" for one vendor's)."""
        with self._lock:
            batches = sorted(self._batches.values(), key=lambda b: b.ordinal)
            return [b.id for b in batches if api is None or b.api == api]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            batches = list(self._batches.values())
            return {
                "batches": {
                    "calls": dict(Counter(c.endpoint for c in self._calls)),
                    "refused": dict(Counter(f"{c.endpoint}:{c.status}" for c in self._calls if c.status >= 400)),
                    "faults": dict(Counter(f"{c.endpoint}:{c.fault}" for c in self._calls if c.fault)),
                    "early_polls": sum(1 for c in self._calls if c.endpoint.endswith("retrieve") and c.status == 429),
                    "files": len(self._files),
                    "created": dict(Counter(b.api for b in batches)),
                    "status": dict(Counter(f"{b.api}:{b.status}" for b in batches)),
                    "items_submitted": sum(self._submissions.values()),
                    "max_submissions_per_item": max(self._submissions.values(), default=0),
                    "resubmitted_items": sum(1 for n in self._submissions.values() if n > 1),
                    "duplicate_batches": sum(n - 1 for n in self._signatures.values()),
                    "answered": sum(self._answers.values()),
                    "max_answers_per_item": max(self._answers.values(), default=0),
                }
            }

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
            self._calls.clear()
            self._faults.clear()
            (self.state_dir / "calls.jsonl").unlink(missing_ok=True)

    # ---------------------------------------------------------------- routes

    def add_routes(self, app: web.Application) -> None:
        routes = [
            ("POST", "/v1/files", "files.create", "openai", self._files_create),
            ("GET", "/v1/files/{file_id}", "files.retrieve", "openai", self._files_retrieve),
            ("DELETE", "/v1/files/{file_id}", "files.delete", "openai", self._files_delete),
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

    def _endpoint(self, endpoint: str, api: str, handler: Any) -> Any:
        async def handle(http: web.Request) -> web.StreamResponse:
            call = _Call(api, http.match_info.get("batch_id", ""), http.match_info.get("file_id", ""))
            fault = self._take_fault(endpoint)
            kind = fault[1] if fault else ""
            try:
                self._check_key(api, http)
                if fault and kind == "status":
                    retry_after = {} if fault[3] is None else {"retry-after": f"{fault[3]:g}"}
                    raise _Refused(_vendor_error(api, fault[2], headers=retry_after))
                if kind == "reset":
                    await http.read()  # the body arrived; the answer never leaves
                    response: web.StreamResponse = web.Response(status=500)
                else:
                    response = await handler(http, call)
            except _Refused as refused:
                response = refused.response
            status = 0 if kind in ("reset", "lost") else response.status  # 0: the client got no answer
            self._record(BatchCall(endpoint, status, call.batch_id, call.file_id, call.requests, time.time(), kind))
            if kind in ("reset", "lost"):
                _reset_connection(http)
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
        _, presented = _credentials(http.headers)
        if self.api.require_key not in presented:
            raise _Refused(_vendor_error(api, 401))

    # ---------------------------------------------------------------- OpenAI files

    async def _files_create(self, http: web.Request, call: _Call) -> web.Response:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        data_path = self._files_dir / f"{file_id}.data"
        purpose, filename, size = None, None, 0
        if not http.content_type.startswith("multipart/"):
            return _error("openai", 400, "The request must be multipart/form-data.")
        reader = await http.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                await part.release()
            elif part.name == "purpose":
                purpose = (await part.text()).strip()
            elif part.name == "file":
                filename = part.filename or "upload"
                with data_path.open("wb") as out:
                    # Streamed to disk; past the limit it is still read to the end (so the client
                    # gets the refusal, not a broken pipe) but no longer written.
                    while chunk := await part.read_chunk(1 << 20):
                        size += len(chunk)
                        if size <= self.openai_max_bytes:
                            out.write(chunk)
            else:
                await part.release()
        try:
            if purpose is None:
                raise _Refused(_error("openai", 400, "Missing required parameter: 'purpose'.", param="purpose"))
            if filename is None:
                raise _Refused(_error("openai", 400, "Missing required parameter: 'file'.", param="file"))
            if purpose not in _PURPOSES:
                raise _Refused(_error("openai", 400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose"))
            if purpose != "batch":
                raise _Refused(_error("openai", 400, "This fake stores purpose 'batch' files only.", param="purpose"))
            if not filename.endswith(".jsonl"):
                raise _Refused(_error("openai", 400, "Invalid file format for Batch API. Must be .jsonl"))
            if size > self.openai_max_bytes:
                raise _Refused(_error("openai", 400, "File is too large."))
        except _Refused:
            data_path.unlink(missing_ok=True)
            raise
        now = int(time.time())
        file = {
            "id": file_id, "object": "file", "bytes": size, "created_at": now, "filename": filename,
            "purpose": purpose, "status": "processed", "expires_at": now + FILE_LIFETIME_S, "status_details": None,
        }  # fmt: skip
        with data_path.open("rb") as lines:
            call.requests = sum(1 for line in lines if line.strip())
        call.file_id = file_id
        with self._lock:
            self._save_file(file)
        return web.json_response(file)

    def _file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            file = self._files.get(file_id)
        if file is None:
            raise _Refused(_error("openai", 404, f"No such File object: {file_id}", param="id"))
        return file

    async def _files_retrieve(self, http: web.Request, call: _Call) -> web.Response:
        return web.json_response(self._file(http.match_info["file_id"]))

    async def _files_content(self, http: web.Request, call: _Call) -> web.StreamResponse:
        file = self._file(http.match_info["file_id"])
        return web.FileResponse(
            self._files_dir / f"{file['id']}.data", headers={"Content-Type": "application/octet-stream"}
        )

    async def _files_delete(self, http: web.Request, call: _Call) -> web.Response:
        file = self._file(http.match_info["file_id"])
        with self._lock:
            self._files.pop(file["id"], None)
            (self._files_dir / f"{file['id']}.json").unlink(missing_ok=True)
            (self._files_dir / f"{file['id']}.data").unlink(missing_ok=True)
        return web.json_response({"id": file["id"], "object": "file", "deleted": True})

    # ---------------------------------------------------------------- creating batches

    async def _openai_create(self, http: web.Request, call: _Call) -> web.Response:
        try:
            body = await http.json()
        except ValueError:
            return _error("openai", 400, "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return _error("openai", 400, "The request body must be a JSON object.")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(name), str):
                return _error("openai", 400, f"Missing required parameter: '{name}'.", param=name)
        if body["endpoint"] != OPENAI_ENDPOINT:
            return _error("openai", 400, f"This fake batches {OPENAI_ENDPOINT} only, not {body['endpoint']!r}.",
                          param="endpoint")  # fmt: skip
        if body["completion_window"] != "24h":
            return _error("openai", 400, "Invalid value for 'completion_window': only '24h' is supported.",
                          param="completion_window")  # fmt: skip
        metadata = body.get("metadata")
        if metadata is not None and not _valid_metadata(metadata):
            return _error("openai", 400, "Invalid 'metadata': at most 16 string pairs, keys up to 64 characters "
                          "and values up to 512.", param="metadata")  # fmt: skip
        file = self._file(body["input_file_id"])
        if file["purpose"] != "batch":
            return _error("openai", 400, "The input file must be uploaded with purpose 'batch'.", param="input_file_id")
        batch = await asyncio.to_thread(self._new_openai_batch, file["id"], metadata)
        call.batch_id, call.requests = batch.id, batch.total
        return web.json_response(self._render(batch, http))

    def _new_openai_batch(self, file_id: str, metadata: dict[str, str] | None) -> _Batch:
        requests, errors = self._read_batch_file((self._files_dir / f"{file_id}.data").read_bytes())
        model = str(requests[0][1].get("model", "")) if requests else ""
        batch_id = f"batch_{uuid.uuid4().hex[:24]}"
        extra = {"input_file_id": file_id, "endpoint": OPENAI_ENDPOINT, "metadata": metadata, "model": model}
        if errors:  # a file that does not validate: the batch is created and fails at the first look
            with self._lock:
                return self._commit(batch_id, "openai", [], "", errors=errors, **extra)
        items, fates = self._answer_all("openai", requests)
        tokens = sum(_input_tokens(item["body"]) for item in items)
        with self._lock:
            limit = self.openai_enqueued_tokens
            if limit is not None:
                queued = sum(b.tokens for b in self._unfinished("openai") if b.model == model)
                if queued + tokens > limit:
                    message = (
                        f"Enqueued token limit reached for {model} in organization org-fake. Limit: {limit:,} "
                        "enqueued tokens. Please try again once some in_progress batches have been completed."
                    )
                    failure = {"code": "token_limit_exceeded", "line": None, "message": message, "param": None}
                    return self._commit(batch_id, "openai", [], "", errors=[failure], **extra)
            return self._commit(batch_id, "openai", items, fates, tokens=tokens, **extra)

    def _read_batch_file(self, data: bytes) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
        """The requests of a batch input file, or the validation errors that fail its batch."""

        def error(code: str, line: int | None, message: str, param: str | None = None) -> dict[str, Any]:
            return {"code": code, "line": line, "message": message, "param": param}

        lines = [(n, raw) for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]
        if not lines:
            return [], [error("empty_file", None, "The batch input file is empty.")]
        if len(lines) > self.openai_max_requests:
            message = (
                f"The batch input file holds {len(lines):,} requests; a batch may hold at most "
                f"{self.openai_max_requests:,}. Split it into several batches."
            )
            return [], [error("too_many_tasks", None, message)]
        requests: list[tuple[str, dict[str, Any]]] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        first_model: tuple[int, str] | None = None  # (line, model)
        for n, raw in lines:
            try:
                line = json.loads(raw)
            except ValueError:
                line = None
            if not isinstance(line, dict):
                errors.append(error("invalid_json_line", n, "This line is not parseable as valid JSON."))
                continue
            custom_id, body = line.get("custom_id"), line.get("body")
            if not isinstance(custom_id, str) or not custom_id:
                errors.append(error("missing_required_parameter", n, "Missing required parameter: 'custom_id'.",
                                    "custom_id"))  # fmt: skip
            elif custom_id in seen:
                errors.append(error("duplicate_custom_id", n, "The custom_id for this request is a duplicate of "
                                    "another request. The custom_id parameter must be unique for each request "
                                    "in a batch.", "custom_id"))  # fmt: skip
            if line.get("method") != "POST":
                errors.append(error("invalid_method", n, "The method must be 'POST'.", "method"))
            if line.get("url") != OPENAI_ENDPOINT:
                errors.append(error("url_mismatch", n, f"The provided URL '{line.get('url')}' does not match the "
                                    f"batch endpoint '{OPENAI_ENDPOINT}'.", "url"))  # fmt: skip
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                errors.append(error("missing_required_parameter", n, "Missing required parameter: 'body.model'.",
                                    "body.model"))  # fmt: skip
                continue
            if first_model is None:
                first_model = (n, body["model"])
            elif body["model"] != first_model[1]:
                errors.append(error("model_mismatch", n, f"Every request in a batch must use the same model: "
                                    f"line {n} asks for {body['model']!r}, line {first_model[0]} for "
                                    f"{first_model[1]!r}.", "body.model"))  # fmt: skip
            if isinstance(custom_id, str) and custom_id:
                seen.add(custom_id)
                requests.append((custom_id, body))
        return requests, errors

    async def _anthropic_create(self, http: web.Request, call: _Call) -> web.Response:
        limit = self.anthropic_max_bytes
        raw = await _read_at_most(http, limit)
        if raw is None:
            return _error("anthropic", 413, f"Request exceeds the maximum allowed number of bytes ({limit:,}) "
                          "for a Message Batch.")  # fmt: skip
        batch = await asyncio.to_thread(self._new_anthropic_batch, raw)
        call.batch_id, call.requests = batch.id, batch.total
        return web.json_response(self._render(batch, http))

    def _new_anthropic_batch(self, raw: bytes) -> _Batch:
        try:
            body = json.loads(raw)
        except ValueError:
            raise _Refused(_error("anthropic", 400, "The request body is not valid JSON.")) from None
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise _Refused(_error("anthropic", 400, "requests: at least one request is required"))
        if len(requests) > self.anthropic_max_requests:
            raise _Refused(_error("anthropic", 400, f"requests: a Message Batch holds at most "
                                  f"{self.anthropic_max_requests:,} requests; this one has {len(requests):,}."))
        seen: set[str] = set()
        checked: list[tuple[str, dict[str, Any]]] = []
        for i, request in enumerate(requests):
            if not isinstance(request, dict):
                raise _Refused(_error("anthropic", 400, f"requests.{i}: Input should be an object"))
            custom_id, params = request.get("custom_id"), request.get("params")
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
                raise _Refused(_error("anthropic", 400, f"requests.{i}.custom_id: String should match pattern "
                                      f"'{_CUSTOM_ID.pattern}'"))  # fmt: skip
            if custom_id in seen:
                raise _Refused(_error("anthropic", 400, f"requests.{i}.custom_id: {custom_id!r} is used by another "
                                      "request; custom_id must be unique within a Message Batch."))  # fmt: skip
            if not isinstance(params, dict):
                raise _Refused(_error("anthropic", 400, f"requests.{i}.params: Field required"))
            if params.get("stream"):
                raise _Refused(_error("anthropic", 400, f"requests.{i}.params.stream: streaming is not supported "
                                      "in a Message Batch"))  # fmt: skip
            seen.add(custom_id)
            checked.append((custom_id, params))
        with self._lock:
            queue = self.anthropic_queue_limit
            queued = sum(b.total for b in self._unfinished("anthropic"))
            if queue is not None and queued + len(checked) > queue:
                raise _Refused(_error("anthropic", 429, f"Number of batch requests in the processing queue would "
                                      f"exceed your limit of {queue:,}."))  # fmt: skip
        items, fates = self._answer_all("anthropic", checked)
        with self._lock:
            return self._commit(f"msgbatch_{uuid.uuid4().hex[:24]}", "anthropic", items, fates)

    def _unfinished(self, api: str) -> list[_Batch]:
        """``api``'s batches still processing (called holding the lock)."""
        now = time.time()
        for batch in self._batches.values():
            self._advance(batch, now)
        return [b for b in self._batches.values() if b.api == api and b.status not in _ENDED]

    def _answer_all(self, api: str, requests: list[tuple[str, dict[str, Any]]]) -> tuple[list[dict[str, Any]], str]:
        """Each request's answer, as the live endpoint gives it, and its fate letter. Answered when the
        batch is created and kept, so a restart cannot change a result."""
        models = [str(body.get("model", "")) for _, body in requests]
        with self._lock:
            pairs = zip(models, requests, strict=True)
            submission = [self._submissions[(api, model, custom_id)] + 1 for model, (custom_id, _) in pairs]
        items, fates = [], []
        for (custom_id, body), model, n in zip(requests, models, submission, strict=True):
            fate = self._fate(api, model, custom_id, n)
            key, status, answer = self.api.answer(api, body)
            if fate == "e":  # chosen to fail: the vendor's error for error_status
                status, answer = self.error_status, json.loads(_vendor_error(api, self.error_status).text)
            elif fate == "s" and status != 200:  # a request the live endpoint refuses fails here too
                fate = "e"
            fates.append(fate)
            items.append({
                "custom_id": custom_id, "model": model, "key": key, "status": status, "body": answer,
                "request_id": f"req_{uuid.uuid4().hex[:24]}",
            })  # fmt: skip
        return items, "".join(fates)

    def _fate(self, api: str, model: str, custom_id: str, submission: int) -> str:
        if _listed(self.error_ids, custom_id, submission):
            return "e"
        if _listed(self.expire_ids, custom_id, submission):
            return "x"
        u = random.Random(f"{self.seed}:{api}:{model}:{custom_id}:{submission}").random()
        if u < self.error_rate:
            return "e"
        if u < self.error_rate + self.expire_rate:
            return "x"
        return "s"

    def _commit(self, batch_id: str, api: str, items: list[dict[str, Any]], fates: str, **extra: Any) -> _Batch:
        """Store a new batch (called holding the lock): items first, so a batch file always has them."""
        ordinal = 1 + max((b.ordinal for b in self._batches.values()), default=0)
        digest = hashlib.sha256()
        for line in sorted(f"{item['model']}\t{item['custom_id']}\t{item['key']}" for item in items):
            digest.update(line.encode("utf-8") + b"\n")
        batch = _Batch(
            id=batch_id, api=api, ordinal=ordinal, created_at=time.time(), total=len(items), fates=fates,
            processing_s=self.processing_s, processing_polls=self.processing_polls, cancel_polls=self.cancel_polls,
            expire_whole=ordinal in self.expire_batches, signature=digest.hexdigest() if items else "",
            status="validating" if api == "openai" else "in_progress", **extra,
        )  # fmt: skip
        _write_lines(self._batches_dir / f"{batch_id}.items.jsonl", items)
        self._save_batch(batch)
        self._batches[batch_id] = batch
        for item in items:
            self._submissions[(api, item["model"], item["custom_id"])] += 1
        if batch.signature:
            self._signatures[batch.signature] += 1
        return batch

    # ---------------------------------------------------------------- polling, listing, cancelling

    def _batch(self, http: web.Request, call: _Call) -> _Batch:
        api, batch_id = call.api, http.match_info["batch_id"]
        batch = self._batches.get(batch_id)
        if batch is None or batch.api != api:
            what = "No batch found with id" if api == "openai" else "No Message Batch found with id"
            raise _Refused(_error(api, 404, f"{what} '{batch_id}'."))
        return batch

    async def _retrieve(self, http: web.Request, call: _Call) -> web.Response:
        with self._lock:
            batch, now = self._batch(http, call), time.time()
            self._advance(batch, now)
            wait = (batch.last_poll + self.poll_interval - now) if self.poll_interval and batch.last_poll else 0.0
            if wait > 0 and batch.status not in _ENDED:
                # Too soon: refused, and not counted as a poll (a refused poll moves nothing).
                return _error(batch.api, 429, "Too many status requests for this batch; retry after the "
                              "interval in Retry-After.", headers={"retry-after": str(math.ceil(wait))})  # fmt: skip
            batch.polls += 1
            batch.last_poll = now
            self._advance(batch, now)
            self._save_batch(batch)
            return web.json_response(self._render(batch, http))

    async def _list(self, http: web.Request, call: _Call) -> web.Response:
        api = call.api
        top = 100 if api == "openai" else 1000
        try:
            limit = int(http.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= top:
            return _error(api, 400, f"limit: must be between 1 and {top}", param="limit")
        with self._lock:
            now = time.time()
            batches = sorted((b for b in self._batches.values() if b.api == api),
                             key=lambda b: b.ordinal, reverse=True)  # newest first  # fmt: skip
            ids = [b.id for b in batches]
            after = http.query.get("after" if api == "openai" else "after_id")
            before = http.query.get("before_id") if api == "anthropic" else None
            if before is not None:
                end = ids.index(before) if before in ids else 0
                page, has_more = batches[max(0, end - limit) : end], end - limit > 0
            else:
                start = ids.index(after) + 1 if after in ids else (len(ids) if after is not None else 0)
                page, has_more = batches[start : start + limit], start + limit < len(ids)
            for batch in page:
                self._advance(batch, now)
            data = [self._render(b, http) for b in page]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        listing: dict[str, Any] = {"data": data, "has_more": has_more, "first_id": first, "last_id": last}
        if api == "openai":
            listing = {"object": "list", **listing}
        return web.json_response(listing)

    async def _cancel(self, http: web.Request, call: _Call) -> web.Response:
        with self._lock:
            batch, now = self._batch(http, call), time.time()
            self._advance(batch, now)
            if batch.status in _ENDED or batch.cancel_processed is not None:
                what = "a batch with status" if batch.api == "openai" else "a Message Batch whose processing_status is"
                return _error(batch.api, 400, f"Cannot cancel {what} '{batch.status}'.")
            batch.cancel_processed = batch.processed
            batch.cancel_poll = batch.polls
            batch.status = "cancelling" if batch.api == "openai" else "canceling"
            batch.stamps.setdefault("cancelling_at", now)
            self._advance(batch, now)  # cancel_polls=0: it ends at once
            self._save_batch(batch)
            return web.json_response(self._render(batch, http))

    async def _anthropic_results(self, http: web.Request, call: _Call) -> web.StreamResponse:
        with self._lock:
            batch = self._batch(http, call)
            self._advance(batch, time.time())
            if batch.status != "ended":
                return _error("anthropic", 400, f"Message Batch {batch.id} has not ended; its results are not ready.")
        return web.FileResponse(
            self._batches_dir / f"{batch.id}.results.jsonl", headers={"Content-Type": "application/x-jsonl"}
        )

    # ---------------------------------------------------------------- the state machine

    def _fraction(self, batch: _Batch, now: float) -> float:
        """How far processing has gone: 0 at creation, 1 and above once it is done."""
        parts = []
        if batch.processing_polls is not None:
            parts.append(batch.polls / batch.processing_polls if batch.processing_polls > 0 else math.inf)
        if batch.processing_s is not None:
            parts.append((now - batch.created_at) / batch.processing_s if batch.processing_s > 0 else math.inf)
        return max(parts, default=math.inf)

    def _processed(self, batch: _Batch, fraction: float) -> int:
        """Requests processed (in input order) at ``fraction``."""
        if batch.api == "openai":
            if fraction < _VALIDATED:
                return 0
            fraction = (fraction - _VALIDATED) / (_FINALIZING - _VALIDATED)
        return batch.total if fraction >= 1 else math.floor(batch.total * fraction)

    def _advance(self, batch: _Batch, now: float) -> None:
        """Move ``batch`` to the state its schedule says it is in by ``now``, and save any change
        (called holding the lock)."""
        before = (batch.status, batch.processed)
        self._move(batch, now)
        if (batch.status, batch.processed) != before:
            self._save_batch(batch)

    def _move(self, batch: _Batch, now: float) -> None:
        if batch.status in _ENDED:
            return
        if batch.cancel_processed is not None:
            if batch.polls - batch.cancel_poll >= batch.cancel_polls:
                self._end(batch, now, cancelled=True)
            return
        fraction = self._fraction(batch, now)
        batch.processed = self._processed(batch, fraction)
        if batch.api == "anthropic":
            if fraction >= 1:
                self._end(batch, now)
            return
        if batch.errors:
            if fraction > 0:
                batch.status = "failed"
                batch.stamps["failed_at"] = now
            return
        if fraction >= 1:
            self._end(batch, now)
        elif fraction >= _FINALIZING:
            self._enter(batch, "finalizing", now)
        elif fraction >= _VALIDATED:
            self._enter(batch, "in_progress", now)

    @staticmethod
    def _enter(batch: _Batch, status: str, now: float) -> None:
        batch.status = status
        for phase in ("in_progress", "finalizing")[: 1 + (status == "finalizing")]:
            batch.stamps.setdefault(f"{phase}_at", now)

    def _end(self, batch: _Batch, now: float, *, cancelled: bool = False) -> None:
        """Decide every request's result, write the result files, and record what was answered."""
        done = batch.cancel_processed if cancelled and batch.cancel_processed is not None else batch.total
        final = []
        for i, fate in enumerate(batch.fates):
            if cancelled:
                final.append(fate if i < done and fate != "x" else "c")
            else:
                final.append("x" if batch.expire_whole else fate)
        batch.final = "".join(final)
        items = _read_lines(self._batches_dir / f"{batch.id}.items.jsonl")
        order = random.Random(batch.id).sample(range(len(items)), len(items))  # results come in any order
        if batch.api == "openai":
            self._end_openai(batch, items, order, now, cancelled)
        else:
            lines = [_anthropic_result(items[i], batch.final[i]) for i in order]
            _write_lines(self._batches_dir / f"{batch.id}.results.jsonl", lines)
            batch.status = "ended"
            batch.stamps["ended_at"] = now
        for item, result in zip(items, batch.final, strict=True):
            if result in "se":
                self._answers[(batch.api, item["model"], item["custom_id"])] += 1

    def _end_openai(
        self, batch: _Batch, items: list[dict[str, Any]], order: list[int], now: float, cancelled: bool
    ) -> None:
        if not cancelled:
            self._enter(batch, "finalizing", now)
        outputs, errors = [], []
        for i in order:
            item, result = items[i], batch.final[i]
            line_id = f"batch_req_{hashlib.sha256(f'{batch.id}:{i}'.encode()).hexdigest()[:24]}"
            response = {"status_code": item["status"], "request_id": item["request_id"], "body": item["body"]}
            if result == "s":
                outputs.append({"id": line_id, "custom_id": item["custom_id"], "response": response, "error": None})
            elif result == "e":
                errors.append({"id": line_id, "custom_id": item["custom_id"], "response": response, "error": None})
            elif result == "x":
                expired = {"code": "batch_expired",
                           "message": "This request could not be executed before the completion window expired."}
                errors.append({"id": line_id, "custom_id": item["custom_id"], "response": None, "error": expired})
        if outputs:
            batch.output_file_id = self._result_file(batch, "output", outputs)
        if errors:
            batch.error_file_id = self._result_file(batch, "error", errors)
        succeeded = [items[i] for i in range(len(items)) if batch.final[i] == "s"]
        input_tokens = sum(_input_tokens(item["body"]) for item in succeeded)
        output_tokens = sum(item["body"].get("usage", {}).get("completion_tokens", 0) for item in succeeded)
        batch.usage = {
            "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }  # fmt: skip
        batch.status = "cancelled" if cancelled else "expired" if "x" in batch.final else "completed"
        batch.stamps[f"{batch.status}_at"] = now

    def _result_file(self, batch: _Batch, kind: str, lines: list[dict[str, Any]]) -> str:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        path = self._files_dir / f"{file_id}.data"
        _write_lines(path, lines)
        now = int(time.time())
        self._save_file({
            "id": file_id, "object": "file", "bytes": path.stat().st_size, "created_at": now,
            "filename": f"{batch.id}_{kind}.jsonl", "purpose": "batch_output", "status": "processed",
            "expires_at": now + FILE_LIFETIME_S, "status_details": None,
        })  # fmt: skip
        return file_id

    # ---------------------------------------------------------------- the wire objects

    def _render(self, batch: _Batch, http: web.Request) -> dict[str, Any]:
        if batch.api == "openai":
            return self._render_openai(batch)
        stamps = batch.stamps
        counts = {"processing": batch.total, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.final:
            counts = {
                "processing": 0, "succeeded": batch.final.count("s"), "errored": batch.final.count("e"),
                "canceled": batch.final.count("c"), "expired": batch.final.count("x"),
            }  # fmt: skip
        ended = batch.status == "ended"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.status,
            "request_counts": counts,
            "ended_at": _rfc3339(stamps.get("ended_at")),
            "created_at": _rfc3339(batch.created_at),
            "expires_at": _rfc3339(batch.created_at + WINDOW_S),
            "archived_at": None,
            "cancel_initiated_at": _rfc3339(stamps.get("cancelling_at")),
            # Built from the address the client used, so it stays right after a restart on a new port.
            "results_url": f"{http.url.origin()}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def _render_openai(self, batch: _Batch) -> dict[str, Any]:
        if batch.final:
            completed = batch.final.count("s")
            failed = batch.final.count("e") + batch.final.count("x")
        else:
            done = batch.cancel_processed if batch.cancel_processed is not None else batch.processed
            completed, failed = batch.fates[:done].count("s"), batch.fates[:done].count("e")

        def stamp(name: str) -> int | None:
            value = batch.stamps.get(name)
            return None if value is None else int(value)

        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": int(batch.created_at),
            "in_progress_at": stamp("in_progress_at"),
            "expires_at": int(batch.created_at + WINDOW_S),
            "finalizing_at": stamp("finalizing_at"),
            "completed_at": stamp("completed_at"),
            "failed_at": stamp("failed_at"),
            "expired_at": stamp("expired_at"),
            "cancelling_at": stamp("cancelling_at"),
            "cancelled_at": stamp("cancelled_at"),
            "request_counts": {"total": batch.total, "completed": completed, "failed": failed},
            "metadata": batch.metadata,
            "model": batch.model or None,
            "usage": batch.usage,
        }

    # ---------------------------------------------------------------- persistence

    def _load(self) -> None:
        for path in sorted(self._files_dir.glob("*.json")):
            file = json.loads(path.read_text(encoding="utf-8"))
            self._files[file["id"]] = file
        for path in sorted(self._batches_dir.glob("*.json")):
            batch = _Batch(**json.loads(path.read_text(encoding="utf-8")))
            self._batches[batch.id] = batch
            items = _read_lines(self._batches_dir / f"{batch.id}.items.jsonl")
            for i, item in enumerate(items):
                who = (batch.api, item["model"], item["custom_id"])
                self._submissions[who] += 1
                if batch.final and batch.final[i] in "se":
                    self._answers[who] += 1
            if batch.signature:
                self._signatures[batch.signature] += 1
        calls = self.state_dir / "calls.jsonl"
        if calls.exists():
            self._calls = [BatchCall(**line) for line in _read_lines(calls)]

    def _save_batch(self, batch: _Batch) -> None:
        _write_json(self._batches_dir / f"{batch.id}.json", asdict(batch))

    def _save_file(self, file: dict[str, Any]) -> None:
        _write_json(self._files_dir / f"{file['id']}.json", file)
        self._files[file["id"]] = file

    def _record(self, call: BatchCall) -> None:
        with self._lock:
            self._calls.append(call)
            with (self.state_dir / "calls.jsonl").open("a", encoding="utf-8") as log:
                log.write(json.dumps(asdict(call)) + "\n")


# -------------------------------------------------------------------- helpers


def _error(
    api: str, status: int, message: str, *, param: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The vendor's error JSON (OpenAI's with ``param`` and no code, as its batch and file errors have)."""
    if api == "anthropic":
        return _vendor_error(api, status, message=message, headers=headers)
    error_type = "server_error" if status >= 500 else "requests" if status == 429 else "invalid_request_error"
    code = "rate_limit_exceeded" if status == 429 else None
    error = {"message": message, "type": error_type, "param": param, "code": code}
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    return web.json_response({"error": error}, status=status, headers={"x-request-id": request_id, **(headers or {})})


def _listed(ids: Mapping[str, int] | Collection[str], custom_id: str, submission: int) -> bool:
    """Whether ``custom_id``'s ``submission``-th submission is picked: always when ``ids`` is a
    collection holding it, for the first N when ``ids`` maps it to N."""
    if isinstance(ids, Mapping):
        return custom_id in ids and submission <= ids[custom_id]
    return custom_id in ids


def _input_tokens(body: Any) -> int:
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0
    return int(usage.get("prompt_tokens", usage.get("input_tokens", 0)))


def _anthropic_result(item: dict[str, Any], result: str) -> dict[str, Any]:
    if result == "s":
        return {"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": item["body"]}}
    if result == "e":
        return {"custom_id": item["custom_id"], "result": {"type": "errored", "error": item["body"]}}
    return {"custom_id": item["custom_id"], "result": {"type": "canceled" if result == "c" else "expired"}}


def _valid_metadata(metadata: Any) -> bool:
    return (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                for k, v in metadata.items())
    )  # fmt: skip


def _rfc3339(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def _read_at_most(http: web.Request, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes (read to the end either way, so the
    client gets the answer instead of a broken pipe)."""
    chunks, size = [], 0
    async for chunk in http.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    return b"".join(chunks) if size <= limit else None


def _write_json(path: Path, document: Any) -> None:
    # Write then rename: a server killed mid-write leaves the old state, never half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document), encoding="utf-8")
    os.replace(partial, path)


def _write_lines(path: Path, lines: Iterable[Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    os.replace(partial, path)


def _read_lines(path: Path) -> list[Any]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


# -------------------------------------------------------------------- out-of-process use


def _ids(values: list[str]) -> dict[str, int] | set[str]:
    """``ID`` (every submission) or ``ID:N`` (the first N) flags -> ``error_ids`` / ``expire_ids``."""
    always, first = set(), {}
    for value in values:
        custom_id, _, times = value.rpartition(":")
        if custom_id and times.isdigit():
            first[custom_id] = int(times)
        else:
            always.add(value)
    if always and first:
        raise SystemExit("give every id the same way: all ID or all ID:N")
    return first or always


def main(argv: list[str] | None = None) -> None:
    parser = build_parser("A fake OpenAI/Anthropic API with the batch APIs, for batch-mode tests.")
    batch = parser.add_argument_group("batch APIs")
    batch.add_argument("--state-dir", default=None, help="keep files and batches here (a restart resumes them)")
    batch.add_argument("--batch-seconds", type=float, default=None, help="a batch ends this long after creation")
    batch.add_argument("--batch-polls", type=int, default=None, help="a batch ends after this many status polls")
    batch.add_argument("--cancel-polls", type=int, default=1, help="polls a cancelling batch takes to end")
    batch.add_argument("--batch-error-id", action="append", default=[], metavar="ID[:N]",
                       help="this custom_id errors (in its first N submissions)")
    batch.add_argument("--batch-error-rate", type=float, default=0.0, help="seeded by --seed, as faults are")
    batch.add_argument("--batch-error-status", type=int, default=500)
    batch.add_argument("--batch-expire-id", action="append", default=[], metavar="ID[:N]",
                       help="this custom_id expires (in its first N submissions)")
    batch.add_argument("--batch-expire-rate", type=float, default=0.0)
    batch.add_argument("--expire-batch", action="append", type=int, default=[], metavar="N",
                       help="the N-th batch created expires as a whole")
    batch.add_argument("--poll-interval", type=float, default=None, help="429 for polls closer than this (s)")
    batch.add_argument("--openai-max-requests", type=int, default=OPENAI_MAX_REQUESTS)
    batch.add_argument("--openai-max-bytes", type=int, default=OPENAI_MAX_BYTES)
    batch.add_argument("--anthropic-max-requests", type=int, default=ANTHROPIC_MAX_REQUESTS)
    batch.add_argument("--anthropic-max-bytes", type=int, default=ANTHROPIC_MAX_BYTES)
    batch.add_argument("--openai-enqueued-tokens", type=int, default=None, help="enqueued input tokens per model")
    batch.add_argument("--anthropic-queue-limit", type=int, default=None, help="requests processing at once")
    args = parser.parse_args(argv)
    api = api_from_args(args)
    FakeBatches(
        api, state_dir=args.state_dir, processing_s=args.batch_seconds, processing_polls=args.batch_polls,
        cancel_polls=args.cancel_polls, error_ids=_ids(args.batch_error_id), error_rate=args.batch_error_rate,
        error_status=args.batch_error_status, expire_ids=_ids(args.batch_expire_id),
        expire_rate=args.batch_expire_rate, seed=args.seed, expire_batches=frozenset(args.expire_batch),
        poll_interval=args.poll_interval, openai_max_requests=args.openai_max_requests,
        openai_max_bytes=args.openai_max_bytes, anthropic_max_requests=args.anthropic_max_requests,
        anthropic_max_bytes=args.anthropic_max_bytes, openai_enqueued_tokens=args.openai_enqueued_tokens,
        anthropic_queue_limit=args.anthropic_queue_limit,
    )  # fmt: skip
    serve(api)


if __name__ == "__main__":
    main()

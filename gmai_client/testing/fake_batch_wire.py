"""The fake batch APIs' wire formats: what the OpenAI Files + Batch endpoints and Anthropic's Message
Batches endpoints accept, what they refuse and how, and the batch objects they answer with.

Owns, following the vendors' documents:

* uploads: multipart, purpose "batch", a ``.jsonl`` name, at most ``max_bytes`` (else 400 "File is
  too large."), streamed to disk;
* OpenAI batch input files: a file that does not validate fails its batch, with ``errors.data``
  lines of ``code`` / ``line`` / ``message`` / ``param``: ``invalid_json_line``,
  ``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``, ``empty_file``, ``too_many_tasks``,
  ``missing_required_parameter``, ``invalid_method`` (``token_limit_exceeded`` is the server's);
* Anthropic batch bodies: refused outright (400) for a bad ``custom_id``, a duplicate, missing
  ``params``, streaming or too many requests; each request's ``params`` are validated later, while
  the batch is processed;
* list pages, newest first (OpenAI's ``after``; Anthropic's ``after_id`` / ``before_id``);
* the Batch and Message Batch objects, and error JSON with OpenAI's ``param``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from gmai_client.testing.fake_batch_store import Batch
from gmai_client.testing.fake_errors import vendor_error

OPENAI_ENDPOINT = "/v1/chat/completions"  # the one batch endpoint this fake serves
OPENAI_MAX_REQUESTS = 50_000  # per input file
OPENAI_MAX_BYTES = 200 * 1024 * 1024  # per input file
ANTHROPIC_MAX_REQUESTS = 100_000  # per batch
ANTHROPIC_MAX_BYTES = 256 * 1024 * 1024  # per batch-creation request body
WINDOW_S = 24 * 3600
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # Anthropic's rule for custom_id
_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")

Requests = list[tuple[str, dict[str, Any]]]  # (custom_id, request body) in input order


class Refused(Exception):
    """A request the vendor refuses outright: answered with ``response``."""

    def __init__(self, response: web.Response):
        super().__init__(response.status)
        self.response = response


def batch_error(
    api: str, status: int, message: str, *, param: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The vendor's error JSON (OpenAI's with ``param`` and no code, as its batch and file errors have)."""
    if api == "anthropic":
        return vendor_error(api, status, message=message, headers=headers)
    error_type = "server_error" if status >= 500 else "requests" if status == 429 else "invalid_request_error"
    code = "rate_limit_exceeded" if status == 429 else None
    error = {"message": message, "type": error_type, "param": param, "code": code}
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    return web.json_response({"error": error}, status=status, headers={"x-request-id": request_id, **(headers or {})})


def _refuse(message: str, param: str | None = None, api: str = "openai", status: int = 400) -> Refused:
    return Refused(batch_error(api, status, message, param=param))


# -------------------------------------------------------------------- OpenAI: uploads and batches


async def receive_upload(http: web.Request, path: Path, max_bytes: int) -> tuple[str, str, int]:
    """Stream a multipart upload's file to ``path``; its (purpose, filename, size), or ``Refused``
    (and nothing left at ``path``) for an upload the Files API refuses."""
    if not http.content_type.startswith("multipart/"):
        raise _refuse("The request must be multipart/form-data.")
    purpose, filename, size = None, None, 0
    reader = await http.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            await part.release()
        elif part.name == "purpose":
            purpose = (await part.text()).strip()
        elif part.name == "file":
            filename = part.filename or "upload"
            with path.open("wb") as out:
                # Streamed to disk; past the limit it is still read to the end (so the client
                # gets the refusal, not a broken pipe) but no longer written.
                while chunk := await part.read_chunk(1 << 20):
                    size += len(chunk)
                    if size <= max_bytes:
                        out.write(chunk)
        else:
            await part.release()
    try:
        return _checked_upload(purpose, filename, size, max_bytes)
    except Refused:
        path.unlink(missing_ok=True)
        raise


def _checked_upload(purpose: str | None, filename: str | None, size: int, max_bytes: int) -> tuple[str, str, int]:
    if purpose is None:
        raise _refuse("Missing required parameter: 'purpose'.", "purpose")
    if filename is None:
        raise _refuse("Missing required parameter: 'file'.", "file")
    if purpose not in _PURPOSES:
        raise _refuse(f"Invalid value for 'purpose': {purpose!r}.", "purpose")
    if purpose != "batch":
        raise _refuse("This fake stores purpose 'batch' files only.", "purpose")
    if not filename.endswith(".jsonl"):
        raise _refuse("Invalid file format for Batch API. Must be .jsonl")
    if size > max_bytes:
        raise _refuse("File is too large.")
    return purpose, filename, size


async def batch_request(http: web.Request) -> dict[str, Any]:
    """The body of ``POST /v1/batches``, checked (``Refused`` otherwise)."""
    try:
        body = await http.json()
    except ValueError:
        raise _refuse("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _refuse("The request body must be a JSON object.")
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str):
            raise _refuse(f"Missing required parameter: '{name}'.", name)
    if body["endpoint"] != OPENAI_ENDPOINT:
        raise _refuse(f"This fake batches {OPENAI_ENDPOINT} only, not {body['endpoint']!r}.", "endpoint")
    if body["completion_window"] != "24h":
        raise _refuse("Invalid value for 'completion_window': only '24h' is supported.", "completion_window")
    metadata = body.get("metadata")
    if metadata is not None and not _valid_metadata(metadata):
        raise _refuse("Invalid 'metadata': at most 16 string pairs, keys up to 64 characters and values up to 512.",
                      "metadata")  # fmt: skip
    return body


def _valid_metadata(metadata: Any) -> bool:
    return (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                for k, v in metadata.items())
    )  # fmt: skip


def _line_error(code: str, line: int | None, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "line": line, "message": message, "param": param}


def read_batch_file(data: bytes, max_requests: int) -> tuple[Requests, list[dict[str, Any]]]:
    """The requests of a batch input file, and the validation errors that fail its batch."""
    lines = [(n, raw) for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]
    if not lines:
        return [], [_line_error("empty_file", None, "The batch input file is empty.")]
    if len(lines) > max_requests:
        message = (
            f"The batch input file holds {len(lines):,} requests; a batch may hold at most "
            f"{max_requests:,}. Split it into several batches."
        )
        return [], [_line_error("too_many_tasks", None, message)]
    requests: Requests = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    first_model: tuple[int, str] | None = None  # (line, model)
    for n, raw in lines:
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            errors.append(_line_error("invalid_json_line", n, "This line is not parseable as valid JSON."))
            continue
        errors += _request_line_errors(n, line, seen)
        body = line.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            errors.append(_line_error("missing_required_parameter", n, "Missing required parameter: 'body.model'.",
                                      "body.model"))  # fmt: skip
            continue
        if first_model is None:
            first_model = (n, body["model"])
        elif body["model"] != first_model[1]:
            errors.append(_line_error("model_mismatch", n, f"Every request in a batch must use the same model: "
                                      f"line {n} asks for {body['model']!r}, line {first_model[0]} for "
                                      f"{first_model[1]!r}.", "body.model"))  # fmt: skip
        custom_id = line.get("custom_id")
        if isinstance(custom_id, str) and custom_id:
            seen.add(custom_id)
            requests.append((custom_id, body))
    return requests, errors


def _request_line_errors(n: int, line: dict[str, Any], seen: set[str]) -> list[dict[str, Any]]:
    """Line ``n``'s errors in its custom_id, method and url (``seen``: the custom_ids before it)."""
    errors = []
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        errors.append(_line_error("missing_required_parameter", n, "Missing required parameter: 'custom_id'.",
                                  "custom_id"))  # fmt: skip
    elif custom_id in seen:
        errors.append(_line_error("duplicate_custom_id", n, "The custom_id for this request is a duplicate of "
                                  "another request. The custom_id parameter must be unique for each request "
                                  "in a batch.", "custom_id"))  # fmt: skip
    if line.get("method") != "POST":
        errors.append(_line_error("invalid_method", n, "The method must be 'POST'.", "method"))
    if line.get("url") != OPENAI_ENDPOINT:
        errors.append(_line_error("url_mismatch", n, f"The provided URL '{line.get('url')}' does not match the "
                                  f"batch endpoint '{OPENAI_ENDPOINT}'.", "url"))  # fmt: skip
    return errors


def token_limit_error(model: str, limit: int) -> dict[str, Any]:
    """The validation error that fails a batch over the enqueued-token limit of ``model``."""
    message = (
        f"Enqueued token limit reached for {model} in organization org-fake. Limit: {limit:,} "
        "enqueued tokens. Please try again once some in_progress batches have been completed."
    )
    return _line_error("token_limit_exceeded", None, message)


# -------------------------------------------------------------------- Anthropic: message batches


async def read_at_most(http: web.Request, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes (read to the end either way, so the
    client gets the answer instead of a broken pipe)."""
    chunks, size = [], 0
    async for chunk in http.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    return b"".join(chunks) if size <= limit else None


def message_batch_requests(raw: bytes, max_requests: int) -> Requests:
    """The requests of a ``POST /v1/messages/batches`` body, checked (``Refused`` otherwise)."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise _refuse("The request body is not valid JSON.", api="anthropic") from None
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise _refuse("requests: at least one request is required", api="anthropic")
    if len(requests) > max_requests:
        raise _refuse(f"requests: a Message Batch holds at most {max_requests:,} requests; this one has "
                      f"{len(requests):,}.", api="anthropic")  # fmt: skip
    seen: set[str] = set()
    checked: Requests = []
    for i, request in enumerate(requests):
        if not isinstance(request, dict):
            raise _refuse(f"requests.{i}: Input should be an object", api="anthropic")
        custom_id, params = request.get("custom_id"), request.get("params")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            raise _refuse(f"requests.{i}.custom_id: String should match pattern '{_CUSTOM_ID.pattern}'",
                          api="anthropic")  # fmt: skip
        if custom_id in seen:
            raise _refuse(f"requests.{i}.custom_id: {custom_id!r} is used by another request; custom_id must be "
                          "unique within a Message Batch.", api="anthropic")  # fmt: skip
        if not isinstance(params, dict):
            raise _refuse(f"requests.{i}.params: Field required", api="anthropic")
        if params.get("stream"):
            raise _refuse(f"requests.{i}.params.stream: streaming is not supported in a Message Batch",
                          api="anthropic")  # fmt: skip
        seen.add(custom_id)
        checked.append((custom_id, params))
    return checked


# -------------------------------------------------------------------- both: listing and batch objects


def page_of(batches: list[Batch], api: str, query: Mapping[str, str]) -> tuple[list[Batch], bool]:
    """The page of ``batches`` (newest first) a list call's ``query`` asks for, and whether more follow."""
    top = 100 if api == "openai" else 1000
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= top:
        raise _refuse(f"limit: must be between 1 and {top}", "limit", api=api)
    ids = [b.id for b in batches]
    after = query.get("after" if api == "openai" else "after_id")
    before = query.get("before_id") if api == "anthropic" else None
    if before is not None:
        end = ids.index(before) if before in ids else 0
        return batches[max(0, end - limit) : end], end - limit > 0
    start = ids.index(after) + 1 if after in ids else (len(ids) if after is not None else 0)
    return batches[start : start + limit], start + limit < len(ids)


def listing(api: str, data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    page: dict[str, Any] = {"data": data, "has_more": has_more, "first_id": first, "last_id": last}
    return {"object": "list", **page} if api == "openai" else page


def render(batch: Batch, origin: str) -> dict[str, Any]:
    """``batch`` as its vendor's API shows it; ``origin`` is the address the client used (results_url)."""
    if batch.api == "openai":
        return _render_openai(batch)
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
        "results_url": f"{origin}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


def _render_openai(batch: Batch) -> dict[str, Any]:
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


def _rfc3339(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")

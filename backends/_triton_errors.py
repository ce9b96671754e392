"""What Triton's failures mean: one exception met while talking to it -> ``gmai_client.errors``.

Triton reports the same condition differently across versions and protocols (queue full has come
back as HTTP 400, 503 and gRPC UNAVAILABLE), so message fragments decide before status codes.
"""

from __future__ import annotations

import asyncio
import re

from tritonclient.utils import InferenceServerException  # triton.py names the extra when it is missing

from gmai_client.backends._triton_contract import Endpoint
from gmai_client.errors import (
    AuthError,
    BackendError,
    BadRequest,
    ConnectionLost,
    EndpointUnreachable,
    ModelNotFound,
    Overloaded,
    RequestTimeout,
    ServerError,
)

try:
    import aiohttp
except ImportError:  # pragma: no cover - the gRPC half alone is usable
    aiohttp = None  # type: ignore[assignment]


class TritonUnreachable(EndpointUnreachable):
    """The server did not answer at start: wrong host/port/protocol, or it is not running. Stops
    the model before any item is sent. (Once started, a dropped connection is ``ConnectionLost``
    and retried: the server answered before.)"""


# Message fragments, lower-cased, that decide a kind whatever the status code says: Triton has
# answered queue-full as 400, 503 and UNAVAILABLE across versions and protocols.
_QUEUE_FULL = ("exceeds maximum queue size", "queue full", "queue is full", "maximum queue")
# Triton's words for a model it does not serve (any status: 400 over HTTP, various gRPC codes).
_UNKNOWN_MODEL = ("unknown model", "no available versions")
_CONNECTION = (
    "failed to connect",
    "connection refused",
    "connection reset",
    "socket closed",
    "broken pipe",
    "connection closed",
    "goaway",
)
_REQUEST_ID = re.compile(r"^\[request id: [^\]]*\]\s*")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")
_MAX_MESSAGE = 600


def _shorten(message: str) -> str:
    """A server message fit for a record: no request-id prefix, a Python traceback cut to its gist."""
    message = _REQUEST_ID.sub("", message.strip())
    if len(message) <= _MAX_MESSAGE and "Traceback" not in message:
        return message
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    # A model's traceback comes wrapped in Triton's; the innermost "SomeError: why" line says most.
    raised = [line for line in lines if _EXCEPTION_LINE.match(line) and "TritonModelException" not in line]
    gist = f"{lines[0]} ... {raised[-1]}" if raised and raised[-1] != lines[0] else lines[0]
    return gist if len(gist) <= _MAX_MESSAGE else gist[: _MAX_MESSAGE - 3] + "..."


def describe(exc: BaseException) -> str:
    if isinstance(exc, InferenceServerException):
        status = exc.status() or ""
        return _shorten(f"{exc.message() or exc}") + (f" [{status}]" if status else "")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientResponseError) and "status line" in str(exc).lower():
        # Binary gRPC frames where an HTTP status line should be: the port speaks gRPC.
        return "the answer is not HTTP (is this a gRPC port?)"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def unreachable(exc: BaseException, endpoint: Endpoint, model: str) -> BackendError:
    """What a failure to reach the server at start means, with what to check."""
    if isinstance(exc, BackendError):
        return exc
    other = "grpc" if endpoint.protocol == "http" else "http"
    return TritonUnreachable(
        f"cannot reach Triton at {endpoint.url} (for model {model!r}): {describe(exc)}. Is the server running, "
        f"and is {endpoint.port} its {endpoint.protocol} port? Triton listens on 8000 for "
        f"http and 8001 for grpc; protocol={other} or a {other}:// URL switches."
    )


def classify(exc: BaseException, where: str, timeout: float | None = None) -> BackendError:
    """Map one exception met while talking to Triton onto ``gmai_client.errors`` (see the module
    doc); ``timeout`` is the client's own limit, named when it is what ran out."""
    if isinstance(exc, BackendError):
        return exc
    message = f"{where}: {describe(exc)}"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return RequestTimeout(f"{where}: no answer within {timeout:g} s" if timeout else message)
    if not isinstance(exc, InferenceServerException):
        if aiohttp is not None and isinstance(exc, aiohttp.ClientResponseError):
            return ServerError(message, status=exc.status)  # a malformed HTTP answer
        if (aiohttp is not None and isinstance(exc, aiohttp.ClientError)) or isinstance(exc, OSError):
            return ConnectionLost(message)
        return ServerError(message)

    text = (exc.message() or str(exc)).lower()
    status = (exc.status() or "").removeprefix("StatusCode.")
    http_status = int(status) if status.isdigit() else None
    if any(fragment in text for fragment in _QUEUE_FULL):
        return Overloaded(message, status=http_status)
    if status in ("UNAVAILABLE", "CANCELLED") and any(fragment in text for fragment in _CONNECTION):
        return ConnectionLost(message)
    if any(fragment in text for fragment in _UNKNOWN_MODEL) or status == "NOT_FOUND" or http_status == 404:
        return ModelNotFound(message, status=http_status)
    by_grpc: dict[str, type[BackendError]] = {
        "UNAVAILABLE": Overloaded,
        "RESOURCE_EXHAUSTED": Overloaded,
        "DEADLINE_EXCEEDED": RequestTimeout,
        "CANCELLED": ConnectionLost,
        "INVALID_ARGUMENT": BadRequest,
        "OUT_OF_RANGE": BadRequest,
        "FAILED_PRECONDITION": BadRequest,
        "UNIMPLEMENTED": BadRequest,
        "ALREADY_EXISTS": BadRequest,
        "UNAUTHENTICATED": AuthError,
        "PERMISSION_DENIED": AuthError,
        "INTERNAL": ServerError,
        "UNKNOWN": ServerError,
        "ABORTED": ServerError,
        "DATA_LOSS": ServerError,
    }
    if status in by_grpc:
        if status == "RESOURCE_EXHAUSTED" and "larger than max" in text:
            return BadRequest(message)  # a message over gRPC's size limit will never fit
        return by_grpc[status](message)
    if http_status is not None:
        if http_status in (429, 503, 529):
            return Overloaded(message, status=http_status)
        if http_status in (408, 504):
            return RequestTimeout(message, status=http_status)
        if http_status in (401, 403):
            return AuthError(message, status=http_status)
        if 400 <= http_status < 500:
            return BadRequest(message, status=http_status)
        return ServerError(message, status=http_status)
    return ServerError(message)  # no status: the client could not read what came back

"""The faults the fake API can inject: which, when, and how each looks on the wire.

Owns the fault kinds (``FAULT_KINDS``, drawn by ``Faults`` with seeded probabilities; and
``FORCED_KINDS``, which only ``FakeAPI.inject`` forces), the seeded draw (it depends only on the
seed, the item's key and the attempt number, never on arrival order), the retry hints in every
dialect the vendors use (``Retry-After`` in seconds or as an HTTP date, ``retry-after-ms``, and the
rate-limit reset headers), broken bodies, a reset connection and a connection cut mid-body, and the
record of a client that retried before its hint expired (``Violation``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from types import MappingProxyType

from aiohttp import web

#: Fault kinds ``Faults`` can draw and ``inject`` can force, in the order draws are resolved.
FAULT_KINDS: tuple[str, ...] = (
    "429",  # Retry-After: seconds
    "429-date",  # Retry-After: HTTP date
    "429-ms",  # retry-after-ms
    "429-reset",  # x-ratelimit-reset-requests (OpenAI) / anthropic-ratelimit-requests-reset
    "500",
    "502",  # an HTML body, as a gateway in front of the API sends
    "503",
    "529",  # overloaded_error (Anthropic's overload status)
    "hang",  # no answer for Faults.hang_seconds (then a normal answer, if anyone still listens)
    "reset",  # TCP reset before any response byte
    "cut",  # headers promise the full body, the connection closes halfway through it
    "truncated",  # a complete HTTP response whose JSON body stops halfway
    "malformed",  # a complete HTTP response whose body is not JSON
    "empty",  # a well-formed body with no answer: OpenAI choices [], Anthropic content []
)
#: Outcomes only ``inject`` forces (tests choose them; random draws never do).
FORCED_KINDS: tuple[str, ...] = ("status", "quota", "refusal", "content_filter")

#: Kinds answered with a retry hint (in their own dialect), which arms the early-retry checker.
RETRY_HINT_KINDS = frozenset({"429", "429-date", "429-ms", "429-reset", "503", "529"})


@dataclass(frozen=True)
class Faults:
    """Seeded fault probabilities per kind (``FAULT_KINDS``); they must sum to at most 1."""

    rates: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    seed: int = 0
    retry_after: float = 1.0  # the hint sent with 429 / 503 / 529, in seconds
    hang_seconds: float = 30.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rates) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")
        if any(p < 0 for p in self.rates.values()) or sum(self.rates.values()) > 1 + 1e-9:
            raise ValueError("fault probabilities must be >= 0 and sum to at most 1")
        object.__setattr__(self, "rates", MappingProxyType(dict(self.rates)))

    def draw(self, key: str, attempt: int) -> str | None:
        """The fault for the ``attempt``-th request of item ``key`` (or None): same inputs, same fault."""
        if not self.rates:
            return None
        u = random.Random(f"{self.seed}:{key}:{attempt}").random()
        cumulative = 0.0
        for kind in FAULT_KINDS:
            cumulative += self.rates.get(kind, 0.0)
            if u < cumulative:
                return kind
        return None


@dataclass(frozen=True)
class Forced:
    """An explicit outcome for upcoming requests (see ``FakeAPI.inject``)."""

    kind: str
    status: int | None = None
    error_type: str | None = None
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Violation:
    """A request for ``key`` that arrived ``early_s`` seconds before its retry hint expired."""

    key: str
    hint_s: float
    early_s: float
    timestamp: float
    model: str = ""
    api: str = ""


def retry_hint(api: str, kind: str, seconds: float, now_wall: float) -> tuple[dict[str, str], float]:
    """Headers saying "retry after ``seconds``" in ``kind``'s dialect (``api``'s, for the reset headers),
    and the wait they actually express (an HTTP date has whole seconds, so it is rounded up)."""
    if kind == "429-date":
        deadline_wall = float(math.ceil(now_wall + seconds))
        return {"retry-after": formatdate(deadline_wall, usegmt=True)}, deadline_wall - now_wall
    if kind == "429-ms":
        ms = math.ceil(seconds * 1000)
        return {"retry-after-ms": str(ms)}, ms / 1000
    if kind == "429-reset":
        return _reset_headers(api, seconds, now_wall)
    value = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
    return {"retry-after": value}, float(value)


def _reset_headers(api: str, seconds: float, now_wall: float) -> tuple[dict[str, str], float]:
    """A rate-limit answer in the vendor's reset-header dialect: the request budget is exhausted
    (remaining 0) and resets in ``seconds``; the token budget is not and resets sooner, so a client
    that took the soonest reset instead of the exhausted one would retry too early."""
    if api == "openai":
        ms = math.ceil(seconds * 1000)
        value = f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
        return {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": value,
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149000",
            "x-ratelimit-reset-tokens": "6ms",
        }, ms / 1000

    def stamp(moment: float) -> str:
        return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    deadline = math.ceil((now_wall + seconds) * 1000) / 1000
    return {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": stamp(deadline),
        "anthropic-ratelimit-tokens-limit": "40000",
        "anthropic-ratelimit-tokens-remaining": "39000",
        "anthropic-ratelimit-tokens-reset": stamp(now_wall + 0.006),
    }, deadline - now_wall


def broken_body(kind: str, raw: bytes) -> bytes:
    """The bytes sent for a success ``raw`` under fault ``kind``: not JSON, half of it, or all of it."""
    if kind == "malformed":
        return b'{"id": "broken", "choices": [{"index": 0, "message": }]] <html>not json'
    if kind == "truncated":
        return raw[: len(raw) // 2]
    return raw


def reset_connection(http: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0) before any byte of the response."""
    transport = http.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def cut_response(http: web.Request, raw: bytes) -> web.StreamResponse:
    """Send the headers for all of ``raw`` and half its bytes, then drop the connection."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = len(raw)
    await response.prepare(http)
    await response.write(raw[: len(raw) // 2])
    await asyncio.sleep(0.01)  # let the half body leave before the transport goes
    reset_connection(http)
    return response

"""A fake model API on loopback that speaks OpenAI Chat Completions and Anthropic Messages.

Owns the test double every API-level test, reliability test and benchmark points the real vendor
SDKs at: ``POST /v1/chat/completions`` (OpenAI wire format) and ``POST /v1/messages`` (Anthropic),
images included. Nothing is mocked on the client side; the SDKs build real HTTP requests and parse
real responses, so what is tested is what runs against the vendors.

What it can do:

* answer from an oracle: ``item_key(text, image_bytes)`` -> answer text, with a fallback answer
  for unknown keys; or from any callable given the received request;
* record every request (model, roles, text, image hashes in order, parameters, headers without
  credentials, whether and how a key was sent) and count requests per item key;
* wait a fixed latency before answering (benchmarks);
* inject faults with seeded probabilities (``Faults``): 429 in four retry-hint dialects, 500, 502,
  503, 529, a hang, a connection reset, a connection cut mid-body, a truncated or malformed JSON
  body, an empty answer list. A draw depends only on (seed, item key, the model's attempt number
  for that key), never on arrival order, so a concurrent run meets the same faults every time;
* answer the next request(s) with an explicit outcome (``inject``): any status with the vendor's
  own error JSON, insufficient quota, a refusal, a content filter, or any fault kind;
* check that clients honour retry hints: a request for item K arriving before the hint the server
  gave the same model for K expired is recorded in ``violations``;
* limit requests per time window server-side (429 with Retry-After beyond it);
* require a specific API key (401 otherwise), read from ``Authorization: Bearer`` or ``x-api-key``;
* echo the key it was sent (``echo_key``) in every error message and every answer, as a hostile or
  careless server might: what redaction tests need.

It runs its own event loop in a background thread, so synchronous tests and clients on any other
event loop can use it alike. For out-of-process load (so the server does not share the client's
GIL): ``python -m gmai_client.testing.fake_api --port 8000 --latency 0.05 --fault 429=0.1``;
``GET /_fake/stats`` then returns the counters and violations as JSON.

Extensions add endpoints to the same server (``extensions``: objects with ``add_routes(app)``,
``stats()`` and ``reset()``): ``fake_batches`` adds OpenAI's and Anthropic's batch APIs, answering
each batched request with ``answer``, the live endpoints' own answer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import json
import math
import random
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path
from types import MappingProxyType
from typing import Any

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

_RETRY_HINT_KINDS = frozenset({"429", "429-date", "429-ms", "429-reset", "503", "529"})
# Headers never recorded: credentials, and anything else that looks like one.
_SECRET_HEADER_WORDS = ("authorization", "api-key", "token", "secret", "cookie")
_REFUSAL_TEXT = "I'm sorry, but I can't help with that."


def item_key(text: str, image_bytes: Iterable[bytes]) -> str:
    """The oracle's key for a request: sha256 over the text's sha256 and each image's, in order."""
    h = hashlib.sha256(b"gmai-fake-api/1\n")
    h.update(hashlib.sha256(text.encode("utf-8")).hexdigest().encode("ascii"))
    for data in image_bytes:
        h.update(b"\n" + hashlib.sha256(data).hexdigest().encode("ascii"))
    return h.hexdigest()


def request_key(request: Any) -> str:
    """``item_key`` of a ``gmai_client.types.Request`` as it would be sent (images unresized)."""
    return item_key(request.text, [image.data for image in request.images])


def oracle(items: Iterable[Any], *, template: str | None = None, params: Any = None) -> dict[str, str]:
    """Correct answers for ``items`` (``gmai_client.types.Item``), keyed as the server will see
    their requests: ``FakeAPI(answers=oracle(items))`` answers every one of them right."""
    from gmai_client.prompt import build_request
    from gmai_client.types import SamplingParams

    answers = {}
    for item in items:
        request = build_request(item, template=template, params=params or SamplingParams())
        letters = ", ".join(item.answer or ("A",))
        answers[request_key(request)] = f"The answer is ({letters})."
    return answers


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
class ReceivedRequest:
    """One request as the server saw it (credentials never kept)."""

    api: str  # "openai" or "anthropic"
    model: str
    roles: tuple[str, ...]  # every message's role, in order ("system" included for OpenAI)
    system: str
    text: str  # the text parts of the last user message, joined by newlines
    content_types: tuple[str, ...]  # that message's parts in order, e.g. ("image", "image", "text")
    image_sha256: tuple[str, ...]  # decoded image bytes, in order
    image_mimes: tuple[str, ...]
    image_details: tuple[str | None, ...]  # OpenAI's "detail" per image (None for Anthropic)
    key: str  # item_key(text, images)
    attempt: int  # 1 for this model's first request with this key, 2 for its next, ...
    params: Mapping[str, Any]  # every other body field: max_tokens, temperature, seed, ...
    headers: Mapping[str, str]  # lower-cased names, credentials removed
    auth_schemes: tuple[str, ...]  # "bearer" and/or "x-api-key"; () when no key was sent
    timestamp: float  # time.time() on arrival
    outcome: str = "ok"  # "ok", a fault kind, "status:<code>", "quota", "refusal", "rate_limit", ...

    @property
    def max_tokens(self) -> int | None:
        value = self.params.get("max_tokens", self.params.get("max_completion_tokens"))
        return None if value is None else int(value)


@dataclass(frozen=True)
class Violation:
    """A request for ``key`` that arrived ``early_s`` seconds before its retry hint expired."""

    key: str
    hint_s: float
    early_s: float
    timestamp: float
    model: str = ""
    api: str = ""


class _BadInput(Exception):
    """The request body is not what the vendor API accepts: answered with a 400."""


Answers = Mapping[str, str] | Callable[[ReceivedRequest], str]


class FakeAPI:
    """The fake server. ``with FakeAPI(answers={...}) as api:`` then point SDKs at ``api.base_url_*``.

    Every constructor argument is also a public attribute that may be changed while it runs.
    """

    def __init__(
        self,
        *,
        answers: Answers | None = None,
        fallback: str = "A",
        latency: float = 0.0,
        faults: Faults | None = None,
        require_key: str | None = None,
        echo_key: bool = False,
        models: Iterable[str] | None = None,
        rate_limit: int | None = None,
        rate_window: float = 60.0,
        tolerance: float = 0.05,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.answers: Answers = answers if answers is not None else {}
        self.fallback = fallback
        self.latency = latency
        self.faults = faults or Faults()
        self.require_key = require_key
        self.echo_key = echo_key  # put the presented key in error messages and answers
        self.models = frozenset(models) if models is not None else None  # None: every model exists
        self.rate_limit = rate_limit  # accepted requests per rate_window; None: unlimited
        self.rate_window = rate_window
        self.tolerance = tolerance  # seconds of clock slack before an early retry is a violation
        self.host = host
        self.port = port
        self._lock = threading.RLock()  # re-entered: _decide holds it while arming a hint
        self._requests: list[ReceivedRequest] = []
        self._counts: Counter[str] = Counter()  # per item key, all models together
        # Attempts and retry hints are per (api, model, key): two models evaluated side by side
        # through one server are two clients, and neither's pace or faults may depend on the other's.
        self._attempts: Counter[tuple[str, str, str]] = Counter()
        self._violations: list[Violation] = []
        self._forced: deque[tuple[str | None, Forced]] = deque()
        self._not_before: dict[tuple[str, str, str], tuple[float, float]] = {}  # -> (deadline, hint)
        self._accepted: deque[float] = deque()  # monotonic times of requests inside the rate window
        self._sequence = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        # Added before start(): their routes are mounted on the app start() builds (fake_batches).
        self.extensions: list[Any] = []

    # ---------------------------------------------------------------- life cycle

    def start(self) -> FakeAPI:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:  # reported to start()'s caller, not lost in the thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._astop())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name=f"FakeAPI:{self.port}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _astart(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle_openai)
        app.router.add_post("/v1/messages", self._handle_anthropic)
        app.router.add_get("/_fake/stats", self._handle_stats)
        app.router.add_post("/_fake/reset", self._handle_reset)
        for extension in self.extensions:
            extension.add_routes(app)
        # handler_cancellation: a client that gave up (timeout) cancels its hanging handler.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _astop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # wakes hangs and latencies so that shutdown does not wait them out
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url_openai(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def base_url_anthropic(self) -> str:
        return self.base_url  # the Anthropic SDK appends /v1/messages itself

    # ---------------------------------------------------------------- what tests read and set

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def count(self, key: str) -> int:
        with self._lock:
            return self._counts[key]

    @property
    def violations(self) -> list[Violation]:
        with self._lock:
            return list(self._violations)

    def requests_for(self, key: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.key == key]

    def inject(
        self,
        kind: str,
        *,
        times: int = 1,
        key: str | None = None,
        status: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests (for item ``key`` only, if given) with ``kind``.

        ``kind`` is a fault kind, ``"status"`` (give ``status``; the body is the vendor's error JSON,
        with ``error_type`` / ``code`` / ``message`` overriding its defaults), ``"quota"`` (OpenAI:
        429 insufficient_quota; Anthropic: 400 "credit balance is too low"), ``"refusal"`` or
        ``"content_filter"``. ``retry_after`` adds a Retry-After header (and arms the checker).
        Forced outcomes are used before random faults, oldest first.
        """
        if kind not in FAULT_KINDS and kind not in FORCED_KINDS:
            raise ValueError(f"unknown kind {kind!r}; known: {', '.join(FAULT_KINDS + FORCED_KINDS)}")
        if kind == "status" and status is None:
            raise ValueError("inject('status') needs status=")
        forced = Forced(kind, status, error_type, code, message, retry_after, MappingProxyType(dict(headers or {})))
        with self._lock:
            self._forced.extend((key, forced) for _ in range(times))

    def reset(self) -> None:
        """Forget requests, counts, violations, pending injections, retry hints and the rate window."""
        with self._lock:
            self._requests.clear()
            self._counts.clear()
            self._attempts.clear()
            self._violations.clear()
            self._forced.clear()
            self._not_before.clear()
            self._accepted.clear()
        for extension in self.extensions:
            extension.reset()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            outcomes = Counter(r.outcome for r in self._requests)
            stats = {
                "requests": len(self._requests),
                "keys": len(self._counts),
                "max_per_key": max(self._counts.values(), default=0),
                "outcomes": dict(outcomes),
                "violations": [asdict(v) for v in self._violations],
            }
        for extension in self.extensions:
            stats.update(extension.stats())
        return stats

    def answer(self, api: str, body: Any) -> tuple[str, int, dict[str, Any]]:
        """``(item key, HTTP status, JSON body)``: what the live endpoint answers to ``body`` when no
        fault, key check or rate limit intervenes: 200 with the oracle's answer and usage, 400 for a
        body it refuses (key ""), 404 for a model not in ``models``. Not recorded in ``requests``."""
        try:
            if not isinstance(body, dict):
                raise _BadInput("the request body must be a JSON object")
            parsed = _parse_openai(body) if api == "openai" else _parse_anthropic(body)
        except (_BadInput, AttributeError, TypeError) as exc:
            return "", 400, json.loads(_vendor_error(api, 400, message=str(exc) or "bad request body").text)
        key = item_key(parsed["text"], parsed.pop("image_bytes"))
        received = ReceivedRequest(
            api=api, key=key, attempt=0, headers=MappingProxyType({}), auth_schemes=(),
            timestamp=time.time(), outcome="batch", **parsed,
        )  # fmt: skip
        if self.models is not None and received.model not in self.models:
            return key, 404, json.loads(_vendor_error(api, 404, model=received.model).text)
        return key, 200, self._success_body(received, "ok")

    # ---------------------------------------------------------------- request handling

    async def _handle_openai(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "openai")

    async def _handle_anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "anthropic")

    async def _handle_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _handle_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"ok": True})

    async def _handle(self, http: web.Request, api: str) -> web.StreamResponse:
        arrived_wall, arrived = time.time(), time.monotonic()
        try:
            body = await http.json(loads=json.loads)
            if not isinstance(body, dict):
                raise _BadInput("the request body must be a JSON object")
            parsed = _parse_openai(body) if api == "openai" else _parse_anthropic(body)
        except (_BadInput, json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError) as exc:
            return _vendor_error(api, 400, message=str(exc) or "could not parse the request body")

        schemes, presented = _credentials(http.headers)
        headers = {k.lower(): v for k, v in http.headers.items() if not _is_secret_header(k)}
        key = item_key(parsed["text"], parsed.pop("image_bytes"))
        client = (api, parsed["model"], key)
        with self._lock:
            self._counts[key] += 1
            self._attempts[client] += 1
            attempt = self._attempts[client]
            self._check_retry_hint(client, arrived, arrived_wall)
            forced = self._take_forced(key)
        received = ReceivedRequest(
            api=api, key=key, attempt=attempt, headers=MappingProxyType(headers), auth_schemes=schemes,
            timestamp=arrived_wall, **parsed,
        )  # fmt: skip

        outcome, extra_headers = self._decide(received, forced, presented, arrived)
        received = replace(received, outcome=outcome)
        with self._lock:
            self._requests.append(received)

        if self.latency > 0:
            await self._sleep(self.latency)
        echo = presented[0] if self.echo_key and presented else ""
        return await self._respond(http, received, forced, extra_headers, echo)

    def _check_retry_hint(self, client: tuple[str, str, str], now: float, now_wall: float) -> None:
        pending = self._not_before.get(client)
        if pending is None:
            return
        deadline, hint = pending
        api, model, key = client
        if now < deadline - self.tolerance:
            self._violations.append(Violation(key, hint, deadline - now, now_wall, model=model, api=api))
        else:
            del self._not_before[client]

    def _take_forced(self, key: str) -> Forced | None:
        for i, (target, forced) in enumerate(self._forced):
            if target is None or target == key:
                del self._forced[i]
                return forced
        return None

    def _decide(
        self, received: ReceivedRequest, forced: Forced | None, presented: tuple[str, ...], now: float
    ) -> tuple[str, dict[str, str]]:
        """The outcome's name and any retry-hint headers (arming the Retry-After checker)."""
        if forced is not None:
            outcome = f"status:{forced.status}" if forced.kind == "status" else forced.kind
            if forced.kind in _RETRY_HINT_KINDS:
                return outcome, self._hint_headers(received, forced.kind, forced.retry_after)
            if forced.retry_after is not None:
                return outcome, self._hint_headers(received, "429", forced.retry_after)
            return outcome, {}
        if self.require_key is not None and self.require_key not in presented:
            return "auth", {}
        if self.models is not None and received.model not in self.models:
            return "model_not_found", {}
        if self.rate_limit is not None:
            with self._lock:
                while self._accepted and self._accepted[0] <= now - self.rate_window:
                    self._accepted.popleft()
                if len(self._accepted) >= self.rate_limit:
                    wait = self._accepted[0] + self.rate_window - now
                    return "rate_limit", self._hint_headers(received, "429", float(math.ceil(wait)))
                self._accepted.append(now)
        fault = self.faults.draw(received.key, received.attempt)
        if fault is None:
            return "ok", {}
        if fault in _RETRY_HINT_KINDS:
            return fault, self._hint_headers(received, fault, None)
        return fault, {}

    def _hint_headers(self, received: ReceivedRequest, kind: str, seconds: float | None) -> dict[str, str]:
        """Headers saying "retry after ``seconds``" in ``kind``'s dialect; arms the checker with the
        wait the headers actually express (an HTTP date has whole seconds, so it is rounded up)."""
        seconds = self.faults.retry_after if seconds is None else seconds
        now_wall, now = time.time(), time.monotonic()
        if kind == "429-date":
            deadline_wall = float(math.ceil(now_wall + seconds))
            headers = {"retry-after": formatdate(deadline_wall, usegmt=True)}
            expressed = deadline_wall - now_wall
        elif kind == "429-ms":
            ms = math.ceil(seconds * 1000)
            headers = {"retry-after-ms": str(ms)}
            expressed = ms / 1000
        elif kind == "429-reset":
            headers, expressed = _reset_headers(received.api, seconds, now_wall)
        else:
            value = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
            headers = {"retry-after": value}
            expressed = float(value)
        with self._lock:
            self._not_before[(received.api, received.model, received.key)] = (now + expressed, expressed)
        return headers

    async def _sleep(self, seconds: float) -> None:
        # A sleep that ends early when the server stops, so stop() never waits out a hang.
        assert self._stopping is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _answer(self, received: ReceivedRequest) -> str:
        if callable(self.answers):
            return str(self.answers(received))
        return self.answers.get(received.key, self.fallback)

    async def _respond(
        self, http: web.Request, received: ReceivedRequest, forced: Forced | None, hint: dict[str, str], echo: str = ""
    ) -> web.StreamResponse:
        api, outcome = received.api, received.outcome
        # Every error answer below names the key it was sent, when asked to (``echo_key``).
        error_response = functools.partial(_vendor_error, echo=echo)
        headers = {**hint, **(forced.headers if forced else {})}
        kind = forced.kind if forced else outcome

        if kind == "hang":
            await self._sleep(self.faults.hang_seconds)
            kind = "ok"
        if kind == "reset":
            _reset_connection(http)
            return web.Response(status=500)  # never sent: the transport is gone
        if kind == "status":
            assert forced is not None and forced.status is not None
            return error_response(
                api, forced.status, error_type=forced.error_type, code=forced.code,
                message=forced.message, model=received.model, headers=headers,
            )  # fmt: skip
        if kind == "quota":
            if api == "openai":
                return error_response(api, 429, error_type="insufficient_quota", code="insufficient_quota",
                                       message=forced.message if forced else None, headers=headers)  # fmt: skip
            message = (
                "Your credit balance is too low to access the Anthropic API. "
                "Please go to Plans & Billing to upgrade or purchase credits."
            )
            return error_response(api, 400, message=message, headers=headers)
        if kind == "auth":
            return error_response(api, 401, headers=headers)
        if kind == "model_not_found":
            return error_response(api, 404, model=received.model, headers=headers)
        if kind in ("rate_limit", "429", "429-date", "429-ms", "429-reset"):
            return error_response(api, 429, model=received.model, headers=headers,
                                   message=forced.message if forced else None)  # fmt: skip
        if kind in ("500", "502", "503", "529"):
            return error_response(api, int(kind), headers=headers, message=forced.message if forced else None)

        body = self._success_body(received, kind, echo)
        if kind == "malformed":
            raw = b'{"id": "broken", "choices": [{"index": 0, "message": }]] <html>not json'
        else:
            raw = json.dumps(body).encode("utf-8")
        if kind == "truncated":
            raw = raw[: len(raw) // 2]
        if kind == "cut":
            return await _cut_response(http, raw)
        return web.Response(body=raw, content_type="application/json", headers=headers)

    def _success_body(self, received: ReceivedRequest, kind: str, echo: str = "") -> dict[str, Any]:
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        answer = _REFUSAL_TEXT if kind == "refusal" else self._answer(received)
        if echo:
            answer = f"[your key is {echo}] {answer}"
        prompt_tokens = _tokens(received.text) + _tokens(received.system) + 85 * len(received.image_sha256)
        stop = "stop"
        limit = received.max_tokens
        if limit is not None and _tokens(answer) > limit:
            answer, stop = answer[: max(limit, 1) * 4], "length"
        completion_tokens = _tokens(answer)
        if received.api == "openai":
            message: dict[str, Any] = {"role": "assistant", "content": answer, "refusal": None}
            if kind == "refusal":
                message = {"role": "assistant", "content": None, "refusal": answer}
            elif kind == "content_filter":
                message, stop = {"role": "assistant", "content": None, "refusal": None}, "content_filter"
            choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": stop}]
            return {
                "id": f"chatcmpl-fake{sequence:012d}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": received.model,
                "choices": [] if kind == "empty" else choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "system_fingerprint": "fp_fake",
            }
        content: list[dict[str, Any]] = [{"type": "text", "text": answer}]
        stop_reason = {"stop": "end_turn", "length": "max_tokens"}[stop]
        if kind in ("refusal", "content_filter"):  # Anthropic has one way to decline: a refusal
            content, stop_reason = [], "refusal"
        return {
            "id": f"msg_fake{sequence:016d}",
            "type": "message",
            "role": "assistant",
            "model": received.model,
            "content": [] if kind == "empty" else content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
        }


# -------------------------------------------------------------------- wire formats


def _tokens(text: str) -> int:
    # Roughly four characters a token: good enough for usage numbers that only need to be plausible.
    return len(text) // 4 + 1 if text else 0


def _decode_b64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _BadInput(f"Invalid image: {what} is not valid base64 image data.") from None


def _parse_openai(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadInput("'messages' must be a non-empty array")
    roles, system_parts = [], []
    user_content: Any = None
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise _BadInput("each message needs a 'role'")
        roles.append(str(message["role"]))
        if message["role"] in ("system", "developer"):
            content = message.get("content")
            system_parts.append(content if isinstance(content, str) else _joined_text(content))
        elif message["role"] == "user":
            user_content = message.get("content")
    if user_content is None:
        raise _BadInput("no user message")
    parts = [{"type": "text", "text": user_content}] if isinstance(user_content, str) else user_content
    if not isinstance(parts, list):
        raise _BadInput("message content must be a string or an array of parts")
    texts, types, images, mimes, details = [], [], [], [], []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            types.append("text")
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            types.append("image")
            url = str((part.get("image_url") or {}).get("url", ""))
            details.append((part.get("image_url") or {}).get("detail"))
            if not url.startswith("data:") or ";base64," not in url:
                raise _BadInput("Invalid image: only base64 data URLs are served by this fake.")
            header, _, data = url.partition(";base64,")
            mimes.append(header.removeprefix("data:"))
            images.append(_decode_b64(data, "image_url"))
        else:
            raise _BadInput(f"unsupported content part type {kind!r}")
    params = {k: v for k, v in body.items() if k not in ("messages", "model")}
    return {
        "model": str(body.get("model", "")),
        "roles": tuple(roles),
        "system": "\n".join(system_parts),
        "text": "\n".join(texts),
        "content_types": tuple(types),
        "image_bytes": images,
        "image_sha256": tuple(hashlib.sha256(b).hexdigest() for b in images),
        "image_mimes": tuple(mimes),
        "image_details": tuple(details),
        "params": MappingProxyType(params),
    }


def _parse_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadInput("messages: at least one message is required")
    if "max_tokens" not in body:
        raise _BadInput("max_tokens: Field required")
    roles = []
    user_content: Any = None
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _BadInput("messages: roles must be 'user' or 'assistant'")
        roles.append(message["role"])
        if message["role"] == "user":
            user_content = message.get("content")
    if user_content is None:
        raise _BadInput("messages: the first message must use the 'user' role")
    blocks = [{"type": "text", "text": user_content}] if isinstance(user_content, str) else user_content
    texts, types, images, mimes = [], [], [], []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            types.append("text")
            texts.append(str(block.get("text", "")))
        elif kind == "image":
            types.append("image")
            source = block.get("source") or {}
            if source.get("type") != "base64":
                raise _BadInput("Invalid image: only base64 image sources are served by this fake.")
            mimes.append(str(source.get("media_type", "")))
            images.append(_decode_b64(str(source.get("data", "")), "image.source.data"))
        else:
            raise _BadInput(f"messages.0.content: unsupported block type {kind!r}")
    system = body.get("system", "")
    params = {k: v for k, v in body.items() if k not in ("messages", "model", "system")}
    return {
        "model": str(body.get("model", "")),
        "roles": tuple(roles),
        "system": system if isinstance(system, str) else _joined_text(system),
        "text": "\n".join(texts),
        "content_types": tuple(types),
        "image_bytes": images,
        "image_sha256": tuple(hashlib.sha256(b).hexdigest() for b in images),
        "image_mimes": tuple(mimes),
        "image_details": tuple(None for _ in images),
        "params": MappingProxyType(params),
    }


def _joined_text(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict) and p.get("type") == "text")


def _is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER_WORDS)


def _credentials(headers: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(schemes present, keys presented); the keys are compared, never stored."""
    schemes, keys = [], []
    authorization = headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        schemes.append("bearer")
        keys.append(authorization[7:].strip())
    if "x-api-key" in headers:
        schemes.append("x-api-key")
        keys.append(headers["x-api-key"].strip())
    return tuple(schemes), tuple(keys)


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


_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key",
          "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model `{model}` does not exist or you do not have access to it."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
          "Limit 60, Used 60, Requested 1. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
    529: ("overloaded_error", None, "Overloaded"),
}  # fmt: skip
_OPENAI_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information "
    "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    422: ("invalid_request_error", "Unprocessable request."),
    429: ("rate_limit_error", "Number of requests has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}
_GATEWAY_HTML = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)


def _vendor_error(
    api: str,
    status: int,
    *,
    error_type: str | None = None,
    code: str | None = None,
    message: str | None = None,
    model: str = "",
    headers: Mapping[str, str] | None = None,
    echo: str = "",
) -> web.Response:
    """The vendor's own error JSON for ``status`` (a gateway's HTML page for 502); ``echo``, when
    given, is added to the message as the key the request presented."""
    headers = dict(headers or {})
    if status == 502 and error_type is None and message is None:
        text = _GATEWAY_HTML.format(status=502) + (f"<!-- key {echo} -->" if echo else "")
        return web.Response(status=502, text=text, content_type="text/html", headers=headers)
    if api == "openai":
        default_type, default_code, default_message = _OPENAI_ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}.")
        )
        if error_type == "insufficient_quota" or code == "insufficient_quota":
            default_message = _OPENAI_QUOTA_MESSAGE
        error = {
            "message": (message or default_message.format(model=model)) + (f" (key sent: {echo})" if echo else ""),
            "type": error_type or default_type,
            "param": None,
            "code": code if code is not None else default_code,
        }
        headers.setdefault("x-request-id", f"req_fake{random.getrandbits(48):012x}")
        return web.json_response({"error": error}, status=status, headers=headers)
    default_type, default_message = _ANTHROPIC_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}.")
    )
    request_id = f"req_fake{random.getrandbits(48):012x}"
    anthropic_error: dict[str, Any] = {
        "type": error_type or default_type,
        "message": (message or default_message.format(model=model)) + (f" (key sent: {echo})" if echo else ""),
    }
    if code is not None:
        anthropic_error["details"] = {"error_code": code}
    headers.setdefault("request-id", request_id)
    return web.json_response(
        {"type": "error", "error": anthropic_error, "request_id": request_id}, status=status, headers=headers
    )


def _reset_connection(http: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0) before any byte of the response."""
    transport = http.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _cut_response(http: web.Request, raw: bytes) -> web.StreamResponse:
    """Send the headers for all of ``raw`` and half its bytes, then drop the connection."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = len(raw)
    await response.prepare(http)
    await response.write(raw[: len(raw) // 2])
    await asyncio.sleep(0.01)  # let the half body leave before the transport goes
    _reset_connection(http)
    return response


# -------------------------------------------------------------------- out-of-process use


def build_parser(description: str = "A fake OpenAI/Anthropic API for load and fault tests.") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=P", help="e.g. 429=0.1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per --rate-window")
    parser.add_argument("--rate-window", type=float, default=60.0)
    parser.add_argument("--answers", default=None, help="JSON file: item_key -> answer text")
    parser.add_argument("--fallback", default="A")
    parser.add_argument("--echo-key", action="store_true", help="echo the key sent in every error and answer")
    return parser


def api_from_args(args: argparse.Namespace) -> FakeAPI:
    rates = {kind: float(p) for kind, _, p in (f.partition("=") for f in args.fault)}
    answers = json.loads(Path(args.answers).read_text(encoding="utf-8")) if args.answers else {}
    return FakeAPI(
        answers=answers, fallback=args.fallback, latency=args.latency,
        faults=Faults(rates, seed=args.seed, retry_after=args.retry_after),
        rate_limit=args.rate_limit, rate_window=args.rate_window, host=args.host, port=args.port,
        echo_key=args.echo_key,
    )  # fmt: skip


def serve(api: FakeAPI) -> None:
    """Run ``api`` until the process is interrupted or killed, printing its address first."""
    with api:
        print(f"fake API on {api.base_url} (OpenAI: {api.base_url_openai})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


def main(argv: list[str] | None = None) -> None:
    serve(api_from_args(build_parser().parse_args(argv)))


if __name__ == "__main__":
    main()

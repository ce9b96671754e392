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

The pieces are modules of their own: the wire formats (``fake_wire``), the vendors' error answers
(``fake_errors``), the faults (``fake_faults``) and the background-thread server (``fake_loopback``);
their public names are importable from here.

Extensions add endpoints to the same server (``extensions``: objects with ``add_routes(app)``,
``stats()`` and ``reset()``): ``fake_batches`` adds OpenAI's and Anthropic's batch APIs, answering
each batched request with ``answer``, the live endpoints' own answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import web

from gmai_client.testing.fake_errors import outcome_error, vendor_error
from gmai_client.testing.fake_faults import (
    FAULT_KINDS,
    FORCED_KINDS,
    RETRY_HINT_KINDS,
    Faults,
    Forced,
    Violation,
    broken_body,
    cut_response,
    reset_connection,
    retry_hint,
)
from gmai_client.testing.fake_loopback import LoopbackServer
from gmai_client.testing.fake_wire import (
    BadInput,
    Credentials,
    ReceivedRequest,
    credentials,
    item_key,
    oracle,
    parse_request,
    recordable_headers,
    request_key,
    success_body,
)

__all__ = [
    "FAULT_KINDS",
    "FORCED_KINDS",
    "Answers",
    "FakeAPI",
    "Faults",
    "Forced",
    "ReceivedRequest",
    "Violation",
    "api_from_args",
    "build_parser",
    "item_key",
    "main",
    "oracle",
    "request_key",
    "serve",
]

Answers = Mapping[str, str] | Callable[[ReceivedRequest], str]
_API_PATHS = (("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic"))


class FakeAPI(LoopbackServer):
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
        blind: bool = False,
    ):
        super().__init__(host=host, port=port)
        # Blind: read each body but parse none of it, answer the fallback (load benchmarks: a
        # server that JSON-parses 2 MB bodies would be the bottleneck it is meant to measure).
        self.blind = blind
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
        # Added before start(): their routes are mounted on the app start() builds (fake_batches).
        self.extensions: list[Any] = []
        # How thinking comes back (``fake_reasoning``): an open model's in this message field (a
        # server's reasoning parser) instead of <think> in content; Claude's with a redacted block.
        self.reasoning_field: str | None = None
        self.redact_thinking = False

    def _routes(self, app: web.Application) -> None:
        for path, api in _API_PATHS:
            app.router.add_post(path, self._handler(api))
        app.router.add_get("/_fake/stats", self._handle_stats)
        app.router.add_post("/_fake/reset", self._handle_reset)
        for extension in self.extensions:
            extension.add_routes(app)

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
            received = replace(parse_request(api, body), outcome="batch")
        except (BadInput, AttributeError, TypeError) as exc:
            return "", 400, json.loads(vendor_error(api, 400, message=str(exc) or "bad request body").text)
        if self.models is not None and received.model not in self.models:
            return received.key, 404, json.loads(vendor_error(api, 404, model=received.model).text)
        return received.key, 200, self._success_body(received, "ok")

    # ---------------------------------------------------------------- request handling

    def _handler(self, api: str) -> Callable[[web.Request], Any]:
        async def handle(http: web.Request) -> web.StreamResponse:
            return await self._handle(http, api)

        return handle

    async def _handle_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _handle_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"ok": True})

    async def _handle(self, http: web.Request, api: str) -> web.StreamResponse:
        arrived_wall, arrived = time.time(), time.monotonic()
        if self.blind:
            return await self._blind(http, api)
        try:
            body = await http.json(loads=json.loads)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return vendor_error(api, 400, message=str(exc) or "could not parse the request body")
        presented = credentials(http.headers, http.query)
        return await self.serve_body(http, api, body, presented, arrived=(arrived, arrived_wall))

    async def serve_body(
        self, http: web.Request, api: str, body: Any, presented_credentials: Credentials, *, arrived: Any = None
    ) -> web.StreamResponse:
        """Answer ``body`` (read already) as the ``api`` endpoint does, ``presented_credentials`` as
        ``credentials`` reads them, arrived at ``(monotonic, wall)`` time: what extensions speaking
        other wire formats (``fake_clouds``) call once their own checks passed."""
        arrived, arrived_wall = arrived or (time.monotonic(), time.time())
        try:
            received = parse_request(api, body)
        except (BadInput, AttributeError, TypeError) as exc:
            return vendor_error(api, 400, message=str(exc) or "could not parse the request body")

        schemes, presented = presented_credentials
        key = received.key
        client = (api, received.model, key)
        with self._lock:
            self._counts[key] += 1
            self._attempts[client] += 1
            attempt = self._attempts[client]
            self._check_retry_hint(client, arrived, arrived_wall)
            forced = self._take_forced(key)
        received = replace(
            received, attempt=attempt, headers=MappingProxyType(recordable_headers(http.headers)),
            auth_schemes=schemes, timestamp=arrived_wall,
        )  # fmt: skip

        outcome, extra_headers = self._decide(received, forced, presented, arrived)
        received = replace(received, outcome=outcome)
        with self._lock:
            self._requests.append(received)

        if self.latency > 0:
            await self._sleep(self.latency)
        echo = presented[0] if self.echo_key and presented else ""
        return await self._respond(http, received, forced, extra_headers, echo)

    async def _blind(self, http: web.Request, api: str) -> web.StreamResponse:
        size = len(await http.read())
        with self._lock:
            self._sequence += 1
            self._counts[f"blind:{size}"] += 1
        if self.latency > 0:
            await self._sleep(self.latency)
        usage = {"prompt_tokens": size // 4, "completion_tokens": 1, "total_tokens": size // 4 + 1}
        if api == "openai":
            message = {"role": "assistant", "content": self.fallback}
            body = {"id": f"chatcmpl-{self._sequence}", "object": "chat.completion", "created": 0, "model": "blind",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": message}], "usage": usage}  # fmt: skip
        else:
            body = {"id": f"msg_{self._sequence}", "type": "message", "role": "assistant", "model": "blind",
                    "content": [{"type": "text", "text": self.fallback}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": size // 4, "output_tokens": 1}}  # fmt: skip
        return web.json_response(body)

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
            if forced.kind in RETRY_HINT_KINDS:
                return outcome, self._hint_headers(received, forced.kind, forced.retry_after)
            if forced.retry_after is not None:
                return outcome, self._hint_headers(received, "429", forced.retry_after)
            return outcome, {}
        if self.require_key is not None and self.require_key not in presented:
            return "auth", {}
        if self.models is not None and received.model not in self.models:
            return "model_not_found", {}
        wait = self._rate_limited(now)
        if wait is not None:
            return "rate_limit", self._hint_headers(received, "429", float(math.ceil(wait)))
        fault = self.faults.draw(received.key, received.attempt)
        if fault is None:
            return "ok", {}
        if fault in RETRY_HINT_KINDS:
            return fault, self._hint_headers(received, fault, None)
        return fault, {}

    def _rate_limited(self, now: float) -> float | None:
        """Seconds until the rate window has room again, or None when it has room now (and this
        request, arrived at monotonic ``now``, takes it)."""
        if self.rate_limit is None:
            return None
        with self._lock:
            while self._accepted and self._accepted[0] <= now - self.rate_window:
                self._accepted.popleft()
            if len(self._accepted) >= self.rate_limit:
                return self._accepted[0] + self.rate_window - now
            self._accepted.append(now)
        return None

    def _hint_headers(self, received: ReceivedRequest, kind: str, seconds: float | None) -> dict[str, str]:
        """Headers saying "retry after ``seconds``" (default ``faults.retry_after``) in ``kind``'s
        dialect; arms the checker with the wait the headers actually express."""
        seconds = self.faults.retry_after if seconds is None else seconds
        now_wall, now = time.time(), time.monotonic()
        headers, expressed = retry_hint(received.api, kind, seconds, now_wall)
        with self._lock:
            self._not_before[(received.api, received.model, received.key)] = (now + expressed, expressed)
        return headers

    def _answer(self, received: ReceivedRequest) -> str:
        if callable(self.answers):
            return str(self.answers(received))
        return self.answers.get(received.key, self.fallback)

    async def _respond(
        self, http: web.Request, received: ReceivedRequest, forced: Forced | None, hint: dict[str, str], echo: str = ""
    ) -> web.StreamResponse:
        headers = {**hint, **(forced.headers if forced else {})}
        kind = forced.kind if forced else received.outcome
        if kind == "hang":
            await self._sleep(self.faults.hang_seconds)
            kind = "ok"
        if kind == "reset":
            reset_connection(http)
            return web.Response(status=500)  # never sent: the transport is gone
        # Every error answer names the key it was sent, when asked to (``echo_key``).
        error = outcome_error(kind, received.api, received.model, forced, headers, echo)
        if error is not None:
            return error
        raw = broken_body(kind, json.dumps(self._success_body(received, kind, echo)).encode("utf-8"))
        if kind == "cut":
            return await cut_response(http, raw)
        return web.Response(body=raw, content_type="application/json", headers=headers)

    def _success_body(self, received: ReceivedRequest, kind: str, echo: str = "") -> dict[str, Any]:
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        answer = "" if kind == "refusal" else self._answer(received)  # a refusal says its own text
        return success_body(
            received, kind, answer, sequence, echo,
            reasoning_field=self.reasoning_field, redact_thinking=self.redact_thinking,
        )  # fmt: skip


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
    parser.add_argument("--blind", action="store_true", help="parse no request body, answer --fallback (load tests)")
    return parser


def api_from_args(args: argparse.Namespace) -> FakeAPI:
    rates = {kind: float(p) for kind, _, p in (f.partition("=") for f in args.fault)}
    answers = json.loads(Path(args.answers).read_text(encoding="utf-8")) if args.answers else {}
    return FakeAPI(
        answers=answers, fallback=args.fallback, latency=args.latency,
        faults=Faults(rates, seed=args.seed, retry_after=args.retry_after),
        rate_limit=args.rate_limit, rate_window=args.rate_window, host=args.host, port=args.port,
        echo_key=args.echo_key, blind=args.blind,
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

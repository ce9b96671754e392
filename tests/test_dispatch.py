"""Examples of ``dispatch.Dispatcher``: what one request goes through before and after the backend.

The backend is the scripted one (answers or errors per request, counted), made cacheable where the
cache is what is shown. Limiters, concurrency caps, budgets and caches are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import threading
from pathlib import Path

import pytest

from gmai_client.backends.scripted import ScriptedBackend
from gmai_client.errors import (
    ConnectFailed,
    DeadlineExceeded,
    EndpointUnreachable,
    RateLimited,
    RequestTimeout,
    ServerError,
)
from gmai_client.policy.cache import ResponseCache, cache_key, key_fields
from gmai_client.policy.dispatch import Dispatcher, Reachability, Sent, TokenBudget
from gmai_client.policy.limiter import AdaptiveConcurrency, EndpointLimiter, Limits
from gmai_client.policy.retry import RetryPolicy
from gmai_client.types import Request, Response, SamplingParams, Usage

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, deadline=30.0)


class CachedScript(ScriptedBackend):
    """The scripted backend as an API backend looks to the dispatcher: its answers are cached."""

    def cacheable(self) -> bool:
        return True

    def identity(self) -> dict[str, str]:
        return {"backend": "scripted", "model": self.model, "endpoint": "http://models.test/v1"}


def requests(count: int) -> list[Request]:
    return [
        Request(str(n), text=f"Question {n}: which organ? " + "x" * 300, params=SamplingParams(max_tokens=16))
        for n in range(count)
    ]


def answer_of(request: Request) -> str:
    return f"answer to {request.item_index} " + "y" * 1500


def dispatcher(backend: ScriptedBackend, **kwargs) -> Dispatcher:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("concurrency", AdaptiveConcurrency(8))
    return Dispatcher(backend, **kwargs)


def send_all(dispatch: Dispatcher, batch: list[Request]) -> list[Sent | BaseException]:
    async def main() -> list[Sent | BaseException]:
        return await asyncio.gather(*(dispatch.send(r) for r in batch), return_exceptions=True)

    return asyncio.run(main())


# -- a broken cache costs no answer


def damage(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(b"\x00garbage, not SQLite\n" * 500)
        return
    data = bytearray(path.read_bytes())
    start, end = len(data) // 3, 2 * len(data) // 3
    noise = random.Random(1)
    data[start:end] = bytes(noise.getrandbits(8) for _ in range(end - start))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["garbage", "damaged pages"])
def test_every_request_is_answered_through_a_corrupt_cache(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    batch = requests(60)
    backend = CachedScript(answer_of)
    path = tmp_path / "responses.sqlite"
    cache = ResponseCache(path)
    for request in batch:  # every answer cached by an earlier run
        fields = key_fields(backend.identity(), request)
        cache.store(cache_key(fields), fields, request.item_index, Response(answer_of(request)))
    cache.close()
    damage(path, how)

    cache = ResponseCache(path)
    results = send_all(dispatcher(backend, cache=cache), batch)
    sent = {r.item_index for r in backend.requests}
    again = send_all(dispatcher(backend, cache=cache), [r for r in batch if r.item_index in sent])
    cache.close()

    assert [r.response.text for r in results] == [answer_of(r) for r in batch]  # type: ignore[union-attr]
    assert len(sent) == sum(not r.cached for r in results) > 0  # what the cache could not give was sent
    assert all(isinstance(r, Sent) and r.cached for r in again)  # and stored in the fresh cache
    corrupt = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(corrupt) == 1 and str(path) in corrupt[0]


# -- an endpoint that never answered stops the model; one that answered before is retried


class StepClock:
    """A clock that moves one second each time it is read: every failure is a second after the last."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def refused(request: Request) -> Exception:
    return ConnectFailed("scripted: cannot connect to http://models.test/v1 (ConnectError: refused)")


def test_an_endpoint_that_never_answered_stops_the_model_after_a_few_failed_connects() -> None:
    backend = CachedScript(refused)
    reach = Reachability("http://models.test/v1", attempts=3, window_s=2.0, clock=StepClock())
    one_at_a_time = AdaptiveConcurrency(1)  # so the count of connects made is exact
    retry = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.001)
    dispatch = dispatcher(backend, retry=retry, concurrency=one_at_a_time, reachability=reach)

    results = send_all(dispatch, requests(10))

    assert len(backend.requests) == 3  # the verdict came at the third failed connect, two seconds apart
    assert all(isinstance(r, EndpointUnreachable) and r.stops_model for r in results)
    message = str(results[0])
    assert "http://models.test/v1 is unreachable" in message and "3 attempts over 2.0 s" in message


def test_an_endpoint_behind_a_proxy_that_never_answered_names_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    reach = Reachability("http://models.test/v1", attempts=3, window_s=2.0, clock=StepClock())
    retry = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.001)
    dispatch = dispatcher(CachedScript(refused), retry=retry, concurrency=AdaptiveConcurrency(1), reachability=reach)

    results = send_all(dispatch, requests(2))

    assert all(isinstance(r, EndpointUnreachable) for r in results)
    message = str(results[0])
    assert "cannot be reached through the proxy http://proxy.internal:3128 (HTTP_PROXY)" in message
    assert "NO_PROXY" in message


def test_connect_failures_after_an_answer_are_retried_not_stopped() -> None:
    answered: list[str] = []

    def first_answers_then_refuses(request: Request) -> str | Exception:
        if not answered:
            answered.append(request.item_index)
            return "A"
        return refused(request)

    backend = CachedScript(first_answers_then_refuses)
    reach = Reachability("http://models.test/v1", attempts=3, window_s=2.0, clock=StepClock())
    retry = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001)
    dispatch = dispatcher(backend, retry=retry, reachability=reach)

    first = send_all(dispatch, requests(1))
    later = send_all(dispatch, requests(4)[1:])

    assert isinstance(first[0], Sent) and first[0].response.text == "A"
    assert all(type(r) is ConnectFailed and r.attempts == 3 for r in later)  # type: ignore[union-attr]
    assert len(backend.requests) == 1 + 3 * 3


def test_an_http_error_counts_as_an_answer() -> None:
    replies = iter([ServerError("HTTP 502 from the gateway", status=502)])

    def gateway_then_refused(request: Request) -> Exception:
        return next(replies, None) or refused(request)

    backend = CachedScript(gateway_then_refused)
    reach = Reachability("http://models.test/v1", attempts=3, window_s=2.0, clock=StepClock())
    retry = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.001)
    dispatch = dispatcher(backend, retry=retry, reachability=reach)

    (result,) = send_all(dispatch, requests(1))

    assert type(result) is ConnectFailed and len(backend.requests) == 6  # retried to the end, not stopped


def timed_out(request: Request) -> Exception:
    return RequestTimeout("scripted: no answer from http://models.test/v1 within 0.2 s")


def test_an_endpoint_that_accepts_but_never_answers_stops_the_model_after_a_few_timeouts() -> None:
    backend = CachedScript(timed_out)
    reach = Reachability("http://models.test/v1", attempts=3, window_s=2.0, clock=StepClock())
    retry = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.001)
    dispatch = dispatcher(backend, retry=retry, concurrency=AdaptiveConcurrency(1), reachability=reach)

    results = send_all(dispatch, requests(10))

    assert len(backend.requests) == 3  # not 10 items x 8 attempts of silence
    assert all(isinstance(r, EndpointUnreachable) and r.stops_model for r in results)
    message = str(results[0])
    assert "http://models.test/v1 never answered" in message and "3 attempts over 2.0 s timed out" in message
    assert "--attempt-timeout" in message  # what to do if the server is only slow


def test_timeouts_after_an_answer_are_retried_not_stopped() -> None:
    replies = iter(["A"])

    def answers_once_then_hangs(request: Request) -> str | Exception:
        return next(replies, None) or timed_out(request)

    backend = CachedScript(answers_once_then_hangs)
    reach = Reachability("http://models.test/v1", attempts=3, window_s=2.0, clock=StepClock())
    retry = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001)
    dispatch = dispatcher(backend, retry=retry, reachability=reach)

    first = send_all(dispatch, requests(1))
    later = send_all(dispatch, requests(3)[1:])

    assert isinstance(first[0], Sent)
    assert all(type(r) is RequestTimeout and r.attempts == 3 for r in later)  # type: ignore[union-attr]


class SilentServer:
    """A loopback server that accepts every connection, reads nothing and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener is closed on exit
            while True:
                self.accepted.append(self.listener.accept()[0])

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()
        self._thread.join(5)


def test_a_run_against_a_server_that_never_answers_stops_naming_the_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("openai")
    from gmai_client.cli import EXIT_STOPPED, main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a self-hosted server needs none
    with SilentServer() as server:
        url = f"http://127.0.0.1:{server.port}/v1"
        code = main(["run", "-m", f"openai:m@{url}", "-B", "label=m", "--limit", "6", "--no-cache", "--no-progress",
                     "--attempt-timeout", "0.3", "--item-deadline", "10", "--out", str(tmp_path)])  # fmt: skip
        assert server.accepted  # the connections were made: the server is there, it only never answers

    assert code == EXIT_STOPPED
    printed = " ".join(capsys.readouterr().out.split())
    assert f"{url} never answered" in printed and "timed out" in printed
    (run_dir,) = tmp_path.iterdir()
    stopped = json.loads((run_dir / "metrics.json").read_text())["run"]["models"]["m"]["stopped"]
    assert f"{url} never answered" in stopped


# -- a 429 pauses the endpoint and cuts the model's concurrency; a pause never outlasts a deadline


class FixedClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_429_pauses_the_endpoint_for_its_hint_and_halves_the_concurrency() -> None:
    limiter = EndpointLimiter(Limits(rpm=600), clock=FixedClock())
    concurrency = AdaptiveConcurrency(8)
    backend = CachedScript(lambda request: RateLimited("HTTP 429", status=429, retry_after=30.0))
    once = RetryPolicy(max_attempts=1, deadline=600.0)
    dispatch = dispatcher(backend, retry=once, limiter=limiter, concurrency=concurrency)

    (result,) = send_all(dispatch, requests(1))

    assert isinstance(result, RateLimited)
    assert limiter.pause_left() == pytest.approx(30.0)  # every request to the endpoint now waits
    assert (concurrency.limit, concurrency.cuts, dispatch.throttled) == (4, 1, 1)


def test_a_pause_longer_than_the_item_deadline_fails_the_item_at_once_as_deadline() -> None:
    limiter = EndpointLimiter(Limits(rpm=600))
    limiter.pause(3600.0)  # what a Retry-After: 3600 left behind
    backend = CachedScript(answer_of)
    said: list[str] = []
    short = RetryPolicy(max_attempts=8, base_delay=0.01, deadline=5.0)
    dispatch = dispatcher(backend, retry=short, limiter=limiter, on_status=said.append)

    results = asyncio.run(asyncio.wait_for(_send_all(dispatch, requests(3)), timeout=20))  # a guard, not a figure

    assert all(isinstance(r, DeadlineExceeded) and r.kind == "deadline" for r in results)
    assert [getattr(r, "attempts", None) for r in results] == [0, 0, 0]  # nothing was sent
    assert backend.requests == []
    assert any("rate-limit pause of 3600 s outlasts the item deadline" in text for text in said)


async def _send_all(dispatch: Dispatcher, batch: list[Request]) -> list[Sent | BaseException]:
    return await asyncio.gather(*(dispatch.send(r) for r in batch), return_exceptions=True)


# -- the token budget spends what the server reported


def test_the_budget_spends_the_reported_usage_not_the_estimate() -> None:
    (request,) = requests(1)
    estimate = CachedScript(lambda r: Response("A")).estimate_input_tokens(request) + request.params.max_tokens
    reported = Usage(input_tokens=7, output_tokens=3)
    assert estimate > 50  # the two figures differ: spending the wrong one shows
    backend = CachedScript(lambda r: Response("A", usage=reported))
    budget = TokenBudget(1_000_000)

    send_all(dispatcher(backend, budget=budget), [request])

    assert budget.spent == 10


def test_the_budget_spends_the_estimate_when_no_usage_is_reported() -> None:
    (request,) = requests(1)
    budget = TokenBudget(1_000_000)

    send_all(dispatcher(CachedScript(lambda r: Response("A", usage=None)), budget=budget), [request])

    script = CachedScript(lambda r: Response("A", usage=None))
    assert budget.spent == script.estimate_input_tokens(request) + request.params.max_tokens

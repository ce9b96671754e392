"""Examples of the retry policy: what is tried again, how long it waits, and when it gives up.

Every test runs ``call_with_retry`` on a scripted attempt function with delays of a few
milliseconds (the server hints are a few tenths of a second at most), so the whole file takes
about a second and a half.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from gmai_client.errors import (
    AuthError,
    BackendError,
    BadRequest,
    ConfigError,
    FatalError,
    Overloaded,
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
    ServerError,
)
from gmai_client.policy.retry import HINT_MARGIN_S, AttemptClock, RetryPolicy, call_with_retry

T = TypeVar("T")

#: No backoff at all: only server hints make a retry wait.
NO_BACKOFF = RetryPolicy(max_attempts=5, base_delay=0.0, max_delay=0.0, deadline=30.0)


class Scripted:
    """An attempt function that raises the given errors in order, then answers ``answer``."""

    def __init__(self, *errors: BaseException, answer: str = "ok"):
        self.errors = list(errors)
        self.answer = answer
        self.started: list[float] = []  # monotonic time at which each attempt began

    @property
    def calls(self) -> int:
        return len(self.started)

    async def __call__(self, clock: AttemptClock) -> str:
        self.started.append(time.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return self.answer


def always(make_error: Callable[[], BaseException]) -> Callable[[AttemptClock], Awaitable[str]]:
    """An attempt function that fails every time with a fresh error from ``make_error``."""

    async def attempt(clock: AttemptClock) -> str:
        raise make_error()

    return attempt


def run(attempt: Callable[[AttemptClock], Awaitable[T]], policy: RetryPolicy, **kwargs: Any) -> tuple[T, int, tuple]:
    return asyncio.run(call_with_retry(attempt, policy, **kwargs))


def test_success_after_failures_returns_result_attempts_and_reasons() -> None:
    attempt = Scripted(ServerError("502"), RateLimited("429"), Overloaded("529"), answer="B")

    assert run(attempt, NO_BACKOFF) == ("B", 4, ("server_error", "rate_limited", "overloaded"))
    assert attempt.calls == 4


def test_first_try_success_is_one_attempt_without_reasons() -> None:
    assert run(Scripted(answer="A"), NO_BACKOFF) == ("A", 1, ())


@pytest.mark.parametrize("error", [AuthError("401"), QuotaExhausted("quota"), BadRequest("400 bad image")])
def test_fatal_error_fails_at_once(error: FatalError) -> None:
    attempt = Scripted(error, answer="never")

    with pytest.raises(FatalError) as raised:
        run(attempt, NO_BACKOFF)

    assert raised.value is error
    assert attempt.calls == 1
    assert raised.value.attempts == 1  # type: ignore[attr-defined]
    assert raised.value.reasons == (error.kind,)  # type: ignore[attr-defined]


def test_fatal_error_after_retryable_ones_stops_there() -> None:
    attempt = Scripted(ServerError("500"), AuthError("403"), ServerError("500"))

    with pytest.raises(AuthError) as raised:
        run(attempt, NO_BACKOFF)

    assert attempt.calls == 2
    assert raised.value.attempts == 2  # type: ignore[attr-defined]
    assert raised.value.reasons == ("server_error", "auth")  # type: ignore[attr-defined]


def test_a_bug_in_the_attempt_is_not_retried() -> None:
    attempt = Scripted(KeyError("choices"), answer="never")

    with pytest.raises(KeyError):
        run(attempt, NO_BACKOFF)

    assert attempt.calls == 1


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_max_attempts_respected(max_attempts: int) -> None:
    calls: list[int] = []

    def make_error() -> BackendError:
        calls.append(1)
        return ServerError(f"500 number {len(calls)}")

    policy = RetryPolicy(max_attempts=max_attempts, base_delay=0.0, max_delay=0.0)
    with pytest.raises(ServerError) as raised:
        run(always(make_error), policy)

    assert len(calls) == max_attempts
    assert str(raised.value) == f"500 number {max_attempts}"  # the last error is the one raised
    assert raised.value.attempts == max_attempts  # type: ignore[attr-defined]
    assert raised.value.reasons == ("server_error",) * max_attempts  # type: ignore[attr-defined]


def test_wait_is_never_shorter_than_the_server_hint() -> None:
    # The backoff ceiling (10 ms, capped at 10 ms) is far below the hints: the hints decide.
    policy = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.01, deadline=30.0)
    errors = [RateLimited("429", retry_after=0.1), Overloaded("529", retry_after=0.05), ServerError("500")]
    waits: list[tuple[float, BaseException]] = []

    result = run(Scripted(*errors), policy, on_wait=lambda s, e: waits.append((s, e)), rng=random.Random(1))

    assert result == ("ok", 4, ("rate_limited", "overloaded", "server_error"))
    assert [error for _, error in waits] == errors  # on_wait hears of the error that caused each wait
    assert waits[0][0] >= 0.1 + HINT_MARGIN_S
    assert waits[1][0] >= 0.05 + HINT_MARGIN_S
    assert 0.0 <= waits[2][0] <= 0.01  # no hint: the plain backoff


def test_second_attempt_starts_no_earlier_than_the_hint() -> None:
    attempt = Scripted(RateLimited("429", retry_after=0.2))

    assert run(attempt, NO_BACKOFF) == ("ok", 2, ("rate_limited",))

    gap = attempt.started[1] - attempt.started[0]
    assert gap >= 0.2
    assert gap < 1.5  # and it did not wait for something else


def test_async_on_wait_is_awaited_before_the_wait() -> None:
    events: list[str] = []

    async def on_wait(seconds: float, error: BaseException) -> None:
        await asyncio.sleep(0)
        events.append(f"wait {seconds:.2f} after {error}")

    attempt = Scripted(RateLimited("429", retry_after=0.0))
    run(attempt, NO_BACKOFF, on_wait=on_wait)

    assert events == [f"wait {HINT_MARGIN_S:.2f} after 429"]


@pytest.mark.parametrize("attempt_number", [1, 2, 3, 4, 5, 6])
def test_backoff_is_full_jitter_under_a_doubling_ceiling(attempt_number: int) -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    ceiling = min(1.0, 0.1 * 2 ** (attempt_number - 1))  # 0.1, 0.2, 0.4, 0.8, 1.0, 1.0
    rng = random.Random(attempt_number)

    samples = [policy.backoff(attempt_number, rng) for _ in range(400)]

    assert all(0.0 <= s <= ceiling for s in samples)
    assert max(samples) > 0.9 * ceiling  # spread over the whole range...
    assert min(samples) < 0.1 * ceiling  # ...down to zero (full jitter)
    assert len(set(samples)) == len(samples)


def test_backoff_is_reproducible_with_a_seeded_random() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=60.0)

    first = [policy.backoff(n, random.Random(42)) for n in range(1, 8)]
    again = [policy.backoff(n, random.Random(42)) for n in range(1, 8)]
    other = [policy.backoff(n, random.Random(43)) for n in range(1, 8)]

    assert first == again
    assert first != other


def test_call_with_retry_waits_the_seeded_backoff_of_each_attempt_number() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=0.002, max_delay=0.02, deadline=30.0)
    waits: list[float] = []

    with pytest.raises(ServerError):
        run(always(lambda: ServerError("500")), policy, on_wait=lambda s, e: waits.append(s), rng=random.Random(9))

    expected_rng = random.Random(9)
    assert waits == [policy.backoff(n, expected_rng) for n in range(1, 6)]


def test_attempt_timeout_becomes_request_timeout_and_is_retried() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, attempt_timeout=0.05)
    calls: list[float] = []

    async def attempt(clock: AttemptClock) -> str:
        calls.append(clock.time_left())
        hang = 10.0 if len(calls) == 1 else 0.0  # the first call hangs, the second answers
        await clock.timed(asyncio.sleep(hang))
        return "late ok"

    started = time.monotonic()
    assert run(attempt, policy) == ("late ok", 2, ("timeout",))
    assert time.monotonic() - started < 1.0  # the hung call was cut after 50 ms
    assert calls[0] == pytest.approx(0.05)


def test_an_attempt_that_always_hangs_ends_in_request_timeout() -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, attempt_timeout=0.02)

    async def attempt(clock: AttemptClock) -> str:
        await clock.timed(asyncio.sleep(10))
        return "never"

    with pytest.raises(RequestTimeout, match=r"no answer within 0\.02 s") as raised:
        run(attempt, policy)

    assert raised.value.attempts == 2  # type: ignore[attr-defined]
    assert raised.value.reasons == ("timeout", "timeout")  # type: ignore[attr-defined]


def test_attempt_clock_is_cut_to_the_item_deadline() -> None:
    now = time.monotonic()
    generous = RetryPolicy(attempt_timeout=5.0, deadline=1.0)
    tight = RetryPolicy(attempt_timeout=0.05, deadline=1.0)
    untimed = RetryPolicy(attempt_timeout=None, deadline=1.0)

    assert 0.1 < AttemptClock(generous, now - 0.8).time_left() <= 0.2  # the deadline is nearer
    assert AttemptClock(tight, now - 0.8).time_left() == 0.05  # the attempt timeout is nearer
    assert 0.1 < AttemptClock(untimed, now - 0.8).time_left() <= 0.2
    assert AttemptClock(generous, now - 3.0).time_left() == 0.001  # past the deadline: a token


def test_a_wait_that_would_cross_the_deadline_is_not_started() -> None:
    policy = RetryPolicy(max_attempts=8, base_delay=0.0, max_delay=0.0, deadline=0.5)
    error = RateLimited("429 slow down", retry_after=30.0)
    attempt = Scripted(error)
    waits: list[float] = []

    started = time.monotonic()
    with pytest.raises(RateLimited) as raised:
        run(attempt, policy, on_wait=lambda s, e: waits.append(s))

    assert time.monotonic() - started < 0.4  # failed now, not after 30 s
    assert waits == []
    assert attempt.calls == 1
    assert raised.value is error
    assert raised.value.attempts == 1  # type: ignore[attr-defined]
    assert raised.value.reasons == ("rate_limited",)  # type: ignore[attr-defined]
    message = str(raised.value)
    assert message.startswith("429 slow down")
    assert "deadline" in message
    assert "0.5 s" in message


def test_time_spent_in_attempts_counts_against_the_deadline() -> None:
    async def slow_then_fail(clock: AttemptClock) -> str:
        await asyncio.sleep(0.1)
        raise ServerError("504", retry_after=0.1)

    # 0.1 s spent + 0.15 s wait crosses a 0.2 s deadline: one attempt only.
    with pytest.raises(ServerError, match="deadline") as raised:
        run(slow_then_fail, RetryPolicy(max_attempts=5, base_delay=0.0, max_delay=0.0, deadline=0.2))
    assert raised.value.attempts == 1  # type: ignore[attr-defined]

    # The same attempts under a 1 s deadline get a second try before the limit of 2 attempts.
    with pytest.raises(ServerError) as raised:
        run(slow_then_fail, RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, deadline=1.0))
    assert raised.value.attempts == 2  # type: ignore[attr-defined]
    assert "deadline" not in str(raised.value)


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"base_delay": -1.0},
        {"max_delay": -0.5},
        {"attempt_timeout": 0.0},
        {"deadline": 0.0},
    ],
)
def test_policy_rejects_impossible_settings(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_a_wake_event_cuts_a_backoff_short() -> None:
    # The server asked for an hour; the caller learns meanwhile that the next attempt will end it.
    scripted = Scripted(RateLimited("429", retry_after=3600.0), answer="woken")
    policy = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, deadline=7200.0)

    async def main() -> tuple[str, int, tuple]:
        wake = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, wake.set)
        # A guard, not a measurement: without the wake this would sleep for an hour.
        return await asyncio.wait_for(call_with_retry(scripted, policy, wake=wake), timeout=30)

    assert asyncio.run(main()) == ("woken", 2, ("rate_limited",))

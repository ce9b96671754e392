"""The one retry policy: which failures are tried again, how long to wait, when to give up.

Built on tenacity. Only ``RetryableError`` is retried (rate limits, overload, 5xx, timeouts, lost
connections); a ``FatalError`` fails at once. The wait before attempt n+1 is an exponential backoff
with full jitter, but never shorter than the server's own hint (Retry-After and its dialects, read
by the backend into ``retry_after``) plus a small margin for clock skew: a request sent before the
server said it may be is wasted and, for some APIs, extends the penalty.

Each attempt has its own timeout; the item as a whole has a deadline (attempts plus waits), and
a wait that would cross the deadline is not started: the item fails now with what it met. That
holds for the rate limiter's waits too (``AttemptClock.item_time_left`` bounds them): an item that
cannot be sent before its deadline fails as ``DeadlineExceeded`` (kind "deadline", zero attempts). The
final error carries ``attempts`` and ``reasons`` (the kind of every failed attempt), which end up
on the item's record.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from gmai_client.config import DEFAULT_ITEM_DEADLINE_S, DEFAULT_MAX_ATTEMPTS
from gmai_client.errors import BackendError, ConfigError, DeadlineExceeded, RequestTimeout, RetryableError

T = TypeVar("T")

#: Added to every server hint: the server's clock and ours tick apart by a few milliseconds.
HINT_MARGIN_S = 0.05


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay: float = 0.5  # first backoff ceiling; doubles per attempt
    max_delay: float = 60.0  # ceiling of one backoff (a server hint may ask for longer)
    attempt_timeout: float | None = None  # seconds for one attempt; None: the backend's own
    deadline: float = DEFAULT_ITEM_DEADLINE_S  # seconds for one item, all attempts and waits together

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ConfigError("retry delays must be >= 0")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ConfigError(f"attempt timeout must be positive, got {self.attempt_timeout}")
        if self.deadline <= 0:
            raise ConfigError(f"item deadline must be positive, got {self.deadline}")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return (rng or random).uniform(0, ceiling)

    def wait_after(self, error: BaseException, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next attempt: the backoff, or the server's hint if longer."""
        hint = getattr(error, "retry_after", None)
        backoff = self.backoff(attempt, rng)
        return max(backoff, hint + HINT_MARGIN_S) if hint is not None else backoff


#: Called before each wait with (seconds, the error that caused it); the dispatcher uses it to
#: show the wait in the progress display and to pause the endpoint's rate limiter.
OnWait = Callable[[float, BaseException], Awaitable[None] | None]


@dataclass(frozen=True)
class AttemptClock:
    """What one attempt may spend on its call: the attempt timeout, cut to the item's deadline.

    Handed to each attempt so that time spent queueing for a rate limit before the call does not
    count against the call's own timeout.
    """

    policy: RetryPolicy
    item_started: float

    def item_time_left(self) -> float:
        """Seconds left before the item's deadline (what a wait before the call may take at most)."""
        return self.policy.deadline - (time.monotonic() - self.item_started)

    def time_left(self) -> float:
        remaining = self.item_time_left()
        limit = remaining if self.policy.attempt_timeout is None else min(self.policy.attempt_timeout, remaining)
        return max(limit, 0.001)

    async def timed(self, call: Awaitable[T]) -> T:
        """Await ``call`` within ``time_left()``; a timeout becomes a (retryable) RequestTimeout."""
        seconds = self.time_left()
        try:
            return await asyncio.wait_for(call, timeout=seconds)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer within {seconds:.3g} s") from None


async def call_with_retry(
    attempt: Callable[[AttemptClock], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_wait: OnWait | None = None,
    rng: random.Random | None = None,
    wake: asyncio.Event | None = None,
) -> tuple[T, int, tuple[str, ...]]:
    """Run ``attempt`` under ``policy``; return (result, attempts made, kinds of failed attempts).

    ``attempt`` gets an ``AttemptClock`` and wraps its call in ``clock.timed``. When ``wake`` is set
    during a backoff, the next attempt starts at once (the caller knows it will fail fast, e.g. a
    model just stopped, and would rather not sleep out the wait).

    On failure the last error is raised with ``attempts`` and ``reasons`` set on it.
    """
    attempts = _Attempts(attempt, policy, on_wait, rng, wake)
    # The first attempt runs on its own: most items succeed at once, and setting up tenacity's loop
    # costs more CPU than the rest of the dispatch (~0.3 ms per item, measured). After a retryable
    # failure the loop takes over, starting by replaying that failure so that its attempt
    # numbers, waits and stop rule are exactly those of a loop that had made the first call.
    try:
        return await attempts.one(), 1, ()
    except RetryableError as error:
        replay: list[BaseException] = [error]
    except BackendError as error:
        _tag(error, attempts.reasons)
        raise

    async def next_attempt() -> T:
        if replay:
            raise replay.pop()
        return await attempts.one()

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(RetryableError),
        stop=stop_after_attempt(policy.max_attempts),
        wait=attempts.wait,
        sleep=attempts.sleep,
        reraise=True,
    )
    try:
        result = await retrying(next_attempt)
    except _DeadlineReached as reached:
        _tag(reached.error, attempts.reasons, deadline=policy.deadline)
        raise reached.error from None
    except BackendError as error:
        _tag(error, attempts.reasons)
        raise
    return result, len(attempts.reasons) + 1, tuple(attempts.reasons)


class _Attempts(Generic[T]):
    """One item's attempts: what failed so far, how long to wait after a failure, and the wait."""

    def __init__(
        self,
        attempt: Callable[[AttemptClock], Awaitable[T]],
        policy: RetryPolicy,
        on_wait: OnWait | None,
        rng: random.Random | None,
        wake: asyncio.Event | None,
    ):
        self.attempt, self.policy, self.on_wait, self.rng, self.wake = attempt, policy, on_wait, rng, wake
        self.started = time.monotonic()
        self.reasons: list[str] = []
        self.last_error: BaseException | None = None

    async def one(self) -> T:
        try:
            return await self.attempt(AttemptClock(self.policy, self.started))
        except BackendError as exc:
            if not isinstance(exc, DeadlineExceeded):  # nothing was sent: not an attempt
                self.reasons.append(exc.kind)
            self.last_error = exc
            raise

    def wait(self, state: RetryCallState) -> float:
        assert state.outcome is not None
        error = state.outcome.exception()
        assert error is not None
        seconds = self.policy.wait_after(error, state.attempt_number, self.rng)
        if time.monotonic() - self.started + seconds >= self.policy.deadline:
            # Not worth waiting: the attempt after the wait could not finish in time.
            raise _DeadlineReached(error)
        return seconds

    async def sleep(self, seconds: float) -> None:
        if self.on_wait is not None and self.last_error is not None:
            waiting = self.on_wait(seconds, self.last_error)
            if waiting is not None:
                await waiting
        if self.wake is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(asyncio.TimeoutError):  # TimeoutError itself from 3.11 on
            await asyncio.wait_for(self.wake.wait(), seconds)


class _DeadlineReached(Exception):
    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _tag(error: BaseException, reasons: list[str], deadline: float | None = None) -> None:
    # ``attempts`` counts requests sent: an item that never got past the rate limiter sent none.
    error.attempts = len(reasons) or (0 if isinstance(error, DeadlineExceeded) else 1)  # type: ignore[attr-defined]
    error.reasons = tuple(reasons)  # type: ignore[attr-defined]
    if deadline is not None and isinstance(error, BackendError) and not isinstance(error, DeadlineExceeded):
        error.args = (f"{error} (gave up: the item's {deadline:g} s deadline would pass before the next attempt)",)

"""Rate limits and adaptive concurrency: how fast requests may leave, per endpoint and per model.

``EndpointLimiter`` holds the budgets of one endpoint and key (every model and item sent there
shares them): requests per minute and tokens per minute as token buckets, refilled continuously.
A request's tokens are estimated before it is sent (text length and image count) and corrected
from the usage the server reports, so the bucket tracks what the provider counts. A 429 pauses
the whole endpoint until its hint expires: every other request to that key would meet the same
limit.

``AdaptiveConcurrency`` is the per-model in-flight cap (AIMD): it halves on a rate-limit or
overload reply (at most once per ``cooldown``, since one burst brings many 429s at once) and grows
by one slot per window of successes, but only while the cap was actually reached; a cap that is
never reached tells nothing about whether more would be accepted.

Both report waits through ``on_wait(reason, seconds)`` so the progress display can say that the
run is waiting on a limit rather than stuck.

A wait is never longer than the caller can afford: ``acquire(..., within=seconds)`` (the item's
time left before its deadline) raises ``DeadlineExceeded`` at once when the wait it would need is
longer (a server's ``Retry-After: 3600`` pausing the endpoint, say), and gives up when the time
runs out while queueing behind other requests. The item then fails as "deadline" instead of
stalling the run, and a later ``--retry-errors`` sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from gmai_client.errors import ConfigError, DeadlineExceeded

# Buckets hold one second of budget: providers enforce "per minute" limits over shorter windows
# too (OpenAI documents 60,000 RPM enforced as 1,000 per second), so a run must never spend a
# minute's budget in one burst; a second's worth keeps a sliding one-second window within limits.
_BURST_SECONDS = 1.0

OnLimitWait = Callable[[str, float], None]


@dataclass(frozen=True)
class Limits:
    rpm: float | None = None  # requests per minute; None: unlimited
    tpm: float | None = None  # tokens per minute; None: unlimited

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value:g}")


class TokenBucket:
    """A continuously refilled bucket. ``take`` may drive the level below zero (a request bigger
    than the bucket is let through once the bucket is full); later takers wait off the debt.

    Tokens may also be *reserved* for a request in flight and settled when its real cost is known.
    What a settlement hands back may lift the level above the capacity: the refill is capped at one
    second's budget, but a returned over-estimate was never spent. (Capping it too would allow only
    as many reservations in flight as fit in one second's budget: one or two when each reserves a
    whole ``max_tokens``.) A settlement returns at most what it reserved, so the level stays below
    the capacity plus the reservations in flight.
    """

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * _BURST_SECONDS)
        self.level = self.capacity
        self.reserved = 0.0  # reserved by requests in flight, not yet settled
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        if self.level < self.capacity:
            self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    def delay_for(self, amount: float) -> float:
        """Seconds until ``amount`` (capped at the capacity) is available; 0 when it is now."""
        self._refill()
        needed = min(amount, self.capacity)
        return 0.0 if self.level >= needed else (needed - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def reserve(self, amount: float) -> None:
        """Take ``amount`` for a request about to be sent; ``settle`` it when the request ends."""
        self.take(amount)
        self.reserved += amount

    def settle(self, reserved: float, actual: float | None) -> None:
        """End a reservation: hand back what the request did not cost (or take what it cost beyond
        the estimate). ``actual`` None: the cost is unknown and the reservation stands."""
        self._refill()
        self.reserved = max(0.0, self.reserved - reserved)
        if actual is not None:
            self.level += reserved - max(0.0, actual)


class EndpointLimiter:
    """The shared budgets of one endpoint + key. Safe for any number of concurrent tasks."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self._clock = clock
        self._requests = TokenBucket(limits.rpm, clock) if limits.rpm else None
        self._tokens = TokenBucket(limits.tpm, clock) if limits.tpm else None
        self._paused_until = 0.0
        self._lock = asyncio.Lock()  # FIFO: waiters are served in arrival order
        self._settled = asyncio.Event()  # wakes the waiting request when tokens come back
        self.waited_s = 0.0  # total time requests spent waiting here (for the run's figures)

    def pause(self, seconds: float) -> None:
        """Hold every request to this endpoint for ``seconds`` (a 429's hint)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def pause_left(self) -> float:
        """Seconds left of the current pause (0 when none)."""
        return max(0.0, self._paused_until - self._clock())

    async def acquire(self, tokens: int, on_wait: OnLimitWait | None = None, *, within: float | None = None) -> None:
        """Wait until a request of ``tokens`` may leave, then take its budget. ``within``: the most
        the caller may wait (its item's time left); a longer wait raises ``DeadlineExceeded``."""
        if within is None or not self._lock.locked():
            # Nobody queues ahead: the loop below sees every wait and refuses a long one at once.
            await self._acquire(tokens, on_wait, within)
            return
        try:
            await asyncio.wait_for(self._acquire(tokens, on_wait, within), max(within, 0.0))
        except asyncio.TimeoutError:  # TimeoutError itself from 3.11 on
            raise DeadlineExceeded(
                f"the item's deadline passed while queueing for the endpoint's rate limits ({within:.1f} s left)"
            ) from None

    async def _acquire(self, tokens: int, on_wait: OnLimitWait | None, within: float | None) -> None:
        give_up = None if within is None else self._clock() + within
        async with self._lock:
            reported = ""
            while True:
                delays = [("rate-limit pause", self._paused_until - self._clock())]
                if self._requests is not None:
                    delays.append(("requests/min limit", self._requests.delay_for(1)))
                if self._tokens is not None:
                    delays.append(("tokens/min limit", self._tokens.delay_for(tokens)))
                reason, delay = max(delays, key=lambda pair: pair[1])
                if delay <= 0:
                    break
                if give_up is not None and self._clock() + delay > give_up:
                    left = max(0.0, give_up - self._clock())
                    if on_wait is not None:
                        on_wait(f"{reason} of {delay:.0f} s outlasts the item deadline: items fail as 'deadline'", 0.0)
                    raise DeadlineExceeded(
                        f"waiting {delay:.1f} s for the endpoint's {reason} would pass the item's deadline "
                        f"({left:.1f} s left): failed now instead of stalling the run (--retry-errors resends it)",
                        retry_after=delay,
                    )
                if on_wait is not None and reason != reported:
                    on_wait(reason, delay)
                    reported = reason
                # Sleep until the budget should be there, or until a finished request hands back
                # the unused part of its reservation (``settle``), whichever comes first.
                napped_from = self._clock()
                self._settled.clear()
                with contextlib.suppress(asyncio.TimeoutError):  # TimeoutError itself from 3.11 on
                    await asyncio.wait_for(self._settled.wait(), delay)
                self.waited_s += max(0.0, self._clock() - napped_from)
            if self._requests is not None:
                self._requests.take(1)
            if self._tokens is not None:
                self._tokens.reserve(tokens)

    def settle(self, estimated: int, actual: int | None) -> None:
        """Replace a request's estimate by the usage the server reported (None: none reported, or
        the request failed; the estimate stands). Call once for every successful ``acquire``."""
        if self._tokens is not None:
            self._tokens.settle(estimated, actual)
            self._settled.set()


class LimiterPool:
    """One ``EndpointLimiter`` per endpoint scope, shared by every model of a run that uses it.

    The first model to name a scope sets its limits; a later model asking for different limits on
    the same endpoint and key is a configuration error (two budgets for one account cannot both hold).
    """

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, ...], EndpointLimiter] = {}

    def get(self, scope: tuple[str, ...], limits: Limits) -> EndpointLimiter:
        limiter = self._limiters.get(scope)
        if limiter is None:
            limiter = self._limiters[scope] = EndpointLimiter(limits)
        elif limits != limiter.limits and limits != Limits():
            raise ConfigError(
                f"two models share the endpoint {scope[1] or scope[0]} with different rate limits "
                f"({_describe(limiter.limits)} vs {_describe(limits)}): give them the same --rpm/--tpm"
            )
        return limiter


def _describe(limits: Limits) -> str:
    return f"rpm={limits.rpm or 'none'}, tpm={limits.tpm or 'none'}"


class AdaptiveConcurrency:
    """An AIMD cap on one model's in-flight requests, between 1 and ``maximum``."""

    def __init__(self, maximum: int, *, cooldown: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self.cooldown = cooldown
        self._clock = clock
        self._last_cut = -float("inf")
        self._saturated_successes = 0
        self._changed = asyncio.Condition()
        self.cuts = 0  # how many times the cap was halved (for the run's figures)

    @contextlib.asynccontextmanager
    async def slot(self, on_wait: OnLimitWait | None = None) -> AsyncIterator[None]:
        async with self._changed:
            # Only a cap cut below its maximum is worth reporting: a full cap is ordinary queueing.
            if self.in_flight >= int(self.limit) and self.limit < self.maximum and on_wait is not None:
                on_wait(f"concurrency cut to {int(self.limit)} after 429s", 0.0)
            await self._changed.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
            saturated = self.in_flight >= int(self.limit)
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                if saturated:
                    self._saturated_successes += 1
                self._changed.notify_all()

    def on_success(self) -> None:
        """Additive increase: +1 slot per ``limit`` successes sent while the cap was reached."""
        if self._saturated_successes >= int(self.limit) and self.limit < self.maximum:
            self.limit = min(self.maximum, self.limit + 1)
            self._saturated_successes = 0

    def on_throttled(self) -> None:
        """Multiplicative decrease on a 429 / overload reply."""
        now = self._clock()
        if now - self._last_cut < self.cooldown:
            return
        self._last_cut = now
        self.limit = max(1.0, self.limit / 2)
        self._saturated_successes = 0
        self.cuts += 1

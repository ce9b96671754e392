"""Examples of the rate limits and the adaptive concurrency cap.

Bucket arithmetic runs on a fake clock, so every figure is exact. Waits on an ``EndpointLimiter``
are probed with an ``on_wait`` that refuses to wait (it raises), which says how long and why a
request would wait without sleeping. The few real-time tests use waits of tenths of a second and
check bounds that hold however late the event loop wakes.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from gmai_client.errors import ConfigError, DeadlineExceeded
from gmai_client.policy.limiter import (
    AdaptiveConcurrency,
    EndpointLimiter,
    LimiterPool,
    Limits,
    TokenBucket,
)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WouldWait(Exception):
    def __init__(self, reason: str, seconds: float):
        super().__init__(f"{reason}: {seconds}")
        self.reason, self.seconds = reason, seconds


def probe(limiter: EndpointLimiter, tokens: int = 1) -> tuple[str, float] | None:
    """None when the request is let through now (and charged); else (reason, seconds) it would wait."""

    def refuse(reason: str, seconds: float) -> None:
        raise WouldWait(reason, seconds)

    try:
        asyncio.run(limiter.acquire(tokens, refuse))
    except WouldWait as wait:
        return wait.reason, pytest.approx(wait.seconds)
    return None


# -- TokenBucket


def test_bucket_starts_full_with_one_second_of_budget() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, clock)  # 10 per second

    assert bucket.capacity == 10.0
    assert bucket.delay_for(10) == 0.0
    bucket.take(10)
    assert bucket.delay_for(1) == pytest.approx(0.1)
    assert bucket.delay_for(4) == pytest.approx(0.4)


@pytest.mark.parametrize("per_minute", [6, 30, 60])
def test_bucket_holds_at_least_one_request(per_minute: float) -> None:
    bucket = TokenBucket(per_minute, FakeClock())  # a second's budget is one request or less

    assert bucket.capacity == 1.0
    assert bucket.delay_for(1) == 0.0
    bucket.take(1)
    assert bucket.delay_for(1) == pytest.approx(60 / per_minute)


def test_bucket_refills_continuously_up_to_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, clock)
    bucket.take(10)

    clock.advance(0.2)
    assert bucket.delay_for(2) == 0.0
    assert bucket.delay_for(3) == pytest.approx(0.1)

    clock.advance(3600.0)  # an hour idle does not bank an hour of requests
    bucket.take(10)
    assert bucket.delay_for(1) == pytest.approx(0.1)


def test_a_request_bigger_than_the_bucket_passes_once_full_and_leaves_a_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(300, clock)  # 5 per second, capacity 5

    assert bucket.delay_for(12) == 0.0  # capped at the capacity: a full bucket lets it through
    bucket.take(12)  # level -7

    assert bucket.delay_for(1) == pytest.approx(1.6)
    assert bucket.delay_for(12) == pytest.approx(2.4)  # waits for a full bucket again
    clock.advance(1.6)
    assert bucket.delay_for(1) == 0.0


def test_settling_a_reservation_corrects_the_estimate_either_way() -> None:
    clock = FakeClock()
    bucket = TokenBucket(300, clock)  # 5 per second, capacity 5
    bucket.reserve(5)

    bucket.settle(5, actual=2)  # cost 3 less than estimated
    assert bucket.delay_for(3) == 0.0
    assert bucket.delay_for(4) == pytest.approx(0.2)
    assert bucket.reserved == 0

    bucket.reserve(3)
    bucket.settle(3, actual=None)  # cost unknown: the estimate stands
    assert bucket.delay_for(1) == pytest.approx(0.2)

    clock.advance(1.0)  # full again
    bucket.reserve(5)
    bucket.settle(5, actual=7)  # cost more than estimated: a debt
    assert bucket.delay_for(1) == pytest.approx(0.6)


def test_returned_over_estimates_may_lift_the_level_above_one_seconds_budget() -> None:
    # Four requests in flight, each reserving far more than it will cost: their returns are unspent
    # budget, so they stay usable even when the refill has already filled the bucket meanwhile.
    clock = FakeClock()
    bucket = TokenBucket(6000, clock)  # 100 per second, capacity 100
    for _ in range(4):
        clock.advance(1.0)
        bucket.reserve(90)
    clock.advance(1.0)  # refilled to the capacity while all four are in flight
    for _ in range(4):
        bucket.settle(90, actual=10)
    assert bucket.level == pytest.approx(100 + 4 * 80)
    assert bucket.reserved == 0
    clock.advance(5.0)  # the refill does not add on top of an over-full bucket
    assert bucket.level == pytest.approx(420)
    bucket.reserve(90)
    bucket.settle(90, actual=-1000)  # a nonsensical report returns no more than was reserved
    assert bucket.level == pytest.approx(420)


# -- EndpointLimiter


@pytest.mark.parametrize(("rpm", "burst"), [(12, 1), (60, 1), (600, 10)])
def test_requests_beyond_the_burst_are_spaced_at_60_over_rpm(rpm: int, burst: int) -> None:
    clock = FakeClock()
    limiter = EndpointLimiter(Limits(rpm=rpm), clock=clock)

    assert [probe(limiter) for _ in range(burst)] == [None] * burst
    for _ in range(3):
        assert probe(limiter) == ("requests/min limit", 60 / rpm)
        clock.advance(60 / rpm)
        assert probe(limiter) is None


def test_requests_per_window_stay_within_the_rate_in_real_time() -> None:
    # 1200 rpm: a burst of 20 (one second of budget), then one every 50 ms.
    rpm, burst, extra = 1200, 20, 10
    before = time.monotonic()
    limiter = EndpointLimiter(Limits(rpm=rpm))
    granted: list[float] = []

    async def one() -> None:
        await limiter.acquire(1)
        granted.append(time.monotonic())

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(burst + extra)))

    asyncio.run(main())

    assert len(granted) == burst + extra
    for count, at in enumerate(sorted(granted), start=1):
        # By time t no more than the burst plus what refilled since the limiter was made.
        assert count <= burst + (at - before) * rpm / 60 + 1e-6, (count, at - before)
    assert sorted(granted)[burst - 1] - before < 0.5  # the burst was not held back
    assert max(granted) - before < extra * 60 / rpm + 1.5  # and the rest was not stalled
    assert limiter.waited_s >= extra * 60 / rpm * 0.8


def test_tokens_per_minute_are_settled_from_the_reported_usage() -> None:
    clock = FakeClock()
    limiter = EndpointLimiter(Limits(tpm=3000), clock=clock)  # 50 tokens/s, capacity 50

    assert probe(limiter, 40) is None
    assert probe(limiter, 40) == ("tokens/min limit", 0.6)  # only 10 left

    limiter.settle(estimated=40, actual=10)  # the server counted 10, not 40: 30 come back
    assert probe(limiter, 40) is None


def test_a_waiting_request_goes_as_soon_as_a_settlement_returns_its_tokens() -> None:
    # 60 tokens/s: after the first 60-token reservation the bucket alone would hold the second
    # request for a whole second; the first one's return (it cost 6) lets it go at once.
    limiter = EndpointLimiter(Limits(tpm=3600))
    went: list[float] = []

    async def main() -> float:
        await limiter.acquire(60)
        start = time.monotonic()
        second = asyncio.create_task(limiter.acquire(60))
        await asyncio.sleep(0.1)
        assert not second.done()  # really waiting on the budget
        limiter.settle(estimated=60, actual=6)
        await second
        went.append(time.monotonic() - start)
        return limiter.waited_s

    waited = asyncio.run(main())
    assert went[0] < 0.6, went  # well before the 1 s the refill alone needs
    assert 0.05 < waited < 0.6


def test_a_request_that_cost_more_than_estimated_leaves_a_debt() -> None:
    clock = FakeClock()
    limiter = EndpointLimiter(Limits(tpm=3000), clock=clock)  # 50 tokens/s, capacity 50
    assert probe(limiter, 10) is None  # 40 left

    limiter.settle(estimated=10, actual=None)  # no usage reported: the estimate stands
    assert probe(limiter, 40) is None  # 0 left

    limiter.settle(estimated=10, actual=30)  # 20 more than estimated
    assert probe(limiter, 1) == ("tokens/min limit", 0.42)


def test_the_longest_wait_names_the_reason() -> None:
    clock = FakeClock()
    limiter = EndpointLimiter(Limits(rpm=120, tpm=600), clock=clock)  # 2 requests/s, 10 tokens/s
    assert probe(limiter, 10) is None  # 1 request and 0 tokens left

    assert probe(limiter, 20) == ("tokens/min limit", 1.0)  # the request alone could go now
    limiter.pause(5.0)
    assert probe(limiter, 20) == ("rate-limit pause", 5.0)


def test_pause_is_extended_never_shortened() -> None:
    clock = FakeClock()
    limiter = EndpointLimiter(Limits(), clock=clock)
    assert probe(limiter) is None  # no limits: never waits

    limiter.pause(2.0)
    assert probe(limiter) == ("rate-limit pause", 2.0)
    limiter.pause(0.5)  # a shorter hint from a later 429
    assert probe(limiter) == ("rate-limit pause", 2.0)
    clock.advance(2.0)
    assert probe(limiter) is None


def test_pause_holds_every_acquirer_until_it_expires() -> None:
    limiter = EndpointLimiter(Limits(rpm=60_000))
    waits: list[tuple[str, float]] = []
    granted: list[float] = []

    async def one() -> None:
        await limiter.acquire(1, lambda reason, seconds: waits.append((reason, seconds)))
        granted.append(time.monotonic())

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(5)))

    paused_at = time.monotonic()
    limiter.pause(0.2)
    asyncio.run(main())

    assert len(granted) == 5
    assert min(granted) >= paused_at + 0.2
    assert max(granted) < paused_at + 1.5
    assert waits, "the wait was not reported"
    assert {reason for reason, _ in waits} == {"rate-limit pause"}
    assert 0.1 < waits[0][1] <= 0.2


def test_a_pause_longer_than_the_time_left_fails_at_once_and_says_so() -> None:
    clock = FakeClock()
    limiter = EndpointLimiter(Limits(rpm=60), clock=clock)
    limiter.pause(3600.0)  # one Retry-After: 3600
    said: list[str] = []

    with pytest.raises(DeadlineExceeded) as caught:
        asyncio.run(limiter.acquire(1, lambda reason, seconds: said.append(reason), within=5.0))

    error = caught.value
    assert error.kind == "deadline" and error.retry_after == pytest.approx(3600.0)
    assert "3600.0 s" in str(error) and "rate-limit pause" in str(error) and "5.0 s left" in str(error)
    assert said == ["rate-limit pause of 3600 s outlasts the item deadline: items fail as 'deadline'"]
    assert probe(limiter) == ("rate-limit pause", 3600.0)  # nothing was taken; the pause stands
    clock.advance(3600.0)
    assert probe(limiter) is None


def test_a_wait_within_the_time_left_is_waited() -> None:
    limiter = EndpointLimiter(Limits())
    limiter.pause(0.1)
    asyncio.run(limiter.acquire(1, within=5.0))  # no error: 0.1 s fits in 5 s
    assert limiter.pause_left() == 0.0


def test_queueing_behind_a_long_wait_gives_up_when_the_time_left_runs_out() -> None:
    limiter = EndpointLimiter(Limits())
    limiter.pause(1.0)  # the first waiter may wait it out (it has 30 s); the second has 0.1 s

    async def main() -> list[BaseException | None]:
        first = asyncio.create_task(limiter.acquire(1, within=30.0))
        await asyncio.sleep(0)  # the first holds the queue
        second = asyncio.create_task(limiter.acquire(1, within=0.1))
        return await asyncio.gather(first, second, return_exceptions=True)

    first, second = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert first is None
    assert isinstance(second, DeadlineExceeded) and "queueing" in str(second)


# -- LimiterPool and Limits


SCOPE = ("openai", "https://api.openai.com/v1", "OPENAI_API_KEY")


def test_pool_shares_one_limiter_per_scope() -> None:
    pool = LimiterPool()
    limits = Limits(rpm=500, tpm=30_000)

    first = pool.get(SCOPE, limits)

    assert pool.get(SCOPE, Limits(rpm=500, tpm=30_000)) is first
    assert pool.get(SCOPE, Limits()) is first  # a model that names no limits shares them
    other_key = pool.get((*SCOPE[:2], "OTHER_KEY"), limits)
    assert other_key is not first
    assert pool.get(("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"), limits) is not first


def test_pool_rejects_two_budgets_for_one_endpoint() -> None:
    pool = LimiterPool()
    pool.get(SCOPE, Limits(rpm=500))

    with pytest.raises(ConfigError, match=r"https://api\.openai\.com/v1.*rpm=500.*rpm=100"):
        pool.get(SCOPE, Limits(rpm=100))
    with pytest.raises(ConfigError, match="different rate limits"):
        pool.get(SCOPE, Limits(rpm=500, tpm=1000))


@pytest.mark.parametrize("limits", [{"rpm": 0}, {"tpm": -5}, {"rpm": 10, "tpm": 0}])
def test_limits_must_be_positive(limits: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="must be positive"):
        Limits(**limits)


# -- AdaptiveConcurrency


def test_throttling_halves_the_cap_once_per_cooldown_and_never_below_one() -> None:
    clock = FakeClock()
    cap = AdaptiveConcurrency(8, cooldown=1.0, clock=clock)
    limits: list[float] = []
    cuts: list[int] = []

    for step in (0.0, 0.0, 0.5, 0.6, 1.0, 1.0, 1.0):  # seconds since the previous 429
        clock.advance(step)
        cap.on_throttled()
        limits.append(cap.limit)
        cuts.append(cap.cuts)

    assert limits == [4, 4, 4, 2, 1, 1, 1]
    assert cuts[:5] == [1, 1, 1, 2, 3]


async def _hold(cap: AdaptiveConcurrency, release: asyncio.Event) -> None:
    async with cap.slot():
        await release.wait()


async def _held(cap: AdaptiveConcurrency, count: int, release: asyncio.Event) -> list[asyncio.Task[None]]:
    """Start ``count`` tasks that each hold a slot until ``release`` is set."""
    tasks = [asyncio.create_task(_hold(cap, release)) for _ in range(count)]
    while cap.in_flight < count:
        await asyncio.sleep(0)
    return tasks


def test_cap_grows_back_only_after_saturated_successes() -> None:
    async def main() -> tuple[list[float], list[float]]:
        cap = AdaptiveConcurrency(8, clock=FakeClock())
        cap.on_throttled()  # 8 -> 4

        unsaturated: list[float] = []
        for _ in range(20):  # one at a time: the cap of 4 is never reached
            async with cap.slot():
                pass
            cap.on_success()
            unsaturated.append(cap.limit)

        release = asyncio.Event()
        holders = await _held(cap, 3, release)
        saturated: list[float] = []
        for _ in range(4):  # each of these fills the 4th slot
            async with cap.slot():
                pass
            cap.on_success()
            saturated.append(cap.limit)
        release.set()
        await asyncio.gather(*holders)
        return unsaturated, saturated

    unsaturated, saturated = asyncio.run(main())

    assert set(unsaturated) == {4}
    assert saturated == [4, 4, 4, 5]  # +1 slot after `limit` saturated successes


def test_cap_never_grows_past_its_maximum() -> None:
    async def main() -> float:
        cap = AdaptiveConcurrency(1)
        for _ in range(10):  # every request fills the only slot
            async with cap.slot():
                pass
            cap.on_success()
        return cap.limit

    assert asyncio.run(main()) == 1


@pytest.mark.parametrize("maximum", [1, 3, 6])
def test_slot_never_lets_more_than_the_cap_in_flight(maximum: int) -> None:
    rng = random.Random(maximum)
    cap = AdaptiveConcurrency(maximum)
    in_flight = peak = 0

    async def task() -> None:
        nonlocal in_flight, peak
        async with cap.slot():
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(rng.uniform(0, 0.003))
            in_flight -= 1

    async def main() -> None:
        await asyncio.gather(*(task() for _ in range(60)))

    asyncio.run(main())

    assert peak == maximum  # reached, never passed
    assert cap.in_flight == 0


def test_slot_admits_by_the_cut_cap_after_throttling() -> None:
    rng = random.Random(5)
    cap = AdaptiveConcurrency(7, cooldown=0.0)  # 7 -> 3.5 -> 1.75: caps of 3, then 1
    in_flight = 0
    admitted: list[tuple[int, int]] = []  # (in flight including this one, cap at entry)

    async def task(number: int) -> None:
        nonlocal in_flight
        async with cap.slot():
            in_flight += 1
            admitted.append((in_flight, int(cap.limit)))
            await asyncio.sleep(rng.uniform(0, 0.003))
            if number in (20, 40):
                cap.on_throttled()
            in_flight -= 1

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in range(80)))

    asyncio.run(main())

    assert len(admitted) == 80
    assert all(count <= limit for count, limit in admitted)
    assert {limit for _, limit in admitted} == {7, 3, 1}
    assert max(count for count, limit in admitted if limit == 7) == 7


def test_a_waiter_hears_of_a_cut_cap_but_not_of_a_full_one() -> None:
    async def slot_with(cap: AdaptiveConcurrency, heard: list[str]) -> None:
        async with cap.slot(lambda reason, seconds: heard.append(reason)):
            pass

    async def reasons_heard(cap: AdaptiveConcurrency) -> list[str]:
        heard: list[str] = []
        release = asyncio.Event()
        holders = await _held(cap, int(cap.limit), release)
        waiter = asyncio.create_task(slot_with(cap, heard))
        await asyncio.sleep(0.01)
        assert not waiter.done()  # held back by the cap
        release.set()
        await asyncio.gather(waiter, *holders)
        return heard

    cut = AdaptiveConcurrency(4, clock=FakeClock())
    cut.on_throttled()
    assert asyncio.run(reasons_heard(cut)) == ["concurrency cut to 2 after 429s"]

    # At its configured maximum, no 429 has cut anything: a full cap is no cut.
    assert asyncio.run(reasons_heard(AdaptiveConcurrency(2))) == []

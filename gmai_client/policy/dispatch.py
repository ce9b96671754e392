"""Sends one model's requests: cache, token budget, rate limits, adaptive concurrency and retries.

The runner hands every request of a model to its ``Dispatcher``; in order:

1. the response cache (a hit returns at once: no limit spent, no request sent);
2. the run's token budget (spent: ``BudgetExhausted``, which stops the run cleanly);
3. ``call_with_retry``; each attempt takes a slot of the model's adaptive concurrency, waits for
   the endpoint's request and token buckets (never past the item's deadline: a longer wait fails
   the item as "deadline" at once), then calls the backend within the attempt's timeout.
   A 429 halves the model's concurrency and pauses the whole endpoint for the server's hint;
4. on success the token estimate is corrected from reported usage, any API key the server echoed
   is removed from the answer (``errors.redact``), and the answer is cached.

What the dispatcher is waiting on (a limit, a pause, a backoff) is reported through ``on_status``
so the progress display shows it. Backends whose ``cacheable()`` is False (local baselines that cost
nothing) skip the cache.

An endpoint that never answered is not ground through attempt by attempt: when every attempt so
far failed to connect (``ConnectFailed``: refused, unknown host) or timed out (``RequestTimeout``:
a server that accepts connections and sends nothing back) for at least ``UNREACHABLE_ATTEMPTS``
attempts over at least ``UNREACHABLE_WINDOW_S`` seconds, the model is stopped with one
``EndpointUnreachable`` naming the endpoint, as for a bad key. One answer of any kind from the
server (a success or an HTTP error) turns this off for the dispatcher's lifetime: an endpoint that
worked and then drops or slows down is retried as usual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from gmai_client.backend import Backend, as_backend
from gmai_client.errors import (
    BackendError,
    BudgetExhausted,
    ConnectFailed,
    EndpointUnreachable,
    Overloaded,
    RateLimited,
    RequestTimeout,
    proxy_for,
    redact,
)
from gmai_client.policy.cache import ResponseCache, cache_key, key_fields
from gmai_client.policy.limiter import AdaptiveConcurrency, EndpointLimiter
from gmai_client.policy.retry import AttemptClock, RetryPolicy, call_with_retry
from gmai_client.types import Request, Response


@dataclass(frozen=True)
class Sent:
    """What came back for one request, and what it took."""

    response: Response
    attempts: int  # requests actually sent (0 for a cache hit)
    retries: tuple[str, ...] = ()  # the error kind of each failed attempt
    cached: bool = False
    estimated_input_tokens: int | None = None  # the backend's estimate, beside what the server reported


class TokenBudget:
    """Tokens the whole run may spend (input + output, as reported; estimated when not reported)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.spent = 0

    def check(self) -> None:
        if self.spent >= self.limit:
            raise BudgetExhausted(
                f"the run's token budget of {self.limit:,} is spent ({self.spent:,} used): "
                f"finished items are saved; raise --token-budget and rerun to continue"
            )

    def spend(self, tokens: int) -> None:
        self.spent += tokens


#: An endpoint that never answered is stopped after this many failed connects or timeouts...
UNREACHABLE_ATTEMPTS = 3
#: ...spread over at least this many seconds (a server that is just coming up gets this long).
UNREACHABLE_WINDOW_S = 2.0


class Reachability:
    """Whether an endpoint ever answered; the verdict that it cannot be reached if it never did."""

    def __init__(
        self,
        endpoint: str,
        *,
        attempts: int = UNREACHABLE_ATTEMPTS,
        window_s: float = UNREACHABLE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.endpoint = endpoint
        self.attempts, self.window_s = attempts, window_s
        self._clock = clock
        self.answered = False  # the server answered something once: never judged unreachable
        self.failed = 0  # attempts that failed to connect or timed out while nothing had answered
        self.timeouts = 0  # of which timed out
        self._first: float | None = None
        self.verdict: EndpointUnreachable | None = None
        self.decided = asyncio.Event()  # set with the verdict: wakes requests backing off to hear it

    def check(self) -> None:
        """Raise the verdict, once reached, before anything more is sent."""
        if self.verdict is not None:
            raise self.verdict

    def saw_answer(self) -> None:
        self.answered = True

    def saw_no_answer(self, error: ConnectFailed | RequestTimeout) -> EndpointUnreachable | None:
        """Count an attempt that got nothing back (no connection, or silence until its timeout);
        the verdict once enough of them, spread over the window, are all the endpoint ever gave."""
        if self.answered:
            return None
        now = self._clock()
        if self._first is None:
            self._first = now
        self.failed += 1
        self.timeouts += isinstance(error, RequestTimeout)
        spent = now - self._first
        if self.verdict is None and self.failed >= self.attempts and spent >= self.window_s:
            self.verdict = EndpointUnreachable(self._why(spent, error))
            self.decided.set()
        return self.verdict

    def _why(self, spent: float, error: BaseException) -> str:
        saved = "finished items are saved, rerun to resume"
        if proxy := proxy_for(self.endpoint):
            return (
                f"{self.endpoint} cannot be reached through the proxy {proxy}: all {self.failed} attempts over "
                f"{spent:.1f} s failed to connect or timed out and none was ever answered (last: {error}). Check "
                f"the proxy, or leave it out for this host (NO_PROXY); {saved}"
            )
        if not self.timeouts:
            return (
                f"{self.endpoint} is unreachable: all {self.failed} attempts over {spent:.1f} s failed to "
                f"connect and none was ever answered (last: {error}). Check the URL, host and port, and "
                f"that the server is running; {saved}"
            )
        what = "timed out" if self.timeouts == self.failed else "failed to connect or timed out"
        return (
            f"{self.endpoint} never answered: all {self.failed} attempts over {spent:.1f} s {what} (last: {error}). "
            "It takes connections but sends nothing back: check that it is the model's server and that it is "
            f"serving (not stuck, not still loading), or, if it is only slow, allow longer (--attempt-timeout, "
            f"-B timeout=); {saved}"
        )


class Dispatcher:
    def __init__(
        self,
        backend: Backend,
        *,
        retry: RetryPolicy,
        concurrency: AdaptiveConcurrency,
        limiter: EndpointLimiter | None = None,
        cache: ResponseCache | None = None,
        budget: TokenBudget | None = None,
        on_status: Callable[[str], None] | None = None,
        reachability: Reachability | None = None,
    ):
        self.backend = backend = as_backend(backend)
        self.retry = retry
        self.concurrency = concurrency
        self.limiter = limiter
        self.cache = cache if backend.cacheable() else None
        self.budget = budget
        self._on_status = on_status or (lambda text: None)
        self.throttled = 0  # 429 / overload replies met (for the run's figures)
        endpoint = backend.identity().get("endpoint") or backend.name or "the backend"
        self.reachability = reachability or Reachability(str(endpoint))

    async def send(self, request: Request) -> Sent:
        key = fields = None
        if self.cache is not None:
            fields = key_fields(self.backend.identity(), request)
            key = cache_key(fields)
            hit = await self.cache.get(key)
            if hit is not None:
                return Sent(_without_secrets(hit), attempts=0, cached=True)
        if self.budget is not None:
            self.budget.check()

        response, attempts, retries = await call_with_retry(
            lambda clock: self._attempt(request, clock),
            self.retry,
            on_wait=self._backing_off,
            wake=self.reachability.decided,
        )
        response = _without_secrets(response)  # a server may echo the key: never cache or record it
        if self.cache is not None and key is not None and fields is not None:
            await self.cache.put(key, fields, request.item_index, response)
        # The estimate (a few microseconds: image sizes come from their headers), kept beside the
        # usage the server reports, so that the estimator's error shows in the reports.
        return Sent(response, attempts, retries, estimated_input_tokens=self.backend.estimate_input_tokens(request))

    async def _attempt(self, request: Request, clock: AttemptClock) -> Response:
        # The backend knows its provider's token rules (images by size); the answer's ceiling on top.
        # Only a limiter or a budget needs it.
        estimate = 0
        if self.limiter is not None or self.budget is not None:
            estimate = self.backend.estimate_input_tokens(request) + self.backend.output_bound(request)
        self.reachability.check()
        async with self.concurrency.slot(self._waiting):
            if self.limiter is not None:
                # Never longer than the item may wait: a long pause fails the item ("deadline").
                await self.limiter.acquire(estimate, self._waiting, within=clock.item_time_left())
            self.reachability.check()  # decided while this attempt queued: send nothing more
            used: int | None = None
            try:
                response = await clock.timed(self.backend.generate(request))
                used = response.usage.input_tokens + response.usage.output_tokens if response.usage else None
            except (ConnectFailed, RequestTimeout) as exc:
                unreachable = self.reachability.saw_no_answer(exc)
                if unreachable is not None:
                    raise unreachable from None
                raise
            except (RateLimited, Overloaded) as exc:
                self.reachability.saw_answer()
                self.throttled += 1
                self.concurrency.on_throttled()
                if isinstance(exc, RateLimited) and exc.retry_after and self.limiter is not None:
                    self.limiter.pause(exc.retry_after)
                raise
            except BackendError as exc:
                if exc.status is not None:  # an HTTP status: the server is there
                    self.reachability.saw_answer()
                raise
            finally:
                if self.limiter is not None:
                    self.limiter.settle(estimate, used)
        self.reachability.saw_answer()
        self.concurrency.on_success()
        if self.budget is not None:
            self.budget.spend(used if used is not None else estimate)
        self._on_status("")
        return response

    def _waiting(self, reason: str, seconds: float) -> None:
        self._on_status(f"waiting {seconds:.1f} s: {reason}" if seconds > 0 else reason)

    def _backing_off(self, seconds: float, error: BaseException) -> None:
        self._on_status(f"retry in {seconds:.1f} s after {getattr(error, 'kind', type(error).__name__)}")


def _without_secrets(response: Response) -> Response:
    text, model, thinking = redact(response.text), redact(response.model), redact(response.thinking)
    if (text, model, thinking) == (response.text, response.model, response.thinking):
        return response
    return replace(response, text=text, model=model, thinking=thinking)

"""Several endpoints per model: ``BalancedBackend`` spreads one model's requests over its replicas.

A spec whose endpoint lists several endpoints separated by commas is one model served in several
places, e.g. ``triton:llava@h1:8001,h2:8001`` or ``openai:llava@http://a:8000/v1,http://b:8000/v1``
(``registry.create`` builds a ``BalancedBackend`` for it; from Python, ``BalancedBackend([...])``
takes backends built any other way). It is itself a ``Backend``, over one inner backend per
endpoint, each built by the backend's own class from the same spec with that single endpoint.

Owns (the balancing policy):

* the choice per request: the healthy endpoint with the least expected wait, scored
  ``(in_flight + 1) * latency`` where latency is the endpoint's EWMA of successful calls (an
  endpoint without data is scored with the best measured latency, so it gets tried). Only traffic
  corrects an EWMA, so an endpoint passed over for ``RESAMPLE_AFTER`` requests in a row is scored
  as untried again and gets one, whose latency replaces the stale estimate: one slow answer (a cold
  start, a busy moment) cannot keep an endpoint out of rotation for the rest of the run;
* draining: an endpoint whose request fails for a reason about the endpoint (``ConnectionLost``,
  ``RequestTimeout``, ``Overloaded``, ``ServerError``, a ``FatalError`` that stops a model, any
  failure to start) gets no traffic for a cool-down (1 s doubling to 30 s by default); then one
  probe request may go to it, and its success brings the endpoint back. An error about the request
  (``BadRequest``, ``UnsupportedInput``, ``RateLimited``) leaves the endpoint as it is;
* fail-over: a request that failed on an endpoint is sent once more, at once, to another healthy
  endpoint, so a dead replica costs no item;
* per-endpoint figures (``stats()``) for reports.

Does not own: retries and their backoff, rate limits, concurrency, the cache (``dispatch``,
``retry``, ``limiter``, ``cache``). ``generate()`` raises the inner error when it cannot place a
request, and ``ConnectionLost`` (retryable, with the time to the next probe as its hint) when every
endpoint is cooling down; the model stops only when every endpoint failed for a reason that stops
a model (the same key refused everywhere, say). ``identity()`` names the model and the sorted
endpoint list, never the endpoint that served, so the cache key does not depend on the choice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from gmai_client.backend import Backend, as_backend
from gmai_client.config import ModelSpec
from gmai_client.errors import (
    BackendError,
    ConfigError,
    ConnectionLost,
    FatalError,
    GmaiError,
    Overloaded,
    RequestTimeout,
    ServerError,
)
from gmai_client.types import Request, Response

#: The separator of an endpoint list in a spec: ``backend:model@E1,E2``.
SEPARATOR = ","

EndpointState = Literal["healthy", "down", "probing"]

#: An endpoint passed over for this many requests since its last news is scored as untried again,
#: so it gets one request to refresh its latency estimate (a genuinely slower one costs 1 in ~16).
RESAMPLE_AFTER = 16

#: Errors that say the endpoint, not the request, is in trouble.
_ENDPOINT_FAULTS: tuple[type[BackendError], ...] = (ConnectionLost, RequestTimeout, Overloaded, ServerError)


def is_endpoint_fault(error: BaseException) -> bool:
    """True for a failure that drains the endpoint; False for one about the request itself."""
    if isinstance(error, _ENDPOINT_FAULTS):
        return True
    return isinstance(error, FatalError) and error.stops_model


def split_endpoints(endpoint: str) -> list[str]:
    """``"h1:8001, h2:8001"`` -> ``["h1:8001", "h2:8001"]``; an empty or repeated entry is a ConfigError."""
    parts = [part.strip() for part in endpoint.split(SEPARATOR)]
    if any(not part for part in parts):
        raise ConfigError(f"empty endpoint in the list {endpoint!r}: separate endpoints with single commas")
    repeated = sorted({part for part in parts if parts.count(part) > 1})
    if repeated:
        raise ConfigError(f"endpoint {repeated[0]!r} is listed twice in {endpoint!r}")
    return parts


class EndpointsUnavailable(FatalError):
    """No endpoint of a balanced model can serve: none started, or each failed in a way that stops a model."""

    kind = "unreachable"
    stops_model = True


@dataclass(frozen=True)
class EndpointStats:
    """One endpoint's figures, as ``BalancedBackend.stats()`` reports them."""

    endpoint: str
    state: EndpointState
    requests: int  # requests sent to it (a start before a probe is not counted)
    errors: int  # of which failed, for any reason
    in_flight: int
    mean_latency_s: float | None  # mean of its successful calls; None before the first
    ewma_latency_s: float | None  # what the choice uses
    failovers: int  # requests that failed here and were sent on to another endpoint
    down_for_s: float  # cool-down left (0 when healthy or ready for a probe)
    last_error: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Endpoint:
    """Mutable bookkeeping for one inner backend (touched only from the event loop's thread)."""

    def __init__(self, label: str, backend: Backend):
        self.label = label
        self.backend = backend
        self.started = False
        self.in_flight = 0
        self.requests = 0
        self.errors = 0
        self.successes = 0
        self.failovers = 0
        self.latency_total = 0.0
        self.ewma: float | None = None
        self.observed_at: int | None = None  # the balancer's count of placements when the EWMA last had news
        self.down_until: float | None = None  # None: healthy
        self.failures = 0  # consecutive drains, for the exponential cool-down
        self.fatal = False  # the last drain was an error that stops a model
        self.probing = False  # the one probe request is in flight
        self.epoch = 0  # bumped by every change of health; results of older requests are stale
        self.last_error = ""
        self.start_lock = asyncio.Lock()

    def state(self) -> EndpointState:
        if self.down_until is None:
            return "healthy"
        return "probing" if self.probing else "down"

    def probe_ready(self, now: float) -> bool:
        return self.down_until is not None and not self.probing and now >= self.down_until


class BalancedBackend(Backend):
    """One model on several endpoints: least-expected-wait choice, draining, probing back, fail-over."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        cooldown_s: float = 1.0,
        max_cooldown_s: float = 30.0,
        ewma_alpha: float = 0.3,
        max_failovers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not backends:
            raise ConfigError("a balanced backend needs at least one backend")
        backends = [as_backend(backend) for backend in backends]
        if cooldown_s <= 0 or max_cooldown_s < cooldown_s:
            raise ConfigError(f"cool-down must be positive and at most its maximum ({cooldown_s}, {max_cooldown_s})")
        if not 0 < ewma_alpha <= 1:
            raise ConfigError(f"ewma_alpha must be in (0, 1], got {ewma_alpha}")
        if max_failovers < 0:
            raise ConfigError(f"max_failovers must be >= 0, got {max_failovers}")
        identities = [dict(backend.identity()) for backend in backends]
        labels = [identity.pop("endpoint", "") or f"#{n}" for n, identity in enumerate(identities)]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ConfigError(f"endpoint {repeated[0]} is given twice")
        different = [identity for identity in identities if identity != identities[0]]
        if different:
            raise ConfigError(
                f"balanced backends must be one model on several endpoints; {identities[0]} differs from {different[0]}"
            )
        self.name = backends[0].name or identities[0].get("backend", "balanced")  # type: ignore[misc]
        self._shared_identity = identities[0]
        self._endpoints = [_Endpoint(label, backend) for label, backend in zip(labels, backends, strict=True)]
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.ewma_alpha = ewma_alpha
        self.max_failovers = max_failovers
        self._clock = clock
        self._choices = 0  # requests placed so far (how long an endpoint has been passed over)

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, backend_class: Any, seed: int = 0, **policy: Any) -> BalancedBackend:
        """One inner backend per endpoint of ``spec.endpoint`` (comma-separated), same options, each
        built by ``backend_class`` (the registry passes the spec's class: policy imports no backend)."""
        inner = [
            backend_class.from_spec(replace(spec, endpoint=endpoint), seed=seed)
            for endpoint in split_endpoints(spec.endpoint)
        ]
        return cls(inner, **policy)

    # ---------------------------------------------------------------------------- the protocol

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(endpoint.label for endpoint in self._endpoints)

    @property
    def backends(self) -> tuple[Backend, ...]:
        return tuple(endpoint.backend for endpoint in self._endpoints)

    def cacheable(self) -> bool:
        return all(endpoint.backend.cacheable() for endpoint in self._endpoints)

    def limit_scope(self) -> tuple[str, ...]:
        # One budget for the model over all its endpoints, under the inner backends' key variable.
        backend, _, *rest = self._endpoints[0].backend.limit_scope()
        return (backend, self.identity()["endpoint"], *rest)

    def estimate_input_tokens(self, request: Request) -> int:
        return self._endpoints[0].backend.estimate_input_tokens(request)

    def identity(self) -> Mapping[str, str]:
        """The inner backends' common identity, with every endpoint sorted: not the one that served."""
        return {**self._shared_identity, "endpoint": SEPARATOR.join(sorted(self.endpoints))}

    def preflight(self) -> None:
        for endpoint in self._endpoints:
            endpoint.backend.preflight()

    async def start(self) -> None:
        """Start every endpoint at once; fail only if none starts. The others are drained and probed later."""
        pending = [endpoint for endpoint in self._endpoints if not endpoint.started]
        results = await asyncio.gather(*(self._start(endpoint) for endpoint in pending), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancelled or interrupted: not the endpoint's fault
        if any(endpoint.started for endpoint in self._endpoints):
            return
        problems = "; ".join(
            f"{endpoint.label}: {_describe(result)}"
            for endpoint, result in zip(pending, results, strict=True)
            if isinstance(result, BaseException)
        )
        raise EndpointsUnavailable(f"{self._what()}: no endpoint started ({problems})")

    async def generate(self, request: Request) -> Response:
        tried: list[_Endpoint] = []
        error: BaseException | None = None
        for _ in range(1 + self.max_failovers):
            endpoint = self._choose(exclude=tried)
            if endpoint is None:
                break
            if tried:
                tried[-1].failovers += 1
            tried.append(endpoint)
            try:
                return await self._send(endpoint, request)
            except BackendError as exc:
                if not is_endpoint_fault(exc):
                    raise  # about the request: another endpoint would answer the same
                error = exc
        if error is None:
            raise self._all_down()
        unplaced = self._unplaced(error)
        if unplaced is error:
            raise error
        raise unplaced from error

    async def close(self) -> None:
        results = await asyncio.gather(
            *(endpoint.backend.close() for endpoint in self._endpoints), return_exceptions=True
        )
        for endpoint in self._endpoints:
            endpoint.started = False
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # ----------------------------------------------------------------------------------- stats

    def stats(self) -> tuple[EndpointStats, ...]:
        """Per-endpoint figures, in the order the endpoints were given."""
        now = self._clock()
        return tuple(
            EndpointStats(
                endpoint=endpoint.label,
                state=endpoint.state(),
                requests=endpoint.requests,
                errors=endpoint.errors,
                in_flight=endpoint.in_flight,
                mean_latency_s=endpoint.latency_total / endpoint.successes if endpoint.successes else None,
                ewma_latency_s=endpoint.ewma,
                failovers=endpoint.failovers,
                down_for_s=max(0.0, endpoint.down_until - now) if endpoint.down_until is not None else 0.0,
                last_error=endpoint.last_error,
            )
            for endpoint in self._endpoints
        )

    def placement(self) -> list[dict[str, Any]]:
        """``stats()`` as plain dicts: what the runner writes to metrics.json (``run.models``)."""
        return [stats.as_dict() for stats in self.stats()]

    # ---------------------------------------------------------------------------------- choice

    def _choose(self, exclude: Sequence[_Endpoint] = ()) -> _Endpoint | None:
        """The endpoint for the next request: a due probe first, else the least expected wait."""
        now = self._clock()
        open_ = [endpoint for endpoint in self._endpoints if endpoint not in exclude]
        due = [endpoint for endpoint in open_ if endpoint.probe_ready(now)]
        if due:
            probe = min(due, key=lambda endpoint: endpoint.down_until or 0.0)
            probe.probing = True
            self._choices += 1
            return probe
        healthy = [endpoint for endpoint in open_ if endpoint.down_until is None]
        if not healthy:
            return None
        measured = [endpoint.ewma for endpoint in healthy if endpoint.ewma is not None]
        best = min(measured) if measured else 1.0  # untried: as good as the best, so it gets tried

        def latency(endpoint: _Endpoint) -> float:
            if endpoint.ewma is None:
                return best
            return best if self._is_stale(endpoint) and not endpoint.in_flight else endpoint.ewma

        def expected_wait(endpoint: _Endpoint) -> tuple[float, int, int]:
            return (endpoint.in_flight + 1) * latency(endpoint), endpoint.in_flight, endpoint.requests

        chosen = min(healthy, key=expected_wait)
        self._choices += 1
        return chosen

    # -------------------------------------------------------------------------------- requests

    async def _start(self, endpoint: _Endpoint) -> None:
        async with endpoint.start_lock:  # concurrent first requests start it once
            if endpoint.started:
                return
            epoch = endpoint.epoch
            try:
                await endpoint.backend.start()
            except Exception as exc:
                endpoint.last_error = _describe(exc)
                self._drain(endpoint, epoch, fatal=bool(getattr(exc, "stops_model", False)))
                raise
            endpoint.started = True

    async def _send(self, endpoint: _Endpoint, request: Request) -> Response:
        probe = endpoint.probing  # set by _choose just before, with no await in between
        epoch = endpoint.epoch
        if not endpoint.started:
            # Not started yet (or it failed to): its first request starts it; a failure drains it.
            try:
                await self._start(endpoint)
            except asyncio.CancelledError:
                if probe:
                    endpoint.probing = False
                raise
            except Exception as exc:
                raise ConnectionLost(f"{self._what()}: {endpoint.label} did not start: {_describe(exc)}") from exc
        endpoint.requests += 1
        endpoint.in_flight += 1
        started = self._clock()
        try:
            response = await endpoint.backend.generate(request)
        except asyncio.CancelledError:
            # Cut by the attempt's timeout (or the run's end): the wait so far is a lower bound.
            self._observe(endpoint, self._clock() - started)
            if probe and epoch == endpoint.epoch:
                endpoint.probing = False  # a probe that did not finish: the next request probes again
            raise
        except Exception as exc:
            endpoint.errors += 1
            endpoint.last_error = _describe(exc)
            if is_endpoint_fault(exc):
                self._drain(endpoint, epoch, fatal=bool(getattr(exc, "stops_model", False)))
            elif isinstance(exc, BackendError):
                self._restore(endpoint, epoch)  # it answered: the endpoint itself is up
            elif probe and epoch == endpoint.epoch:
                endpoint.probing = False  # a bug, not a verdict on the endpoint: probe again
            raise
        finally:
            endpoint.in_flight -= 1
        latency = self._clock() - started
        endpoint.successes += 1
        endpoint.latency_total += latency
        self._observe(endpoint, latency)
        self._restore(endpoint, epoch)
        return response

    def _observe(self, endpoint: _Endpoint, latency: float) -> None:
        latency = max(latency, 1e-6)
        previous = endpoint.ewma
        if previous is None or self._is_stale(endpoint):
            endpoint.ewma = latency  # nothing to blend with, or only old news: the sample replaces it
        else:
            endpoint.ewma = self.ewma_alpha * latency + (1 - self.ewma_alpha) * previous
        endpoint.observed_at = self._choices

    def _is_stale(self, endpoint: _Endpoint) -> bool:
        """No news of its latency for ``RESAMPLE_AFTER`` placements or more."""
        return endpoint.observed_at is not None and self._choices - endpoint.observed_at >= RESAMPLE_AFTER

    def _drain(self, endpoint: _Endpoint, epoch: int, *, fatal: bool) -> None:
        """Take the endpoint out of rotation for its cool-down, unless this news is stale."""
        if epoch != endpoint.epoch:
            return  # a request sent before the endpoint's last change: that change already counted
        endpoint.failures += 1
        cooldown = min(self.max_cooldown_s, self.cooldown_s * 2 ** (endpoint.failures - 1))
        endpoint.down_until = self._clock() + cooldown
        endpoint.fatal = fatal
        endpoint.probing = False
        endpoint.epoch += 1

    def _restore(self, endpoint: _Endpoint, epoch: int) -> None:
        """Bring a drained endpoint back after an answer to a request sent since it was drained."""
        if epoch != endpoint.epoch or endpoint.down_until is None:
            return
        endpoint.down_until = None
        endpoint.failures = 0
        endpoint.fatal = False
        endpoint.probing = False
        endpoint.epoch += 1

    # ---------------------------------------------------------------------------------- errors

    def _what(self) -> str:
        return f"{self.name} model {self._shared_identity.get('model', '?')!r}"

    def _next_probe_s(self) -> float:
        now = self._clock()
        waits = [max(0.0, e.down_until - now) for e in self._endpoints if e.down_until is not None and not e.probing]
        return min(waits) if waits else self.cooldown_s

    def _down_list(self) -> str:
        now = self._clock()
        parts = []
        for endpoint in self._endpoints:
            if endpoint.probing:
                status = "probe in flight"
            elif endpoint.down_until is not None:
                status = f"back in {max(0.0, endpoint.down_until - now):.1f} s"
            else:
                status = "healthy"
            parts.append(f"{endpoint.label} ({status}; {endpoint.last_error or 'no error'})")
        return "; ".join(parts)

    def _all_fatal(self) -> bool:
        return all(endpoint.down_until is not None and endpoint.fatal for endpoint in self._endpoints)

    def _all_down(self) -> GmaiError:
        count = len(self._endpoints)
        if self._all_fatal():
            return EndpointsUnavailable(f"{self._what()}: every endpoint failed: {self._down_list()}")
        return ConnectionLost(
            f"{self._what()}: all {count} endpoint(s) are down: {self._down_list()}",
            retry_after=self._next_probe_s(),
        )

    def _unplaced(self, error: BaseException) -> BaseException:
        """What to raise when a request failed on its endpoint(s) and no other could take it."""
        if getattr(error, "stops_model", False) and not self._all_fatal():
            # One replica is broken for good, but others may come back: keep the model going.
            return ConnectionLost(f"{error} (other endpoints: {self._down_list()})", retry_after=self._next_probe_s())
        return error


def _describe(error: BaseException) -> str:
    kind = getattr(error, "kind", type(error).__name__)
    return f"{kind}: {error}" if str(error) else str(kind)

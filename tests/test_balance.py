"""Several endpoints per model (``gmai_client.policy.balance``).

The first half drives ``BalancedBackend`` over small fake inner backends (plain classes with a
controllable latency, failure and gate, and a fake clock where cool-downs are timed), checking the
policy exactly: the choice by expected wait, draining, one probe after the cool-down, the
same-request fail-over, the all-down error, start-up with dead endpoints and a stable identity.
The second half runs ``gmai_client.run`` over real Triton servers (PyTriton, CPU, ``echo`` bound on
each, on free loopback ports, stopped by PID): the traffic is spread over two servers, a server
stopped with SIGTERM mid-run costs no item, and an endpoint that does not start is skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import gmai_client
from gmai_client import errors
from gmai_client.backend import Backend
from gmai_client.backends import registry
from gmai_client.config import RunConfig, parse_model_spec
from gmai_client.policy.balance import (
    RESAMPLE_AFTER,
    BalancedBackend,
    EndpointsUnavailable,
    is_endpoint_fault,
    split_endpoints,
)
from gmai_client.policy.cache import cache_key, key_fields
from gmai_client.testing.synthetic import write_tsv
from gmai_client.types import Request, Response
from tests.conftest import ROOT, START_TIMEOUT_S, free_ports

# ------------------------------------------------------------------------------ fake backends


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fake:
    """An inner backend whose latency, failures and start are set by the test."""

    name = "fake"

    def __init__(self, endpoint: str, *, latency: float = 0.0, clock: FakeClock | None = None, model: str = "m"):
        self.endpoint = endpoint
        self.latency = latency  # advances the fake clock when there is one, else really sleeps
        self.clock = clock
        self.model = model
        self.failure: BaseException | None = None
        self.start_failure: BaseException | None = None
        self.gate: asyncio.Event | None = None  # when set, generate waits for it
        self.calls: list[str] = []
        self.starts = 0
        self.closes = 0

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "model": self.model, "endpoint": self.endpoint}

    async def start(self) -> None:
        self.starts += 1
        if self.start_failure is not None:
            raise self.start_failure

    async def generate(self, request: Request) -> Response:
        self.calls.append(request.item_index)
        if self.gate is not None:
            await self.gate.wait()
        if self.clock is not None:
            self.clock.now += self.latency
        elif self.latency:
            await asyncio.sleep(self.latency)
        if self.failure is not None:
            raise self.failure
        return Response(f"{self.endpoint}:{request.item_index}")

    async def close(self) -> None:
        self.closes += 1


def req(index: int | str = 0) -> Request:
    return Request(str(index), "Question?\nA. one\nB. two\n")


def balanced(*backends: Fake, clock: FakeClock | None = None, **policy: float) -> BalancedBackend:
    return BalancedBackend(list(backends), clock=clock or FakeClock(), **policy)  # type: ignore[arg-type]


def state(balancer: BalancedBackend, endpoint: str) -> str:
    return next(s.state for s in balancer.stats() if s.endpoint == endpoint)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# ------------------------------------------------------------------------------ choice


def test_it_is_a_backend_and_an_untried_endpoint_gets_tried() -> None:
    a, b = Fake("a"), Fake("b")
    balancer = BalancedBackend([a, b])
    assert isinstance(balancer, Backend) and balancer.name == "fake"

    async def go() -> None:
        await balancer.start()
        a.gate = asyncio.Event()
        first = asyncio.create_task(balancer.generate(req(1)))
        await settle()
        second = asyncio.create_task(balancer.generate(req(2)))  # "a" is busy and "b" has no data yet
        await settle()
        a.gate.set()
        assert [r.text for r in await asyncio.gather(first, second)] == ["a:1", "b:2"]

    asyncio.run(go())
    assert (a.starts, b.starts) == (1, 1)


def test_choice_weighs_in_flight_requests_by_measured_latency() -> None:
    clock = FakeClock()
    a, b = Fake("a", latency=0.010, clock=clock), Fake("b", latency=0.025, clock=clock)
    balancer = balanced(a, b, clock=clock)

    async def go() -> list[str]:
        await balancer.start()
        assert (await balancer.generate(req("w1"))).text == "a:w1"  # neither measured: the first listed
        assert (await balancer.generate(req("w2"))).text == "b:w2"  # untried "b" scores as the best: tried
        assert [s.ewma_latency_s for s in balancer.stats()] == [pytest.approx(0.010), pytest.approx(0.025)]
        a.gate, b.gate = asyncio.Event(), asyncio.Event()  # hold every request in flight
        placed, tasks = [], []
        for n in range(5):
            before = len(a.calls)
            tasks.append(asyncio.create_task(balancer.generate(req(n))))
            await settle()
            placed.append("a" if len(a.calls) > before else "b")
        a.gate.set()
        b.gate.set()
        await asyncio.gather(*tasks)
        return placed

    # score = (in flight + 1) x EWMA: a 10 < b 25 -> a; 20 < 25 -> a; 30 > 25 -> b; 30 < 50 -> a; 40 < 50 -> a
    assert asyncio.run(go()) == ["a", "a", "b", "a", "a"]


def test_the_faster_endpoint_takes_most_of_the_traffic_and_equal_ones_share_it() -> None:
    async def drive(balancer: BalancedBackend, workers: int, each: int) -> None:
        await balancer.start()

        async def worker(w: int) -> None:
            for n in range(each):
                await balancer.generate(req(f"{w}-{n}"))

        await asyncio.gather(*(worker(w) for w in range(workers)))

    fast, slow = Fake("fast", latency=0.002), Fake("slow", latency=0.02)
    asyncio.run(drive(BalancedBackend([slow, fast]), workers=4, each=25))
    assert len(fast.calls) + len(slow.calls) == 100
    assert 1 <= len(slow.calls) <= 20 < 80 <= len(fast.calls)

    left, right = Fake("left", latency=0.004), Fake("right", latency=0.004)
    asyncio.run(drive(BalancedBackend([left, right]), workers=8, each=20))
    assert 0.3 < len(left.calls) / 160 < 0.7


# ------------------------------------------------------------------------------ draining and probing


def test_a_failing_endpoint_is_drained_and_the_same_request_fails_over() -> None:
    clock = FakeClock()
    a, b = Fake("a", clock=clock), Fake("b", clock=clock)
    a.failure = errors.ConnectionLost("connection refused")
    balancer = balanced(a, b, clock=clock)

    async def go() -> list[str]:
        await balancer.start()
        return [(await balancer.generate(req(n))).text for n in range(6)]

    assert asyncio.run(go()) == [f"b:{n}" for n in range(6)]
    assert a.calls == ["0"] and b.calls == [str(n) for n in range(6)]  # request 0 went to "a", then "b"
    stats = {s.endpoint: s for s in balancer.stats()}
    assert stats["a"].state == "down" and stats["a"].errors == 1 and stats["a"].failovers == 1
    assert stats["a"].down_for_s == pytest.approx(1.0) and "connection refused" in stats["a"].last_error
    assert stats["b"].state == "healthy" and (stats["b"].requests, stats["b"].errors) == (6, 0)


@pytest.mark.parametrize(
    "failure",
    [
        errors.RequestTimeout("no answer"),
        errors.Overloaded("queue full"),
        errors.ServerError("500"),
        errors.ModelNotFound("unknown model"),
    ],
)
def test_every_endpoint_fault_drains(failure: errors.BackendError) -> None:
    a, b = Fake("a"), Fake("b")
    a.failure = failure
    balancer = balanced(a, b)
    assert asyncio.run(balancer.generate(req())).text == "b:0"
    assert state(balancer, "a") == "down"


@pytest.mark.parametrize(
    "failure",
    [errors.BadRequest("bad"), errors.UnsupportedInput("two images"), errors.RateLimited("429", retry_after=2)],
)
def test_an_error_about_the_request_neither_drains_nor_fails_over(failure: errors.BackendError) -> None:
    a, b = Fake("a"), Fake("b")
    a.failure = failure
    balancer = balanced(a, b)
    with pytest.raises(type(failure)):
        asyncio.run(balancer.generate(req()))
    assert b.calls == [] and state(balancer, "a") == "healthy"
    assert [s.errors for s in balancer.stats()] == [1, 0]
    assert not is_endpoint_fault(failure)


def test_after_the_cool_down_one_probe_goes_and_its_success_brings_the_endpoint_back() -> None:
    clock = FakeClock()
    a, b = Fake("a", clock=clock), Fake("b", clock=clock)
    a.failure = errors.ConnectionLost("reset")
    balancer = balanced(a, b, clock=clock)

    async def go() -> None:
        await balancer.start()
        await balancer.generate(req("drain"))
        clock.now += 0.5
        await balancer.generate(req("still-b"))
        assert a.calls == ["drain"]
        clock.now += 0.5  # the cool-down is over: the next request is the probe
        a.failure, a.gate = None, asyncio.Event()
        probe = asyncio.create_task(balancer.generate(req("probe")))
        await settle()
        assert a.calls[-1] == "probe" and state(balancer, "a") == "probing"
        # Only one probe: meanwhile the traffic stays on "b".
        during = asyncio.create_task(balancer.generate(req("during")))
        await settle()
        assert a.calls[-1] == "probe" and b.calls[-1] == "during"
        a.gate.set()
        assert (await during).text == "b:during"
        assert (await probe).text == "a:probe"
        assert state(balancer, "a") == "healthy"
        a.gate = None
        texts = [(await balancer.generate(req(n))).text[0] for n in range(4)]
        assert "a" in texts

    asyncio.run(go())


def test_a_failed_probe_doubles_the_cool_down_up_to_its_limit_and_success_resets_it() -> None:
    clock = FakeClock()
    a, b = Fake("a", clock=clock), Fake("b", latency=0.001, clock=clock)  # "b" is slower once both answer
    a.failure = errors.ConnectionLost("refused")
    balancer = balanced(a, b, clock=clock, cooldown_s=1.0, max_cooldown_s=30.0)

    async def go() -> list[float]:
        await balancer.start()
        cooldowns = []
        for n in range(8):
            assert (await balancer.generate(req(n))).text == f"b:{n}"  # the probe failed over
            cooldowns.append(balancer.stats()[0].down_for_s + 0.001)  # "b" took 1 ms since the drain
            clock.now += cooldowns[-1]
        a.failure = None
        assert (await balancer.generate(req("back"))).text == "a:back"
        a.failure = errors.ConnectionLost("refused again")
        await balancer.generate(req("again"))
        cooldowns.append(balancer.stats()[0].down_for_s + 0.001)
        return cooldowns

    assert asyncio.run(go()) == pytest.approx([1, 2, 4, 8, 16, 30, 30, 30, 1])
    assert len(a.calls) == 10


def test_failures_of_requests_already_in_flight_do_not_stack_the_cool_down() -> None:
    clock = FakeClock()
    a, b = Fake("a", clock=clock), Fake("b", clock=clock)
    balancer = balanced(a, b, clock=clock)

    async def go() -> None:
        await balancer.start()
        a.gate, b.gate = asyncio.Event(), asyncio.Event()
        # Three requests in flight on each, then all of a's fail at once.
        tasks = [asyncio.create_task(balancer.generate(req(n))) for n in range(6)]
        await settle()
        assert len(a.calls) == len(b.calls) == 3
        a.failure = errors.ConnectionLost("server went away")
        a.gate.set()
        b.gate.set()
        texts = [t.text for t in await asyncio.gather(*tasks)]
        assert all(text.startswith("b:") for text in texts) and len(texts) == 6

    asyncio.run(go())
    stats = balancer.stats()[0]
    assert stats.errors == 3 and stats.failovers == 3 and stats.down_for_s == pytest.approx(1.0)


def test_a_cancelled_probe_lets_the_next_request_probe_again() -> None:
    clock = FakeClock()
    a, b = Fake("a", clock=clock), Fake("b", clock=clock)
    a.failure = errors.Overloaded("busy")
    balancer = balanced(a, b, clock=clock)

    async def go() -> None:
        await balancer.start()
        await balancer.generate(req("drain"))
        clock.now += 1
        a.failure, a.gate = None, asyncio.Event()
        probe = asyncio.create_task(balancer.generate(req("probe")))
        await settle()
        probe.cancel()  # the attempt's timeout, say
        with pytest.raises(asyncio.CancelledError):
            await probe
        a.gate = None
        assert (await balancer.generate(req("probe-2"))).text == "a:probe-2"

    asyncio.run(go())
    assert state(balancer, "a") == "healthy"


# ------------------------------------------------------------------------------ nothing left


def test_when_every_endpoint_is_down_the_error_is_retryable_and_names_them() -> None:
    clock = FakeClock()
    a, b = Fake("grpc://h1:8001", clock=clock), Fake("grpc://h2:8001", clock=clock)
    a.failure = errors.ConnectionLost("refused by h1")
    b.failure = errors.RequestTimeout("h2 is silent")
    balancer = balanced(a, b, clock=clock)

    async def go() -> tuple[BaseException, BaseException]:
        await balancer.start()
        with pytest.raises(errors.BackendError) as first:
            await balancer.generate(req(1))
        clock.now += 0.25
        with pytest.raises(errors.BackendError) as second:
            await balancer.generate(req(2))
        return first.value, second.value

    first, second = asyncio.run(go())
    assert isinstance(first, errors.RequestTimeout)  # "a" failed, then "b" failed: b's error goes up
    assert isinstance(second, errors.ConnectionLost) and isinstance(second, errors.RetryableError)
    message = str(second)
    assert "all 2 endpoint(s) are down" in message and "grpc://h1:8001" in message and "grpc://h2:8001" in message
    assert "refused by h1" in message and "h2 is silent" in message
    assert second.retry_after == pytest.approx(0.75)
    assert (len(a.calls), len(b.calls)) == (1, 1)


def test_a_model_stops_only_when_every_endpoint_failed_for_good() -> None:
    clock = FakeClock()
    a, b = Fake("a", clock=clock), Fake("b", clock=clock)
    a.failure = errors.AuthError("401 on a")
    b.failure = errors.ConnectionLost("b restarting")
    balancer = balanced(a, b, clock=clock)

    async def go() -> None:
        await balancer.start()
        with pytest.raises(errors.ConnectionLost):  # b may come back: keep going
            await balancer.generate(req(1))
        clock.now += 1
        b.failure = errors.AuthError("401 on b")
        a.failure = errors.AuthError("401 on a")
        with pytest.raises(errors.AuthError) as stop:  # the probe of "a", then of "b": both refuse
            await balancer.generate(req(2))
        assert stop.value.stops_model
        with pytest.raises(EndpointsUnavailable) as later:
            await balancer.generate(req(3))
        assert later.value.stops_model and "401 on a" in str(later.value) and "401 on b" in str(later.value)

    asyncio.run(go())

    # One endpoint broken for good while the other is only down for now: a retryable error.
    clock = FakeClock()
    c, d = Fake("c", clock=clock), Fake("d", clock=clock)
    c.failure = errors.ConnectionLost("c restarting")
    d.failure = errors.ModelNotFound("no model on d")
    balancer = balanced(c, d, clock=clock)
    with pytest.raises(errors.ConnectionLost) as caught:  # c first, then d
        asyncio.run(balancer.generate(req()))
    assert not caught.value.stops_model and "no model on d" in str(caught.value) and "c restarting" in str(caught.value)
    assert isinstance(caught.value.__cause__, errors.ModelNotFound)


# ------------------------------------------------------------------------------ start and close


def test_start_skips_endpoints_that_do_not_start_and_probes_them_later() -> None:
    clock = FakeClock()
    a, b = Fake("a", clock=clock), Fake("b", clock=clock)
    a.start_failure = errors.ModelNotFound("model not loaded on a yet")
    balancer = balanced(a, b, clock=clock)

    async def go() -> list[str]:
        await balancer.start()
        assert state(balancer, "a") == "down" and "not loaded" in balancer.stats()[0].last_error
        texts = [(await balancer.generate(req(n))).text for n in range(3)]
        clock.now += 1
        texts.append((await balancer.generate(req("probe"))).text)  # a still fails to start: fails over
        clock.now += 2
        a.start_failure = None
        texts.append((await balancer.generate(req("probe-2"))).text)
        return texts

    assert asyncio.run(go()) == ["b:0", "b:1", "b:2", "b:probe", "a:probe-2"]
    assert a.starts == 3 and b.starts == 1 and state(balancer, "a") == "healthy"


def test_start_fails_only_when_no_endpoint_starts_and_names_each_problem() -> None:
    a, b = Fake("grpc://h1:8001"), Fake("grpc://h2:8001")
    a.start_failure = errors.ConnectionLost("h1 refused the connection")
    b.start_failure = errors.AuthError("h2 wants a key")
    balancer = balanced(a, b)
    with pytest.raises(EndpointsUnavailable) as caught:
        asyncio.run(balancer.start())
    message = str(caught.value)
    assert "no endpoint started" in message and "'m'" in message
    assert "grpc://h1:8001: connection: h1 refused the connection" in message
    assert "grpc://h2:8001: auth: h2 wants a key" in message
    assert isinstance(caught.value, errors.GmaiError)


def test_generate_before_start_starts_each_endpoint_once_and_close_closes_all() -> None:
    a, b = Fake("a", latency=0.001), Fake("b", latency=0.001)
    balancer = BalancedBackend([a, b])

    async def go() -> None:
        await asyncio.gather(*(balancer.generate(req(n)) for n in range(10)))
        await balancer.close()

    asyncio.run(go())
    assert (a.starts, b.starts) == (1, 1) and (a.closes, b.closes) == (1, 1)


# ------------------------------------------------------------------------------ identity and specs


def test_identity_names_the_model_and_sorted_endpoints_never_the_one_that_served() -> None:
    a, b = Fake("http://b:8000/v1"), Fake("http://a:8000/v1")
    one, other = BalancedBackend([a, b]), BalancedBackend([Fake("http://a:8000/v1"), Fake("http://b:8000/v1")])
    expected = {"backend": "fake", "model": "m", "endpoint": "http://a:8000/v1,http://b:8000/v1"}
    assert dict(one.identity()) == dict(other.identity()) == expected
    a.failure = errors.ConnectionLost("down")
    assert asyncio.run(one.generate(req())).text.startswith("http://a")
    assert dict(one.identity()) == expected  # after a fail-over too
    with pytest.raises(errors.ConfigError, match="one model"):
        BalancedBackend([Fake("x"), Fake("y", model="other")])
    with pytest.raises(errors.ConfigError, match="twice"):
        BalancedBackend([Fake("x"), Fake("x")])


def test_a_spec_with_several_endpoints_builds_a_balancer_of_the_backends_own_class() -> None:
    pytest.importorskip("tritonclient")
    from gmai_client.backends.triton import TritonBackend

    spec = parse_model_spec("triton:echo@grpc://h2:8001, h1:8001", ["timeout=7", "rpm=100"])
    backend = registry.create(spec)
    assert isinstance(backend, BalancedBackend) and backend.name == "triton"
    inner = backend.backends
    assert all(isinstance(b, TritonBackend) and b.timeout == 7 for b in inner)
    assert [b.url for b in inner] == ["grpc://h2:8001", "grpc://h1:8001"]  # spec order kept for choice
    assert backend.identity()["endpoint"] == "grpc://h1:8001,grpc://h2:8001"
    swapped = registry.create(parse_model_spec("triton:echo@grpc://h1:8001,grpc://h2:8001", ["timeout=7"]))
    assert cache_key(key_fields(backend.identity(), req())) == cache_key(key_fields(swapped.identity(), req()))
    single = registry.create(parse_model_spec("triton:echo@grpc://h1:8001"))
    assert isinstance(single, TritonBackend)
    assert cache_key(key_fields(single.identity(), req())) != cache_key(key_fields(backend.identity(), req()))

    pytest.importorskip("openai")
    api = registry.create(parse_model_spec("openai:llava@http://a:8000/v1,http://b:8000/v1"))
    assert isinstance(api, BalancedBackend) and api.name == "openai"
    assert [b.identity()["endpoint"] for b in api.backends] == ["http://a:8000/v1", "http://b:8000/v1"]
    assert api.limit_scope()[2] == "OPENAI_API_KEY"

    for bad in ("triton:echo@h1:8001,,h2:8001", "triton:echo@h1:8001,h1:8001", "triton:echo@h1:8001,"):
        with pytest.raises(errors.ConfigError):
            registry.create(parse_model_spec(bad))
    assert split_endpoints(" a , b ") == ["a", "b"]


# ------------------------------------------------------------------------------ real Triton servers

RUN_TIMEOUT_S = 60  # a run here takes a second or two; a hang fails the test instead of the session


@dataclass
class EchoServer:
    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    ready: Path
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def endpoint(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def successes(self) -> int:
        """Requests the server answered for ``echo``, from its own statistics API."""
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")
        try:
            stats = client.get_inference_statistics("echo", as_json=True)
        finally:
            client.close()
        return int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _launch(folder: Path) -> EchoServer:
    """One PyTriton server serving ``echo``, started the way tests.conftest starts its own."""
    http_port, grpc_port = free_ports(2)
    ready, log = folder / "ready", folder / "server.log"
    command = [sys.executable, "-m", "gmai_client.testing.triton_server", "--http-port", str(http_port)]
    command += ["--grpc-port", str(grpc_port), "--ready-file", str(ready), "--bind", "echo=echo"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return EchoServer(process, grpc_port, http_port, ready, log)


@pytest.fixture(scope="module")
def echo_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EchoServer]]:
    """Three servers started at once: two share the traffic, the third is stopped mid-run."""
    pytest.importorskip("pytriton")
    pytest.importorskip("tritonclient")
    servers = [_launch(tmp_path_factory.mktemp(f"echo{n}")) for n in range(3)]
    try:
        for server in servers:
            while not server.ready.exists():
                if server.process.poll() is not None:
                    pytest.fail(f"a Triton server exited with {server.process.returncode}:\n{server.log.read_text()}")
                if time.monotonic() - server.started > START_TIMEOUT_S:
                    pytest.fail(f"a Triton server was not ready in {START_TIMEOUT_S} s:\n{server.log.read_text()}")
                time.sleep(0.05)
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[BalancedBackend]:
    """The balancers the runner builds from spec strings (the real registry builds them)."""
    built: list[BalancedBackend] = []
    create = registry.create

    def recording(spec, **kwargs):  # type: ignore[no-untyped-def]
        backend = create(spec, **kwargs)
        if isinstance(backend, BalancedBackend):
            built.append(backend)
        return backend

    monkeypatch.setattr(registry, "create", recording)
    return built


def _records(result: gmai_client.RunResult) -> list[dict]:
    lines = (result.run_dir / "records.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_a_run_spreads_its_requests_over_two_triton_servers(
    echo_servers: list[EchoServer], captured: list[BalancedBackend], small_tsv: Path, tmp_path: Path
) -> None:
    one, two, _ = echo_servers
    before = (one.successes(), two.successes())
    spec = f"triton:echo@{one.endpoint},{two.endpoint}"
    config = RunConfig.build([spec], data=str(small_tsv), out=tmp_path, progress=False, cache=False)
    result = asyncio.run(asyncio.wait_for(gmai_client.run(config), RUN_TIMEOUT_S))

    records = _records(result)
    assert len(records) == 60 and all(r["status"] == "ok" for r in records)
    served = (one.successes() - before[0], two.successes() - before[1])
    assert sum(served) == 60 and min(served) >= 5, served  # both servers took a real share
    [balancer] = captured
    stats = {s.endpoint: s for s in balancer.stats()}
    assert (stats[one.endpoint].requests, stats[two.endpoint].requests) == served
    assert all(s.state == "healthy" and s.errors == 0 and s.mean_latency_s for s in stats.values())
    models = json.loads((result.run_dir / "config.json").read_text())["config"]["models"]
    assert models[0]["endpoint"] == f"{one.endpoint},{two.endpoint}"
    # metrics.json says where the requests went
    run_figures = json.loads((result.run_dir / "metrics.json").read_text())["run"]["models"]["echo"]  # its label
    assert [(p["endpoint"], p["requests"]) for p in run_figures["placement"]] == [
        (one.endpoint, served[0]),
        (two.endpoint, served[1]),
    ]


def test_a_server_stopped_mid_run_costs_no_item(
    echo_servers: list[EchoServer], captured: list[BalancedBackend], tmp_path: Path
) -> None:
    survivor, _, victim = echo_servers
    items = 400
    data = write_tsv(tmp_path / "items.tsv", items, seed=5, image_size=16)
    spec = f"triton:echo@{survivor.endpoint},{victim.endpoint}"
    config = RunConfig.build([spec], data=str(data), out=tmp_path / "runs", progress=False, cache=False)
    stopped_at: list[int] = []

    async def go() -> gmai_client.RunResult:
        run = asyncio.create_task(asyncio.wait_for(gmai_client.run(config), RUN_TIMEOUT_S))
        while not run.done():
            await asyncio.sleep(0.002)
            if captured and not stopped_at and captured[0].stats()[1].requests >= 25:
                victim.process.send_signal(signal.SIGTERM)  # stops accepting while the run goes on
                stopped_at.append(sum(s.requests for s in captured[0].stats()))
        return await run

    result = asyncio.run(go())
    assert stopped_at and stopped_at[0] < items // 2, stopped_at

    records = _records(result)
    counts = Counter(r["index"] for r in records)
    assert len(counts) == items and set(counts.values()) == {1}  # every item, exactly once
    assert not [r for r in records if r["status"] == "error"]
    [balancer] = captured
    alive, dead = balancer.stats()
    assert dead.errors >= 1 and dead.failovers >= 1 and dead.state != "healthy", dead
    answered = (alive.requests - alive.errors) + (dead.requests - dead.errors)
    assert answered == items  # no request answered twice
    assert alive.requests - alive.errors > items // 2
    victim.process.wait(timeout=30)


def test_an_endpoint_that_does_not_start_is_skipped_and_named(
    echo_servers: list[EchoServer], captured: list[BalancedBackend], small_tsv: Path, tmp_path: Path
) -> None:
    live = echo_servers[0]
    dead = f"grpc://127.0.0.1:{free_ports(1)[0]}"
    config = RunConfig.build(
        [f"triton:echo@{dead},{live.endpoint}"], data=str(small_tsv), out=tmp_path, progress=False, cache=False
    )
    result = asyncio.run(asyncio.wait_for(gmai_client.run(config), RUN_TIMEOUT_S))
    assert len(_records(result)) == 60 and all(r["status"] == "ok" for r in _records(result))
    down, up = captured[0].stats()
    assert down.state != "healthy" and "cannot reach Triton" in down.last_error and up.requests >= 60

    other_dead = f"grpc://127.0.0.1:{free_ports(1)[0]}"
    config = RunConfig.build(
        [f"triton:echo@{dead},{other_dead}"], data=str(small_tsv), out=tmp_path / "none", progress=False, cache=False
    )
    [outcome] = asyncio.run(asyncio.wait_for(gmai_client.run(config), RUN_TIMEOUT_S)).outcomes
    assert "could not start" in outcome.stopped and dead in outcome.stopped and other_dead in outcome.stopped


def test_one_slow_answer_does_not_keep_an_endpoint_out_for_good() -> None:
    clock = FakeClock()
    a, b = Fake("a", latency=0.010, clock=clock), Fake("b", latency=1.0, clock=clock)  # b: a cold start
    balancer = balanced(a, b, clock=clock)

    async def go() -> None:
        await balancer.start()
        await balancer.generate(req("warm-a"))
        await balancer.generate(req("cold-b"))  # untried b gets tried, and answers slowly once
        b.latency = 0.010  # from now on as fast as a
        for n in range(RESAMPLE_AFTER):
            assert (await balancer.generate(req(n))).text == f"a:{n}"  # b looks 100x slower: passed over
        assert (await balancer.generate(req("resample"))).text == "b:resample"  # stale: scored as untried
        assert balancer.stats()[1].ewma_latency_s == pytest.approx(0.010)  # its fresh answer replaced it

    asyncio.run(go())

"""Is the runner the bottleneck? The full runner versus a bare asyncio loop, same backend, same server.

    python benchmarks/runner_overhead.py [--items 1000] [--concurrency 16 64 256] [--repeats 3]
                                         [--latency 0.05] [--image-size 512] [--data synthetic|sample|FILE]
                                         [--profile C] [--keep]

The same ``--items`` GMAI-format items (default: synthetic rows with real-size 512 px PNGs from
``gmai_client.testing.synthetic.write_tsv``; ``--data sample`` takes the bundled 300-item sample) are sent
to the fake OpenAI-compatible API, run out of process (``python -m gmai_client.testing.fake_api``
on 127.0.0.1 with a fixed ``--latency``, answering every item correctly from an oracle), two ways:

* **runner**: ``gmai_client.run(RunConfig(openai:fake@URL, data=TSV, limit=N, concurrency=C,
  cache=False, progress=False))``: reading and parsing the TSV in a thread, the bounded queue, the
  dispatcher (retry policy, adaptive concurrency), scoring, records.jsonl, then metrics and reports;
* **bare**: the requests built beforehand, then ``asyncio.gather`` over ``OpenAIBackend.generate``
  behind an ``asyncio.Semaphore(C)``: nothing but the SDK and the network.

Both use the same ``OpenAIBackend`` class (a subclass that only timestamps its first call and last
return). items/s is measured over the request phase (first request sent to last answer back), the
runner's fixed costs (start-up before its first request; metrics, reports and plots after its
last answer) are shown apart, and so is the whole wall time. The target (issue "runner is never
the bottleneck") is runner/bare >= 0.90 on request-phase items/s at every concurrency.

Each setting runs ``--repeats`` times, runner and bare alternating which goes first; the medians
are reported, and the ratio is the median of the per-repeat ratios (each ratio compares two runs a
few seconds apart on this shared 2-core machine). CPU seconds of this process and of the fake
server over each run are shown as % of one core: a server near 100% would mean the server, not
the client, set the pace. ``--profile C`` also runs the runner once at concurrency C under
pyinstrument (if installed) and writes benchmarks/results/runner_overhead_profile.txt.

Prints a table; writes benchmarks/results/runner_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

TARGET = 0.90


@dataclass
class Measured:
    mode: str  # "runner" or "bare"
    concurrency: int
    repeat: int
    items: int
    ok: int
    wall_s: float
    window_s: float  # first request sent -> last answer back
    setup_s: float  # start -> first request (runner: read config, open data, start workers)
    tail_s: float  # last answer -> done (runner: records, metrics, reports, plots)
    items_per_s: float  # items / window_s
    items_per_s_wall: float
    client_cpu_pct: float  # this process, % of one core over the wall time
    client_cpu_ms_per_item: float  # this process's CPU over the request phase, per item
    server_cpu_pct: float  # the fake API process, % of one core over the wall time
    server_requests: int


def timed_backend_class():
    from gmai_client.backends.openai import OpenAIBackend

    class TimedOpenAIBackend(OpenAIBackend):
        """OpenAIBackend that notes when its first request left and its last answer came back."""

        first: float | None = None
        last: float = 0.0
        cpu_first: float = 0.0
        cpu_last: float = 0.0

        async def generate(self, request):
            if self.first is None:
                self.first, self.cpu_first = time.perf_counter(), _common.self_cpu_s()
            try:
                return await super().generate(request)
            finally:
                self.last, self.cpu_last = time.perf_counter(), _common.self_cpu_s()

    return TimedOpenAIBackend


async def run_bare(requests, concurrency: int, url: str) -> tuple[float, float, float, int]:
    """(wall, first, last, answered ok, CPU s between first and last) of a gather over generate behind a semaphore."""
    backend = timed_backend_class()("fake", endpoint=url)
    await backend.start()
    gate = asyncio.Semaphore(concurrency)

    async def one(request):
        async with gate:
            return await backend.generate(request)

    started = time.perf_counter()
    try:
        responses = await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)
    finally:
        await backend.close()
    wall = time.perf_counter() - started
    ok = sum(1 for r in responses if not isinstance(r, BaseException))
    return wall, backend.first - started, backend.last - started, ok, backend.cpu_last - backend.cpu_first


async def run_runner(tsv: Path, n: int, concurrency: int, url: str, out: Path, name: str):
    """(wall, first, last, records ok, CPU s between first and last) of gmai_client.run over the TSV."""
    from gmai_client import run

    config = _common.run_config(f"openai:fake@{url}", tsv, n, concurrency, out, name)
    backend = timed_backend_class()("fake", endpoint=url)
    started = time.perf_counter()
    with _common.quiet():
        result = await run(config, backends={config.models[0].label: backend})
    wall = time.perf_counter() - started
    ok = sum(1 for r in result.records if r.status == "ok")
    return wall, backend.first - started, backend.last - started, ok, backend.cpu_last - backend.cpu_first


class InstantBackend:
    """Answers at once, without any network: what the runner alone can push through."""

    name = "instant"
    cacheable = False

    def identity(self):
        return {"backend": "instant", "model": "instant"}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, request):
        from gmai_client.types import Response, Usage

        return Response("The answer is (A).", usage=Usage(input_tokens=150, output_tokens=5), model="instant")


async def run_runner_instant(tsv: Path, n: int, concurrency: int, out: Path, name: str) -> tuple[float, float]:
    """(request-phase items/s, wall items/s) of the whole runner with an instant backend."""
    from gmai_client import run

    config = _common.run_config("instant", tsv, n, concurrency, out, name)
    backend = InstantBackend()
    marks: list[float] = []
    generate = backend.generate

    async def timed(request):
        marks.append(time.perf_counter())
        return await generate(request)

    backend.generate = timed  # type: ignore[method-assign]
    started = time.perf_counter()
    with _common.quiet():
        await run(config, backends={config.models[0].label: backend})
    wall = time.perf_counter() - started
    return (n - 1) / (marks[-1] - marks[0]), n / wall


def stage_costs(tsv: Path, n: int, work: Path, repeats: int = 3) -> dict[str, float]:
    """CPU milliseconds per item of each step the runner adds around a request (medians of passes)."""
    from gmai_client.backends._api import Holes, encode_body
    from gmai_client.backends.openai import OpenAIBackend
    from gmai_client.data.dataset import iter_items, open_dataset
    from gmai_client.policy.dispatch import Dispatcher
    from gmai_client.policy.limiter import AdaptiveConcurrency
    from gmai_client.policy.retry import RetryPolicy
    from gmai_client.protocol.prompt import build_request
    from gmai_client.protocol.scoring import score_answer
    from gmai_client.results.records import RecordWriter
    from gmai_client.types import Item, Response, Usage

    response = Response("The answer is (A).", usage=Usage(input_tokens=150, output_tokens=5), model="fake")
    estimator = OpenAIBackend("gpt-4o", endpoint="http://127.0.0.1:9/v1")
    body_of = estimator.request_body
    timings: dict[str, list[float]] = {}

    def note(name: str, seconds: float) -> None:
        timings.setdefault(name, []).append(1000 * seconds / n)

    for _ in range(repeats):
        started = time.process_time()
        items = [e for e in iter_items(open_dataset([tsv])) if isinstance(e, Item)][:n]
        note("read + parse TSV row (reader thread)", time.process_time() - started)
        started = time.process_time()
        requests = [build_request(item) for item in items]
        note("build_request (prompt, cheap image checks)", time.process_time() - started)
        started = time.process_time()
        for request in requests:
            holes = Holes()
            encode_body(body_of(request, request.images, embed=holes), holes.pieces)
        note("request body encoded (OpenAI wire format)", time.process_time() - started)
        started = time.process_time()
        for request in requests:
            estimator.estimate_input_tokens(request)
        note("input-token estimate (image headers)", time.process_time() - started)

        async def dispatch_all(requests=requests) -> None:
            dispatcher = Dispatcher(InstantBackend(), retry=RetryPolicy(), concurrency=AdaptiveConcurrency(64))
            for request in requests:
                await dispatcher.send(request)

        started = time.process_time()
        asyncio.run(dispatch_all())
        note("Dispatcher.send (retry, concurrency slot)", time.process_time() - started)
        started = time.process_time()
        records = [score_answer(item, "fake", response) for item in items]
        note("score_answer", time.process_time() - started)
        path = work / "stage_records.jsonl"
        path.unlink(missing_ok=True)
        started = time.process_time()
        with RecordWriter(path) as writer:
            for record in records:
                writer.write(record)
        note("RecordWriter.write (JSON, flush)", time.process_time() - started)
    return {name: _common.median(values) for name, values in timings.items()}


def measure(mode: str, concurrency: int, repeat: int, n: int, server, job) -> Measured:
    requests_before = server.stats()["requests"]
    server_cpu, client_cpu = server.cpu_s(), _common.self_cpu_s()
    wall, first, last, ok, window_cpu = asyncio.run(job())
    server_cpu, client_cpu = server.cpu_s() - server_cpu, _common.self_cpu_s() - client_cpu
    window = last - first
    return Measured(
        mode,
        concurrency,
        repeat,
        n,
        ok,
        wall,
        window,
        first,
        wall - last,
        n / window,
        n / wall,
        100 * client_cpu / wall,
        1000 * window_cpu / n,
        100 * server_cpu / wall,
        server.stats()["requests"] - requests_before,
    )


def run_runner_instant_sync(tsv: Path, n: int, c: int, out: Path, name: str) -> tuple[float, float]:
    return asyncio.run(run_runner_instant(tsv, n, c, out, name))


def profile_runner(tsv: Path, n: int, concurrency: int, url: str, out: Path) -> str | None:
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("--profile: pyinstrument is not installed (pip install pyinstrument); skipped")
        return None
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    asyncio.run(run_runner(tsv, n, concurrency, url, out, f"profile-c{concurrency}"))
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    path = _common.RESULTS_DIR / "runner_overhead_profile.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(_common.ROOT)}")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.05, help="fake server latency in seconds (default 0.05)")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--data", default="synthetic", help="synthetic (default), sample, or a TSV path")
    parser.add_argument("--profile", type=int, default=None, metavar="C", help="also profile the runner at C")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from gmai_client.data.splits import sample_path
    from gmai_client.protocol.prompt import build_request

    rows: list[Measured] = []
    with _common.workdir("gmai-overhead-", args.keep) as work:
        if args.data == "synthetic":
            tsv = _common.synthetic_tsv(work / "items.tsv", args.items, args.image_size)
        else:
            tsv = sample_path() if args.data == "sample" else Path(args.data)
        items = _common.load_items(tsv, args.items)
        n = len(items)
        requests = [build_request(item) for item in items]
        image_bytes = sum(len(image.data) for r in requests for image in r.images) / n
        answers = _common.write_answers(work / "answers.json", items)
        print(
            f"{n} items from {args.data} ({image_bytes / 1000:.0f} kB of PNG per item), "
            f"fake API latency {args.latency * 1000:.0f} ms, out of process",
            flush=True,
        )
        with _common.FakeServer(
            latency=args.latency, args=["--answers", str(answers)], log=work / "server.log"
        ) as server:
            url = server.openai_url
            asyncio.run(run_bare(requests[:64], 16, url))  # warm-up: imports, first connections
            for repeat in range(args.repeats):
                for c in args.concurrency:
                    order = ("bare", "runner") if (repeat + args.concurrency.index(c)) % 2 == 0 else ("runner", "bare")
                    for mode in order:
                        if mode == "bare":
                            job = lambda c=c: run_bare(requests, c, url)  # noqa: E731
                        else:
                            job = lambda c=c, r=repeat: run_runner(tsv, n, c, url, work / "runs", f"c{c}-r{r}")  # noqa: E731
                        m = measure(mode, c, repeat, n, server, job)
                        rows.append(m)
                        print(
                            f"  repeat {repeat + 1}/{args.repeats} c={c:<3} {mode:<6} {m.items_per_s:7.0f} items/s "
                            f"(wall {m.wall_s:5.2f} s, ok {m.ok}/{n}, client CPU {m.client_cpu_pct:3.0f}%, "
                            f"server CPU {m.server_cpu_pct:3.0f}%)",
                            flush=True,
                        )
            profile = profile_runner(tsv, n, args.profile, url, work / "runs") if args.profile else None
        stages = stage_costs(tsv, n, work)
        instant = {}
        for c in args.concurrency:
            runs = [
                run_runner_instant_sync(tsv, n, c, work / "runs", f"instant-c{c}-r{r}") for r in range(args.repeats)
            ]
            instant[c] = (_common.median(r[0] for r in runs), _common.median(r[1] for r in runs))

    summary = []
    for c in args.concurrency:

        def med(mode: str, name: str, c: int = c) -> float:
            return _common.median(getattr(m, name) for m in rows if m.mode == mode and m.concurrency == c)

        ratios = []
        wall_ratios = []
        for repeat in range(args.repeats):
            pair = {m.mode: m for m in rows if m.concurrency == c and m.repeat == repeat}
            ratios.append(pair["runner"].items_per_s / pair["bare"].items_per_s)
            wall_ratios.append(pair["runner"].items_per_s_wall / pair["bare"].items_per_s_wall)
        ratio = _common.median(ratios)
        summary.append(
            {
                "concurrency": c,
                "ideal_items_per_s": c / args.latency,
                "bare_items_per_s": med("bare", "items_per_s"),
                "runner_items_per_s": med("runner", "items_per_s"),
                "ratio": ratio,
                "ratios": [round(r, 3) for r in ratios],
                "runner_setup_s": med("runner", "setup_s"),
                "runner_tail_s": med("runner", "tail_s"),
                "bare_items_per_s_wall": med("bare", "items_per_s_wall"),
                "runner_items_per_s_wall": med("runner", "items_per_s_wall"),
                "ratio_wall": _common.median(wall_ratios),
                "bare_client_cpu_pct": med("bare", "client_cpu_pct"),
                "runner_client_cpu_pct": med("runner", "client_cpu_pct"),
                "bare_server_cpu_pct": med("bare", "server_cpu_pct"),
                "runner_server_cpu_pct": med("runner", "server_cpu_pct"),
                "runner_alone_items_per_s": instant[c][0],
                "runner_alone_items_per_s_wall": instant[c][1],
                "bare_client_cpu_ms_per_item": _common.median(
                    m.client_cpu_ms_per_item for m in rows if m.mode == "bare" and m.concurrency == c
                ),
                "runner_client_cpu_ms_per_item": _common.median(
                    m.client_cpu_ms_per_item for m in rows if m.mode == "runner" and m.concurrency == c
                ),
                "all_ok": all(m.ok == n and m.server_requests == n for m in rows if m.concurrency == c),
                "target_met": ratio >= TARGET,
            }
        )

    print()
    print(
        f"runner vs bare loop: {n} items, {args.latency * 1000:.0f} ms fake latency, median of {args.repeats} "
        f"({_common.machine()['cpu_count']} CPUs, shared)"
    )
    print(
        _common.table(
            [
                "conc",
                "ideal/s",
                "bare/s",
                "runner/s",
                "ratio",
                "setup s",
                "tail s",
                "ratio wall",
                "CPU bare cl/srv %",
                "CPU runner cl/srv %",
                "target",
            ],
            [
                [
                    s["concurrency"],
                    s["ideal_items_per_s"],
                    s["bare_items_per_s"],
                    s["runner_items_per_s"],
                    f"{s['ratio']:.2f}",
                    s["runner_setup_s"],
                    s["runner_tail_s"],
                    f"{s['ratio_wall']:.2f}",
                    f"{s['bare_client_cpu_pct']:.0f}/{s['bare_server_cpu_pct']:.0f}",
                    f"{s['runner_client_cpu_pct']:.0f}/{s['runner_server_cpu_pct']:.0f}",
                    ("PASS" if s["target_met"] else "FAIL") + ("" if s["all_ok"] else " (errors!)"),
                ]
                for s in summary
            ],
        )
    )
    print(
        "items/s over the request phase (first request to last answer); setup/tail: the runner's fixed "
        "costs before/after it; ratio wall: whole-run items/s ratio"
    )
    print()
    print("the runner alone (same items, an instant in-process backend, no network): items/s, median")
    print(
        _common.table(
            ["conc", "request phase/s", "wall/s", "client CPU ms/item bare", "runner"],
            [
                [
                    s["concurrency"],
                    s["runner_alone_items_per_s"],
                    s["runner_alone_items_per_s_wall"],
                    s["bare_client_cpu_ms_per_item"],
                    s["runner_client_cpu_ms_per_item"],
                ]
                for s in summary
            ],
        )
    )
    print()
    print("CPU ms per item of each step (offline, one thread, median of 3 passes over the same items)")
    print(_common.table(["step", "ms/item"], [[name, value] for name, value in stages.items()]))
    _common.write_result(
        "runner_overhead",
        {
            "command": "python benchmarks/runner_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "items": n,
            "data": args.data,
            "image_size": args.image_size if args.data == "synthetic" else None,
            "png_bytes_per_item": round(image_bytes),
            "latency_s": args.latency,
            "repeats": args.repeats,
            "target_ratio": TARGET,
            "summary": summary,
            "stage_cpu_ms_per_item": stages,
            "runs": [asdict(m) for m in rows],
            "profile": profile,
            "note": "2 shared CPU cores: the client, the fake server and other people's work compete; compare "
            "ratios within one run",
        },
        args.out,
    )
    return 0 if all(s["target_met"] for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())

"""A rerun served from the response cache, and a resume of a half-finished run: how fast?

    python benchmarks/cache_resume.py [--items 4550] [--image-size 96] [--concurrency 64]
                                      [--latency 0.005] [--repeats 3]

1. **fill**: ``--items`` synthetic items (default 4,550, the size of VAL; small images, so the fill
   is quick) through the whole runner (openai backend at the fake API, out of process, with a low
   ``--latency``), cache on (a fresh SQLite file in a temp folder).
2. **cached rerun**: the same config into a new run folder (another ``run_name``), so nothing is
   skipped as finished and every item is looked up in the cache. The fake API's request counter
   must not move. Target: >= 1,000 items/s.
3. **resume**: a new run folder whose records.jsonl holds the first half of the fill run's lines
   (what an interrupted run leaves), the same config, and an empty cache, so the other half goes
   to the fake API. Measured: time to the first new request (the backend's first call), the
   requests sent (must be half), and the time until done.

Timing: records are stamped as the runner writes them (``RecordWriter`` subclassed in the
runner's namespace; nothing else changes), so each run splits into set-up (start to first
record), streaming (first to last record) and tail (last record to the end: metrics, reports,
plots). items/s is given over the streaming part and over the whole wall time. The cached rerun
and the resume run ``--repeats`` times each; medians. Prints a table and writes
benchmarks/results/cache_resume.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

TARGET_CACHED = 1000.0


@dataclass
class Phase:
    name: str
    items: int  # records written by this run
    wall_s: float
    setup_s: float  # start -> first record
    streaming_s: float  # first -> last record
    tail_s: float  # last record -> run() returned
    first_request_s: float | None  # start -> the backend's first call (None: no call)
    requests: int  # requests the fake API received during the run
    cached: int  # records served from the cache
    skipped: int  # items skipped as finished (resume)

    @property
    def items_per_s(self) -> float:
        return (self.items - 1) / self.streaming_s if self.streaming_s > 0 else float("nan")

    @property
    def items_per_s_wall(self) -> float:
        return self.items / self.wall_s


class _Stamps:
    first: float | None = None
    last: float = 0.0
    count: int = 0


def stamped_writer_class():
    from gmai_client.results.records import RecordWriter

    class StampedRecordWriter(RecordWriter):
        def write(self, record) -> None:
            super().write(record)
            now = time.perf_counter()
            if _Stamps.first is None:
                _Stamps.first = now
            _Stamps.last = now
            _Stamps.count += 1

    return StampedRecordWriter


async def one_run(
    name: str, tsv: Path, n: int, url: str, out: Path, cache_path: Path, concurrency: int, server
) -> Phase:
    import gmai_client.runner.loop as runner_module
    from gmai_client import run

    config = _common.run_config(f"openai:fake@{url}", tsv, n, concurrency, out, name, cache=True, cache_path=cache_path)
    backend = _common.recording_backend("fake", url)
    runner_module.RecordWriter = stamped_writer_class()
    _Stamps.first, _Stamps.last, _Stamps.count = None, 0.0, 0
    before = server.stats()["requests"]
    started = time.perf_counter()
    with _common.quiet():
        result = await run(config, backends={config.models[0].label: backend})
    ended = time.perf_counter()
    outcome = result.outcomes[0]
    first = _Stamps.first if _Stamps.first is not None else ended
    return Phase(
        name=name.split("-")[0],
        items=_Stamps.count,
        wall_s=ended - started,
        setup_s=first - started,
        streaming_s=_Stamps.last - first,
        tail_s=ended - _Stamps.last,
        first_request_s=(min(s for s, *_ in backend.log) - started) if backend.log else None,
        requests=server.stats()["requests"] - before,
        cached=outcome.cache_hits,
        skipped=outcome.skipped,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=4550)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    phases: list[Phase] = []
    with _common.workdir("gmai-cache-", args.keep) as work:
        tsv = _common.synthetic_tsv(work / "items.tsv", args.items, args.image_size)
        n = args.items
        runs = work / "runs"
        cache = work / "cache" / "responses.sqlite"
        with _common.FakeServer(latency=args.latency, log=work / "server.log") as server:
            url = server.openai_url

            def go(name: str, cache_path: Path) -> Phase:
                phase = asyncio.run(one_run(name, tsv, n, url, runs, cache_path, args.concurrency, server))
                phases.append(phase)
                print(
                    f"  {name:<12} {phase.items:>5} records in {phase.wall_s:6.2f} s "
                    f"({phase.items_per_s:,.0f} items/s streaming), {phase.requests} requests, "
                    f"{phase.cached} cached, {phase.skipped} skipped",
                    flush=True,
                )
                return phase

            print(f"{n} items, fake API latency {args.latency * 1000:g} ms, concurrency {args.concurrency}", flush=True)
            go("fill", cache)
            for repeat in range(args.repeats):
                go(f"cached-{repeat}", cache)
            half = n // 2
            lines = (runs / "fill" / "records.jsonl").read_text(encoding="utf-8").split("\n")
            lines = [line + "\n" for line in lines if line]  # "\n" only: answers may hold U+2028...
            for repeat in range(args.repeats):
                folder = runs / f"resume-{repeat}"
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                (folder / "records.jsonl").write_text("".join(lines[:half]), encoding="utf-8")
                go(f"resume-{repeat}", work / f"cache-resume-{repeat}" / "responses.sqlite")

    def med(name: str, attr: str) -> float:
        values = [getattr(p, attr) for p in phases if p.name == name]
        return _common.median(v for v in values if v is not None)

    summary: dict[str, Any] = {}
    for name in ("fill", "cached", "resume"):
        summary[name] = {
            attr: med(name, attr)
            for attr in (
                "items",
                "wall_s",
                "setup_s",
                "streaming_s",
                "tail_s",
                "requests",
                "cached",
                "skipped",
                "items_per_s",
                "items_per_s_wall",
            )
        }
        starts = [p.first_request_s for p in phases if p.name == name and p.first_request_s is not None]
        summary[name]["first_request_s"] = _common.median(starts) if starts else None
    cached = summary["cached"]
    resume = summary["resume"]
    cached_ok = cached["items_per_s"] >= TARGET_CACHED and all(p.requests == 0 for p in phases if p.name == "cached")
    resume_ok = all(p.requests == n - n // 2 and p.skipped == n // 2 for p in phases if p.name == "resume")

    def fmt(value: float | None, spec: str = ".2f") -> str:
        return "-" if value is None else format(value, spec)

    print()
    print(
        f"cache and resume: {n} items ({args.image_size} px), concurrency {args.concurrency}, "
        f"fake API {args.latency * 1000:g} ms, median of {args.repeats} for cached/resume"
    )
    print(
        _common.table(
            [
                "run",
                "records",
                "requests",
                "cache hits",
                "skipped",
                "first request s",
                "setup s",
                "streaming s",
                "tail s",
                "wall s",
                "items/s streaming",
                "items/s wall",
            ],
            [
                [
                    name,
                    int(s["items"]),
                    int(s["requests"]),
                    int(s["cached"]),
                    int(s["skipped"]),
                    fmt(s["first_request_s"]),
                    fmt(s["setup_s"]),
                    fmt(s["streaming_s"]),
                    fmt(s["tail_s"]),
                    fmt(s["wall_s"]),
                    fmt(s["items_per_s"], ",.0f"),
                    fmt(s["items_per_s_wall"], ",.0f"),
                ]
                for name, s in summary.items()
            ],
        )
    )
    print(
        f"cached rerun: {cached['items_per_s']:,.0f} items/s streaming, {cached['items_per_s_wall']:,.0f} items/s "
        f"over its whole wall time (target >= {TARGET_CACHED:,.0f} items/s: {'PASS' if cached_ok else 'FAIL'})"
    )
    print(
        f"resume of a half-finished run: first new request after {fmt(resume['first_request_s'])} s, done after "
        f"{resume['wall_s']:.2f} s ({resume['wall_s'] - resume['tail_s']:.2f} s to its last record); "
        f"sent exactly the unfinished half: {'yes' if resume_ok else 'NO'}"
    )
    _common.write_result(
        "cache_resume",
        {
            "command": "python benchmarks/cache_resume.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "items": n,
            "image_size": args.image_size,
            "concurrency": args.concurrency,
            "latency_s": args.latency,
            "repeats": args.repeats,
            "summary": summary,
            "target_cached_items_per_s": TARGET_CACHED,
            "cached_target_met": cached_ok,
            "resume_sent_only_unfinished": resume_ok,
            "runs": [
                {**asdict(p), "items_per_s": p.items_per_s, "items_per_s_wall": p.items_per_s_wall} for p in phases
            ],
        },
        args.out,
    )
    return 0 if cached_ok and resume_ok else 1


if __name__ == "__main__":
    sys.exit(main())

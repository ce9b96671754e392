"""Throughput of the Ray executor with 1 vs 2 actors (tiny random Llava, CPU, 1 torch thread each).

    python benchmarks/ray_scaling.py [--items 256] [--concurrency 32] [--actors 1 2]
                                     [--max-batch-size 8] [--max-tokens 16] [--repeats 5] [--no-local]

Builds the tiny Llava offline, turns the first ``--items`` items of the bundled sample into real
requests (prompt template, PNG bytes), starts a local Ray instance, and sends every request through
a ``RayTorchBackend`` of each actor count with ``--concurrency`` requests in flight (what the
runner's ``--concurrency`` bounds; the same for every setting), after the actors have loaded their
models and answered a warm-up burst. For reference it also measures the local executor
(``TorchBackend`` in this process, one torch thread). Prints items/s and the speed-up over one
actor, checks that every setting gives the same answers (greedy decoding), and writes
benchmarks/results/ray_scaling.json.

The machine may be shared, so the settings are measured in turn: pass r of every setting, then
pass r+1, ``--repeats`` times; a burst of load from elsewhere then hits all of them alike. Each
row reports the median pass and, as ``paired``, the median of (pass r / the 1-actor pass r).
All settings' actors are up at once for this, so the Ray instance gets one logical CPU per actor
(Ray's CPUs are bookkeeping; torch is held to one thread per actor either way).

The driver (this process: Ray submission, the asyncio loop) shares the cores with the actors,
so 2 actors on a 2-core machine cannot quite reach 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ray_scaling.json"


@dataclass(frozen=True)
class Row:
    executor: str  # "local" or "ray"
    actors: int  # 0 for the local executor
    items_per_s: float  # median over the passes
    passes_items_per_s: tuple[float, ...]
    latency_p50_ms: float  # of the median pass
    latency_p95_ms: float
    served_per_actor: tuple[int, ...]  # over the timed passes
    mean_batch: float  # requests per model.generate call, over the timed passes
    speedup_vs_1_actor: float = 0.0  # median items/s over the 1-actor median
    paired_speedups: tuple[float, ...] = ()  # pass r over the 1-actor pass r (interleaved passes)
    same_answers: bool = True
    others_cpu_share: float = 0.0  # median share of the machine's cores used by other processes
    passes_others_cpu_share: tuple[float, ...] = ()


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat; 0 off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def processes_cpu_s(pids: list[int]) -> float:
    """CPU seconds the given processes have used; one that has exited counts nothing."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += _common.proc_cpu_s(pid)
    return total


async def counters(backend) -> list[tuple[int, int]]:
    """(requests served, model.generate calls) per actor, or for the local backend itself."""
    if hasattr(backend, "actor_info"):
        return [(info["served"], info["generate_calls"]) for info in await backend.actor_info()]
    return [(backend.stats.items, backend.stats.generate_calls)]


async def interleaved(backends: dict[str, Any], requests, args) -> dict[str, dict[str, Any]]:
    """Start every backend (not timed), warm each up, then pass r of every setting in turn."""
    await asyncio.gather(*(backend.start() for backend in backends.values()))
    try:
        for backend in backends.values():
            await _common.timed_pass(backend, requests[: 4 * args.concurrency], args.concurrency)  # warm-up
        before = {key: await counters(backend) for key, backend in backends.items()}
        passes: dict[str, list[tuple[float, list[float], list[str]]]] = {key: [] for key in backends}
        others: dict[str, list[float]] = {key: [] for key in backends}
        ours = [os.getpid()] + [
            slot.info["pid"] for backend in backends.values() for slot in getattr(backend, "slots", [])
        ]
        for _ in range(args.repeats):
            for key, backend in backends.items():
                machine, mine = machine_busy_s(), processes_cpu_s(ours)
                passes[key].append(await _common.timed_pass(backend, requests, args.concurrency))
                busy = (machine_busy_s() - machine) - (processes_cpu_s(ours) - mine)
                others[key].append(max(0.0, busy) / (args.cores * passes[key][-1][0]))
        after = {key: await counters(backend) for key, backend in backends.items()}
    finally:
        for backend in backends.values():
            await backend.close()
    return {
        key: {"passes": passes[key], "others": others[key], "before": before[key], "after": after[key]}
        for key in backends
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-local", action="store_true", help="skip the local-executor reference row")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import ray
    import torch
    import transformers

    from gmai_client.backends import ray as ray_backend
    from gmai_client.backends.torch import TorchBackend
    from gmai_client.config import parse_model_spec
    from gmai_client.testing.tiny_models import build_tiny_llava

    torch.set_num_threads(1)  # the local reference row: one torch thread, like each actor
    requests = _common.sample_requests(args.items, args.max_tokens)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    args.cores = cores
    # Every setting's actors are up at once so that passes can interleave: Ray's CPUs are
    # bookkeeping, so the instance gets one logical CPU per actor; torch threads stay 1 each.
    logical_cpus = max(cores, sum(args.actors))
    started = time.perf_counter()
    ray_backend.acquire_ray(None, num_cpus=logical_cpus)
    ray_s = time.perf_counter() - started
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = build_tiny_llava(Path(tmp) / "llava")
            options = [f"max_batch_size={args.max_batch_size}"]
            backends: dict[str, Any] = {}
            for actors in args.actors:
                spec = parse_model_spec(f"torch:{model_dir}", [*options, f"actors={actors}", "torch_threads=1"])
                backends[f"ray-{actors}"] = ray_backend.RayTorchBackend.from_spec(spec)
            if not args.no_local:
                backends["local"] = TorchBackend.from_spec(parse_model_spec(f"torch:{model_dir}", options))
            measured = asyncio.run(interleaved(backends, requests, args))
    finally:
        ray_backend.release_ray()

    rows: list[Row] = []
    reference = measured[next(iter(measured))]["passes"][0][2]
    base_key = "ray-1" if "ray-1" in measured else next(iter(measured))
    base_rates = [len(requests) / p[0] for p in measured[base_key]["passes"]]
    base = statistics.median(base_rates)
    for key, data in measured.items():
        passes = data["passes"]
        rates = [len(requests) / p[0] for p in passes]
        _, latencies, _ = sorted(passes, key=lambda p: p[0])[len(passes) // 2]
        served = tuple(b[0] - a[0] for a, b in zip(data["before"], data["after"], strict=True))
        calls = sum(b[1] - a[1] for a, b in zip(data["before"], data["after"], strict=True))
        rows.append(
            Row(
                executor="local" if key == "local" else "ray",
                actors=0 if key == "local" else int(key.split("-")[1]),
                items_per_s=statistics.median(rates),
                passes_items_per_s=tuple(round(r, 1) for r in rates),
                latency_p50_ms=1000 * statistics.median(latencies),
                latency_p95_ms=1000 * sorted(latencies)[round(0.95 * (len(latencies) - 1))],
                served_per_actor=served,
                mean_batch=sum(served) / max(1, calls),
                speedup_vs_1_actor=statistics.median(rates) / base,
                paired_speedups=tuple(round(r / b, 2) for r, b in zip(rates, base_rates, strict=True)),
                same_answers=all(p[2] == reference for p in passes),
                others_cpu_share=round(statistics.median(data["others"]), 2),
                passes_others_cpu_share=tuple(round(share, 2) for share in data["others"]),
            )
        )

    print(
        f"tiny Llava, {len(requests)} sample items, {args.max_tokens} new tokens, concurrency {args.concurrency}, "
        f"max_batch_size {args.max_batch_size}, 1 torch thread per actor, {cores} cores, "
        f"median of {args.repeats} interleaved passes"
    )
    print(
        f"{'executor':>8} {'actors':>6} {'items/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'batch':>5} "
        f"{'speed-up':>8} {'paired':>8} same {'others':>6}"
    )
    for row in rows:
        print(
            f"{row.executor:>8} {row.actors or '-':>6} {row.items_per_s:>8.1f} {row.latency_p50_ms:>7.1f} "
            f"{row.latency_p95_ms:>7.1f} {row.mean_batch:>5.1f} {row.speedup_vs_1_actor:>7.2f}x "
            f"{statistics.median(row.paired_speedups):>7.2f}x {'yes' if row.same_answers else 'NO ':>4} "
            f"{row.others_cpu_share:>6.0%}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "ray_scaling",
        "model": "tiny random Llava (gmai_client.testing.tiny_models.build_tiny_llava)",
        "items": len(requests),
        "max_tokens": args.max_tokens,
        "concurrency": args.concurrency,
        "max_batch_size": args.max_batch_size,
        "repeats": args.repeats,
        "torch_threads_per_actor": 1,
        "ray_start_s": round(ray_s, 2),
        "ray_logical_cpus": logical_cpus,
        "machine": {
            "cpu_count": os.cpu_count(),
            "cores_usable": cores,
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "ray": ray.__version__,
        },
        "rows": [asdict(row) for row in rows],
        "note": (
            "others_cpu_share: share of the machine's cores used by other processes (Ray's own daemons "
            "included) during the passes. Passes of every setting interleave (pass r of each, in turn) "
            "so that load from other processes hits them alike; paired = pass r over the 1-actor pass r. "
            "The driver shares the cores with the actors."
        ),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

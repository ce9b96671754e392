"""Micro-batching speed-up of the torch backend on a tiny random Llava, on whatever CPU this is.

    python benchmarks/torch_batching.py [--items 64] [--concurrency 16] [--batch-sizes 1 4 8 16]
                                        [--max-tokens 16] [--repeats 3] [--threads 1]

Builds the tiny Llava offline (gmai_client.testing.tiny_models), turns the first ``--items`` items
of the bundled sample into real requests (prompt template, PNG images), and sends them through
``TorchBackend`` with ``--concurrency`` requests in flight, once per ``max_batch_size``. Prints
items/s, per-item latency and the speed-up over batch size 1; writes the figures to
benchmarks/results/torch_batching.json. Each setting runs ``--repeats`` times and reports the
median, since the machine may be shared. It also checks that every batch size gives the same
answers as batch size 1 (greedy decoding), and says so.

The model is tiny, so a single generate call is dominated by per-step Python overhead rather
than arithmetic: that is the cost batching amortises, and on a real GPU model the same holds for
weight loads per decoding step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "torch_batching.json"


@dataclass(frozen=True)
class Row:
    max_batch_size: int
    items_per_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    generate_calls: int
    mean_batch: float
    speedup: float = 1.0
    same_answers_as_batch_1: bool = True


async def run_once(model_dir: Path, requests, batch_size: int, concurrency: int):
    from gmai_client.backends.torch import TorchBackend, TorchOptions

    backend = TorchBackend(str(model_dir), TorchOptions(max_batch_size=batch_size, max_wait_ms=10))
    await backend.start()  # the load is not part of the measurement
    try:
        await asyncio.gather(*(backend.generate(r) for r in requests[:batch_size]))  # warm-up
        backend.stats.generate_calls, backend.stats.batch_sizes = 0, []
        elapsed, latencies, answers = await _common.timed_pass(backend, requests, concurrency)
        stats = backend.stats
        return elapsed, latencies, stats.generate_calls, list(stats.batch_sizes), answers
    finally:
        await backend.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch
    import transformers

    from gmai_client.testing.tiny_models import build_tiny_llava

    torch.set_num_threads(args.threads)
    requests = _common.sample_requests(args.items, args.max_tokens)
    rows: list[Row] = []
    reference: list[str] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_llava(Path(tmp) / "llava")
        for batch_size in args.batch_sizes:
            runs = [
                asyncio.run(run_once(model_dir, requests, batch_size, args.concurrency)) for _ in range(args.repeats)
            ]
            runs.sort(key=lambda run: run[0])
            elapsed, latencies, calls, sizes, answers = runs[len(runs) // 2]  # the median run
            if reference is None:
                reference = answers
            rows.append(
                Row(
                    max_batch_size=batch_size,
                    items_per_s=len(requests) / elapsed,
                    latency_p50_ms=1000 * statistics.median(latencies),
                    latency_p95_ms=1000 * percentile(latencies, 0.95),
                    generate_calls=calls,
                    mean_batch=sum(sizes) / max(1, len(sizes)),
                    same_answers_as_batch_1=all(run[4] == reference for run in runs),
                )
            )
    base = rows[0].items_per_s
    rows = [Row(**{**asdict(row), "speedup": row.items_per_s / base}) for row in rows]

    print(
        f"tiny Llava, {len(requests)} sample items, {args.max_tokens} new tokens, concurrency {args.concurrency}, "
        f"torch threads {args.threads}, median of {args.repeats}"
    )
    print(f"{'batch':>5} {'items/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'calls':>5} {'mean b':>6} {'speed-up':>8} same")
    for row in rows:
        print(
            f"{row.max_batch_size:>5} {row.items_per_s:>8.1f} {row.latency_p50_ms:>7.1f} {row.latency_p95_ms:>7.1f} "
            f"{row.generate_calls:>5} {row.mean_batch:>6.1f} {row.speedup:>7.2f}x "
            f"{'yes' if row.same_answers_as_batch_1 else 'NO'}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "torch_batching",
        "model": "tiny random Llava (gmai_client.testing.tiny_models.build_tiny_llava)",
        "items": len(requests),
        "max_tokens": args.max_tokens,
        "concurrency": args.concurrency,
        "repeats": args.repeats,
        "torch_threads": args.threads,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "rows": [asdict(row) for row in rows],
        "note": "CPU shared with other work: expect noise of tens of percent between runs",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

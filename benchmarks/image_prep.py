"""Image downscaling off the event loop: ``prepare_images`` items/s with 1 worker process vs all cores.

    python benchmarks/image_prep.py [--items 120] [--image-size 1024] [--max-side 512] [--concurrency 16]
                                    [--repeats 3]

``gmai_client.backends.images.prepare_images`` re-encodes images larger than ``max_side`` (what the API
backends' ``max_image_side=`` option asks for) in a process pool shared by the whole process
(``os.cpu_count()`` workers, forkserver). This sends ``--items`` one-image requests through it with
``--concurrency`` in flight, as the runner's workers would, once with a 1-worker pool and once with
a pool of every core (the benchmark installs the pool itself, in ``gmai_client.backends.images._pool``,
since the module sizes it from the core count). Pools are started and warmed up before timing.
For reference it also times ``downscale`` in this process, one image after another, and measures
how late a 10 ms ticker on the event loop runs during each pooled run (the loop stays free while
the pool works: lag stays in milliseconds).

Images: synthetic GMAI-style PNGs (``gmai_client.testing.synthetic``) of ``--image-size`` px, a few dozen
distinct ones cycled. Each setting runs ``--repeats`` times, 1 and N workers alternating; medians.
Target: N workers / 1 worker close to the core count (2 here). Prints a table, writes
benchmarks/results/image_prep.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def make_images(n_distinct: int, size: int):
    from gmai_client.testing.synthetic import iter_synthetic_rows
    from gmai_client.types import Image

    seen: dict[str, Image] = {}
    for row in iter_synthetic_rows(n_distinct * 4, image_size=size):
        seen.setdefault(row["image"], Image(base64.b64decode(row["image"])))
        if len(seen) >= n_distinct:
            break
    return list(seen.values())


async def timed_run(images, n: int, max_side: int, concurrency: int) -> tuple[float, list[float]]:
    """(seconds, event-loop lags in ms) for n prepare_images calls with ``concurrency`` in flight."""
    from gmai_client.backends.images import prepare_images

    gate = asyncio.Semaphore(concurrency)
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(1000 * (time.perf_counter() - started - 0.01))

    async def one(i: int) -> None:
        async with gate:
            prepared = await prepare_images((images[i % len(images)],), max_side)
            assert prepared[0] is not images[i % len(images)], "the image was not resized"

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - started
    stop.set()
    await tick
    return elapsed, lags


def install_pool(workers: int) -> None:
    import gmai_client.backends.images as images

    images.shutdown_pool()
    images._pool = ProcessPoolExecutor(max_workers=workers, mp_context=images._mp_context())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from gmai_client.backends.images import downscale, shutdown_pool

    cores = os.cpu_count() or 1
    images = make_images(24, args.image_size)
    mean_kb = sum(len(i.data) for i in images) / len(images) / 1000
    print(f"{len(images)} distinct {args.image_size} px PNGs ({mean_kb:.0f} kB mean) -> max side {args.max_side}")

    started = time.perf_counter()
    for i in range(min(args.items, 48)):
        downscale(images[i % len(images)], args.max_side)
    in_process_ms = 1000 * (time.perf_counter() - started) / min(args.items, 48)

    worker_counts = [1, cores] if cores > 1 else [1]
    runs: dict[int, list[tuple[float, float]]] = {w: [] for w in worker_counts}
    try:
        for repeat in range(args.repeats):
            for workers in worker_counts if repeat % 2 == 0 else worker_counts[::-1]:
                install_pool(workers)
                asyncio.run(timed_run(images, 2 * workers, args.max_side, workers))  # start and warm the workers
                elapsed, lags = asyncio.run(timed_run(images, args.items, args.max_side, args.concurrency))
                lags.sort()
                p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))] if lags else 0.0
                runs[workers].append((args.items / elapsed, p99))
                print(
                    f"  repeat {repeat + 1}: {workers} worker(s) {args.items / elapsed:6.1f} items/s, "
                    f"loop lag p99 {p99:.1f} ms",
                    flush=True,
                )
    finally:
        shutdown_pool()

    rows = []
    base = _common.median(r[0] for r in runs[1])
    for workers in worker_counts:
        rate = _common.median(r[0] for r in runs[workers])
        rows.append(
            {
                "workers": workers,
                "items_per_s": rate,
                "ms_per_item": 1000 / rate,
                "speedup": rate / base,
                "loop_lag_p99_ms": _common.median(r[1] for r in runs[workers]),
                "runs_items_per_s": [round(r[0], 1) for r in runs[workers]],
            }
        )
    speedup = rows[-1]["speedup"]
    target = 0.8 * cores
    print()
    print(
        f"prepare_images, {args.image_size} px -> {args.max_side} px, {args.items} items, concurrency "
        f"{args.concurrency}, median of {args.repeats} ({cores} CPUs, shared)"
    )
    print(
        _common.table(
            ["workers", "items/s", "ms/item", "speed-up", "loop lag p99 ms"],
            [
                [r["workers"], r["items_per_s"], r["ms_per_item"], f"{r['speedup']:.2f}x", r["loop_lag_p99_ms"]]
                for r in rows
            ],
        )
    )
    print(f"in-process downscale, one at a time: {in_process_ms:.1f} ms/image ({1000 / in_process_ms:.1f}/s)")
    print(
        f"{cores} workers / 1 worker: {speedup:.2f}x  "
        f"(target >= {target:.1f}x: {'PASS' if speedup >= target else 'FAIL'})"
    )
    _common.write_result(
        "image_prep",
        {
            "command": "python benchmarks/image_prep.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "items": args.items,
            "image_size": args.image_size,
            "png_kb_mean": round(mean_kb, 1),
            "max_side": args.max_side,
            "concurrency": args.concurrency,
            "repeats": args.repeats,
            "rows": rows,
            "in_process_ms_per_image": in_process_ms,
            "speedup_all_cores": speedup,
            "target_speedup": target,
            "target_met": speedup >= target,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

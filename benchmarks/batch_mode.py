"""``run --batch`` through the fake batch APIs: how long the client takes, in how many batches.

    python benchmarks/batch_mode.py [--items 1000] [--image-size 512] [--batch-mb 8] [--repeats 1]

``--items`` synthetic items (512 px PNGs: ~100 kB of base64 a row) go through ``python -m
gmai_client run --batch`` for each vendor (OpenAI Files + /v1/batches, Anthropic Message Batches)
against ``python -m gmai_client.testing.fake_batches`` in its own process (a batch ends after two
status polls; the client polls every 0.05 s), with ``-B batch_mb=`` set so that the work is split
as a VAL run's ~9 GB is by the vendors' 200/256 MB limits: dozens of batches. A live run of the
same items (concurrency 64) is the reference. Measured per run: wall time, items/s, batches the
server created, the client's CPU seconds, and the batches' bytes. Writes
benchmarks/results/batch_mode.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

from gmai_client.testing.synthetic import write_tsv

ENV = {"OPENAI_API_KEY": "sk-bench-batch-0123456789", "ANTHROPIC_API_KEY": "sk-ant-bench-batch-0123456789"}


def start_server(port: int, state: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gmai_client.testing.fake_batches", "--port", str(port),
               "--state-dir", str(state), "--batch-polls", "2"]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=_common.ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/stats", timeout=1).read()
            return server
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"the fake batch server did not start: {log.read_text()}")


def stats(port: int) -> dict[str, Any]:
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/stats", timeout=5).read())


def one_run(port: int, vendor: str, data: Path, out: Path, items: int, batch: bool, batch_mb: float) -> dict[str, Any]:
    spec = f"openai:gpt-4o@http://127.0.0.1:{port}/v1" if vendor == "openai" else f"anthropic:c@http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "gmai_client", "run", "--no-progress", "--no-cache", "--data", str(data),
               "--limit", str(items), "--out", str(out), "-c", "64", "-m", spec]  # fmt: skip
    if batch:
        command += ["--batch", "-B", "batch_poll=0.05", "-B", f"batch_mb={batch_mb}"]
    before = stats(port)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(command, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=1200)
    wall = time.monotonic() - started
    after_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"the run failed ({done.returncode}): {done.stderr[-2000:]}")
    after = stats(port)
    created = sum(after["batches"]["created"].values()) - sum(before["batches"]["created"].values())
    journal = next(out.iterdir()) / "batches.jsonl"
    events = [json.loads(line) for line in journal.read_text(encoding="utf-8").split("\n") if line] if batch else []
    sizes = [e["bytes"] for e in events if e["event"] == "intent"]
    return {
        "vendor": vendor,
        "mode": "batch" if batch else "live",
        "items": items,
        "wall_s": round(wall, 2),
        "items_per_s": round(items / wall, 1),
        "client_cpu_s": round((after_usage.ru_utime + after_usage.ru_stime) - (usage.ru_utime + usage.ru_stime), 2),
        "batches": created,
        "batch_mb_mean": round(sum(sizes) / len(sizes) / 2**20, 2) if sizes else None,
        "live_requests": after["requests"] - before["requests"],
        "duplicate_batches": after["batches"]["duplicate_batches"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batch-mb", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        data = write_tsv(folder / "data.tsv", args.items, seed=5, image_size=args.image_size)
        port = _common.free_port()
        server = start_server(port, folder / "state", folder / "server.log")
        runs = []
        try:
            for repeat in range(args.repeats):
                for vendor in ("openai", "anthropic"):
                    for batch in (False, True):
                        out = folder / f"runs-{vendor}-{batch}-{repeat}"
                        runs.append(one_run(port, vendor, data, out, args.items, batch, args.batch_mb))
                        print(runs[-1], flush=True)
        finally:
            server.terminate()
            server.wait(10)
        print(_common.table(
            ["vendor", "mode", "items", "wall s", "items/s", "client CPU s", "batches", "MiB/batch", "live requests"],
            [[r["vendor"], r["mode"], r["items"], r["wall_s"], r["items_per_s"], r["client_cpu_s"], r["batches"],
              r["batch_mb_mean"] or "-", r["live_requests"]] for r in runs],
        ))  # fmt: skip
        _common.write_result(
            "batch_mode",
            {"command": " ".join(sys.argv), "row_kb": round(data.stat().st_size / args.items / 1e3, 1), "runs": runs},
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

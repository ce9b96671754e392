"""Per-item latency and items/s of each backend on this machine, each against a real server.

    python benchmarks/backends.py [--items 48] [--concurrency 16] [--latency 0.05] [--skip-models]

Every backend is the real class built from a spec string by the registry, as ``run`` builds it,
and sends the same ``--items`` requests of the bundled sample (prompts and images as the runner
makes them) through ``generate``, twice: one at a time (the per-item latency: p50 and p95) and
``--concurrency`` in flight (items/s). The servers run out of process on 127.0.0.1:

* ``openai`` and ``anthropic``: the fake API (``gmai_client.testing.fake_api``) with a fixed
  ``--latency``; what is measured is the client side: SDK, wire format, parsing.
* ``triton`` (HTTP and gRPC): a real Triton server (PyTriton) with the ``echo`` model, which
  answers at once, and a tiny random Llava (``tiny-llava``) on CPU, dynamic batching up to 8.
* ``torch``: the same tiny random Llava in this process, micro-batched (max batch 8).

The tiny model is 2 layers with random weights: its figures show the client and the batching,
not what a real model costs. Prints a table; writes benchmarks/results/backends.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class TritonServer:
    """``python -m gmai_client.testing.triton_server`` in a child process on 127.0.0.1."""

    def __init__(self, binds: list[str], work: Path):
        self.http_port, self.grpc_port = _common.free_port(), _common.free_port()
        self.binds = binds
        self.ready = work / "triton.ready"
        self.log = work / "triton.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_s = 0.0

    def __enter__(self) -> TritonServer:
        command = [sys.executable, "-m", "gmai_client.testing.triton_server", "--http-port", str(self.http_port)]
        command += ["--grpc-port", str(self.grpc_port), "--ready-file", str(self.ready), "--max-batch-size", "8"]
        for bind in self.binds:
            command += ["--bind", bind]
        started = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, cwd=_common.ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() - started > 180:
                self.__exit__()
                raise RuntimeError(f"the Triton server did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        self.start_s = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


async def measure(spec: str, requests: list[Any], concurrency: int) -> dict[str, Any]:
    """Latency one at a time, then items/s with ``concurrency`` in flight, through one backend."""
    from gmai_client.backends import registry
    from gmai_client.config import parse_model_spec

    backend = registry.create(parse_model_spec(spec))
    await backend.start()
    try:
        await backend.generate(requests[0])  # warm-up: connections, first batch, lazy imports
        latencies = []
        for request in requests:
            started = time.perf_counter()
            await backend.generate(request)
            latencies.append(time.perf_counter() - started)

        elapsed, _, answers = await _common.timed_pass(backend, requests, concurrency)
    finally:
        await backend.close()
    quantiles = statistics.quantiles(latencies, n=20)
    return {
        "spec": spec,
        "latency_p50_ms": 1000 * statistics.median(latencies),
        "latency_p95_ms": 1000 * quantiles[18],
        "items_per_s_sequential": len(latencies) / sum(latencies),
        "items_per_s_concurrent": len(requests) / elapsed,
        "concurrency": concurrency,
        "answered": sum(1 for text in answers if text),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05, help="the fake API's fixed latency (s)")
    parser.add_argument("--skip-models", action="store_true", help="no tiny Llava (Triton echo and APIs only)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    requests = _common.sample_requests(args.items, max_tokens=16)
    rows: list[dict[str, Any]] = []
    with _common.workdir("gmai-backends-") as work:
        llava = None
        if not args.skip_models:
            from gmai_client.testing.tiny_models import build_tiny_llava

            llava = build_tiny_llava(work / "llava")
        binds = ["echo=echo"] + ([] if llava is None else [f"tiny=vlm:{llava}"])
        os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark")
        os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-benchmark")
        with _common.FakeServer(latency=args.latency) as api, TritonServer(binds, work) as triton:
            http, grpc = f"http://127.0.0.1:{triton.http_port}", f"grpc://127.0.0.1:{triton.grpc_port}"
            specs = [
                (f"openai:fake@{api.openai_url}", f"fake API, {args.latency * 1000:g} ms"),
                (f"anthropic:fake@{api.base_url}", f"fake API, {args.latency * 1000:g} ms"),
                (f"triton:echo@{http}", "Triton echo model, HTTP"),
                (f"triton:echo@{grpc}", "Triton echo model, gRPC"),
            ]
            if llava is not None:
                specs += [
                    (f"triton:tiny@{grpc}", "tiny Llava in Triton (CPU), gRPC"),
                    (f"torch:{llava}", "tiny Llava in process (CPU), max batch 8"),
                ]
            for spec, what in specs:
                print(f"{what} ...", flush=True)
                row = asyncio.run(measure(spec, requests, args.concurrency))
                row["what"] = what
                rows.append(row)
            triton_start_s = triton.start_s

    print()
    print(f"{args.items} sample items per backend; latency one at a time, items/s at concurrency {args.concurrency}")
    print(
        _common.table(
            ["backend", "server", "p50 ms", "p95 ms", "items/s (1 at a time)", f"items/s (c={args.concurrency})"],
            [
                [
                    row["spec"].split("@")[0].split(":")[0] + ("" if "@" in row["spec"] else " (local)"),
                    row["what"],
                    f"{row['latency_p50_ms']:.1f}",
                    f"{row['latency_p95_ms']:.1f}",
                    f"{row['items_per_s_sequential']:.1f}",
                    f"{row['items_per_s_concurrent']:.1f}",
                ]
                for row in rows
            ],
        )
    )
    print(f"Triton server start (incl. model load): {triton_start_s:.1f} s")
    _common.write_result(
        "backends",
        {
            "command": "python benchmarks/backends.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "items": args.items,
            "concurrency": args.concurrency,
            "fake_api_latency_s": args.latency,
            "triton_start_s": triton_start_s,
            "rows": rows,
            "note": "2 shared CPU cores; the tiny Llava has random weights: client and batching costs, not a model's",
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

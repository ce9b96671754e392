"""Helpers shared by the benchmarks: the out-of-process fake API, CPU accounting, results files.

Not a benchmark itself (the leading underscore). Every benchmark script puts this folder on
``sys.path`` and imports it as ``_common``.

``FakeServer`` runs ``python -m gmai_client.testing.fake_api`` in its own process on 127.0.0.1 (a
free port), so the server never shares the measured client's GIL; it is stopped by PID. Its CPU
time is read from ``/proc/PID/stat``, so every table can show whether the server, rather than the
client, was the busy side (a server near 100% of a core would be the bottleneck being measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------- machine and files


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    for name in ("openai", "httpx2", "aiohttp", "pillow"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            info[name] = version(name)
    return info


def write_result(name: str, result: dict[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine(), **result}
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"wrote {shown}")
    return path


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain right-aligned text table (first column left-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what a run prints (the runner prints its metric tables)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


@contextlib.contextmanager
def workdir(prefix: str, keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            import shutil

            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- timing a backend


async def timed_pass(backend: Any, requests: Sequence[Any], concurrency: int) -> tuple[float, list[float], list[str]]:
    """Every request once through ``backend.generate``, ``concurrency`` in flight:
    (seconds for all, each request's latency, the answers in request order)."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(request: Any) -> Any:
        async with gate:
            started = time.perf_counter()
            response = await backend.generate(request)
            latencies.append(time.perf_counter() - started)
            return response

    started = time.perf_counter()
    responses = await asyncio.gather(*(one(r) for r in requests))
    return time.perf_counter() - started, latencies, [r.text for r in responses]


# --------------------------------------------------------------------------- CPU accounting


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- the fake API


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeServer:
    """``python -m gmai_client.testing.fake_api`` in a child process on 127.0.0.1.

    ``args`` are extra command-line flags (``--rate-limit 100``, ``--answers FILE``, ...).
    """

    def __init__(self, *, latency: float = 0.05, args: Sequence[str] = (), log: Path | None = None):
        self.port = free_port()
        self.latency = latency
        self.args = list(args)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.base_url}/v1"

    def start(self) -> FakeServer:
        command = [
            sys.executable,
            "-m",
            "gmai_client.testing.fake_api",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--latency",
            str(self.latency),
            *self.args,
        ]
        out = self.log.open("wb") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        give_up = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the fake API exited with {self.proc.returncode} (command: {' '.join(command)})")
            with contextlib.suppress(OSError):
                self.stats()
                return self
            if time.monotonic() > give_up:
                self.stop()
                raise RuntimeError("the fake API did not answer within 30 s")
            time.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/_fake/stats", timeout=10) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.base_url}/_fake/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def cpu_s(self) -> float:
        assert self.proc is not None
        return proc_cpu_s(self.proc.pid)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # main() suppresses KeyboardInterrupt and stops cleanly
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- data


def synthetic_tsv(path: Path, n_items: int, image_size: int = 512, seed: int = 0) -> Path:
    from gmai_client.testing.synthetic import write_tsv

    return write_tsv(path, n_items, image_size=image_size, seed=seed)


def realistic_tsv(path: Path, n_items: int, side: int = 1400, seed: int = 0) -> Path:
    """``n_items`` synthetic rows whose images are like the released files': a distinct
    ``side`` x ``side`` RGB PNG per row of ~1.5 MB (~2 MB of base64, as VAL's 9.34 GB / 4,550 rows),
    noisy enough that decoding it costs what a real scan's does (the synthetic generator's own
    images compress far better and repeat across rows)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from gmai_client.testing.synthetic import COLUMNS, iter_synthetic_rows

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    base = np.stack([x * 255 // side, y * 255 // side, (x + y) * 255 // (2 * side)], -1).astype(np.uint8)
    noisy = int(side * 0.6)  # rows with noise: sets the PNG's size
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("\t".join(COLUMNS) + "\n")
        for row in iter_synthetic_rows(n_items, seed=seed, image_size=32):
            pixels = base.copy()
            pixels[:noisy] += rng.integers(0, 4, size=(noisy, side, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
            row["image"] = base64.b64encode(buffer.getvalue()).decode("ascii")
            handle.write("\t".join(row[column] for column in COLUMNS) + "\n")
    return path


def load_items(path: Path, limit: int | None = None) -> list[Any]:
    from gmai_client.data.dataset import iter_items, open_dataset
    from gmai_client.types import Item

    items = []
    for entry in iter_items(open_dataset([path])):
        if isinstance(entry, Item):
            items.append(entry)
            if limit is not None and len(items) >= limit:
                break
    return items


def sample_requests(n: int, max_tokens: int) -> list[Any]:
    """The first ``n`` items of the bundled sample as ``Request``s (for the local-model benchmarks)."""
    from gmai_client.data.splits import resolve_data
    from gmai_client.protocol.prompt import build_request
    from gmai_client.types import SamplingParams

    params = SamplingParams(max_tokens=max_tokens)
    items = load_items(resolve_data(["sample"])[0], n)
    if len(items) < n:
        raise SystemExit(f"the sample has fewer than {n} items")
    return [build_request(item, params=params) for item in items]


def run_config(model: str, tsv: Path, n: int, concurrency: int, out: Path, name: str, **options: Any) -> Any:
    """The ``RunConfig`` every runner benchmark uses: ``n`` items of ``tsv``, no progress display,
    the cache off unless ``options`` turn it on."""
    from gmai_client import RunConfig

    settings: dict[str, Any] = {"cache": False, **options}
    return RunConfig.build(
        [model],
        data=[str(tsv)],
        limit=n,
        concurrency=concurrency,
        progress=False,
        out=out,
        run_name=name,
        **settings,
    )


def write_answers(path: Path, items: Sequence[Any]) -> Path:
    """The fake API's --answers file: every item answered correctly (keys as the server sees them)."""
    from gmai_client.testing.fake_api import oracle

    path.write_text(json.dumps(oracle(items)), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- an OpenAI backend that keeps a log


def recording_backend(model: str, url: str):
    """An ``OpenAIBackend`` (the real one, subclassed) that logs every call:
    ``log`` holds (sent, returned, outcome) with perf_counter times and outcome "ok" or the
    error class name (``RateLimited``, ...); ``first``/``last`` bound the request phase."""
    from gmai_client.backends.openai import OpenAIBackend

    class RecordingOpenAIBackend(OpenAIBackend):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.log: list[tuple[float, float, str, int]] = []

        async def generate(self, request):
            sent = time.perf_counter()
            try:
                response = await super().generate(request)
            except Exception as exc:
                self.log.append((sent, time.perf_counter(), type(exc).__name__, 0))
                raise
            tokens = response.usage.input_tokens + response.usage.output_tokens if response.usage else 0
            self.log.append((sent, time.perf_counter(), "ok", tokens))
            return response

    return RecordingOpenAIBackend(model, endpoint=url)

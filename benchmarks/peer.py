"""gmai_client against the peers a user would otherwise use: a bare AsyncOpenAI loop and inspect_ai.

    python benchmarks/peer.py [--sizes 512 real] [--items 1000] [--real-items 300] [--real-px 2300]
                              [--concurrency 16 64 256] [--repeats 2] [--latency 0.05]
                              [--inspect PATH/TO/inspect] [--no-inspect]

Every client runs as its own process, whole (start to exit: reading the TSV, the requests, and
for gmai_client the records, metrics and every report), against the project's fake
OpenAI-compatible server in a process of its own (``python -m gmai_client.testing.fake_api --blind``:
it reads each body whole but parses none of it, and answers after ``--latency`` s, so that at 2 MB
per request the server is not the bottleneck being measured), on the same items:

* ``bare``: ``benchmarks/peer_bare.py``, twenty lines of ``AsyncOpenAI`` and ``asyncio.gather``;
* ``gmai_client``: ``python -m gmai_client run --no-cache --no-progress``;
* ``inspect_ai``: ``inspect eval benchmarks/peer_inspect_task.py`` (inspect_ai 0.3.285 in its own
  environment: ``python -m venv .bench-venv && .bench-venv/bin/pip install inspect-ai==0.3.285 openai``;
  ``--inspect`` points at its ``inspect`` command; skipped with a note when missing).

Items: synthetic GMAI rows with 512 px PNGs, and "real" ones like the released VAL file's: a
distinct 1400 px RGB PNG of ~1.5 MB per row, ~2 MB of base64 (``_common.realistic_tsv``). For each
size and concurrency the clients run interleaved, ``--repeats`` times, in rotating order; medians
are shown with the ratios gmai_client / bare and gmai_client / inspect_ai, each client's peak RSS
and CPU seconds, and the fake server's CPU (a server near 100% of a core would be the bottleneck
being measured). Then the memory each request in flight costs, for the real-size items: each
client once at ``--memory-concurrency`` (32 and 256) against a server answering after
``--memory-latency`` s (4), so that every request a client may send is really in flight (at 0.05 s
a client told to keep 256 in flight has ~20, because reading a 2 MB row takes longer than
answering it); the growth of the peak RSS divided by the growth of the most requests the server
was answering at once (``/_fake/in-flight``). Before the runs,
the CPU per item of each step gmai_client adds around a request (``runner_overhead.stage_costs``),
so that the next regression shows where it is.

Prints a table; writes benchmarks/results/peer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import runner_overhead

HERE = Path(__file__).resolve().parent
CLIENTS = ("bare", "gmai_client", "inspect_ai")


@dataclass
class Measured:
    client: str
    size: str
    concurrency: int
    repeat: int
    items: int
    ok: bool
    wall_s: float
    items_per_s: float
    peak_rss_mb: float
    cpu_s: float
    server_cpu_pct: float
    in_flight: int  # the most requests the server was answering at once
    phase: str = "speed"  # or "memory": against a slow server, every request in flight


def command(client: str, tsv: Path, url: str, concurrency: int, out: Path, inspect: str | None) -> list[str]:
    if client == "bare":
        return [sys.executable, str(HERE / "peer_bare.py"), str(tsv), url, str(concurrency)]
    if client == "gmai_client":
        return [sys.executable, "-m", "gmai_client", "run", "--data", str(tsv), "--model", f"openai:fake@{url}",
                "--no-cache", "--no-progress", "--concurrency", str(concurrency), "--out", str(out),
                "--run-name", f"peer-{time.monotonic_ns()}"]  # fmt: skip
    assert inspect is not None
    # inspect resolves the task file relative to its working directory (run_one starts it in HERE).
    return [inspect, "eval", "peer_inspect_task.py", "-T", f"data={tsv}", "--model", "openai/fake",
            "--model-base-url", url, "--max-connections", str(concurrency), "--display", "none",
            "--log-dir", str(out / "inspect-logs")]  # fmt: skip


def run_one(
    argv: list[str], env: dict[str, str], server: _common.FakeServer
) -> tuple[bool, float, float, float, float, int]:
    """(exit 0, wall s, peak RSS MB, CPU s of the process, server CPU % of a core, the most
    requests in flight at once).

    The peak RSS is the child's own VmHWM, read while it runs: ``wait4``'s ``ru_maxrss`` would
    count this (large) process's memory, which the child shares between its fork and its exec.
    """
    server_cpu = server.cpu_s()
    max_in_flight(server)  # from here on
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, env=env, cwd=HERE, stdout=subprocess.DEVNULL, stderr=errors)
        peak_kb = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        if code != 0:
            errors.seek(0)
            name = Path(argv[1]).name if "python" in argv[0] else argv[0]
            print(f"  {name} exited {code}: {errors.read().decode(errors='replace')[-400:]}")
    server_pct = 100 * (server.cpu_s() - server_cpu) / wall
    return code == 0, wall, peak_kb / 1024, usage.ru_utime + usage.ru_stime, server_pct, max_in_flight(server)


def measure(
    client: str,
    size: str,
    tsv: Path,
    n: int,
    concurrency: int,
    repeat: int,
    server: _common.FakeServer,
    folder: Path,
    env: dict[str, str],
    inspect: str | None,
    phase: str = "speed",
) -> Measured:
    """One whole run of ``client`` over ``tsv`` against ``server``, printed as it ends."""
    argv = command(client, tsv, server.openai_url, concurrency, folder, inspect)
    ok, wall, rss, cpu, server_pct, flying = run_one(argv, env, server)
    print(f"  c={concurrency} {client:12} {n / wall:7.1f} items/s  {wall:6.1f} s  {rss:6.0f} MB  {flying} in flight")
    return Measured(client, size, concurrency, repeat, n, ok, wall, n / wall, rss, cpu, server_pct, flying, phase)


def max_in_flight(server: _common.FakeServer) -> int:
    """The most requests the fake server answered at once since the last call."""
    with urllib.request.urlopen(f"{server.base_url}/_fake/in-flight", timeout=10) as response:
        return int(json.loads(response.read())["max"])


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def make_data(folder: Path, size: str, args: argparse.Namespace) -> tuple[Path, int, float]:
    if size == "512":
        tsv = _common.synthetic_tsv(folder / "items-512.tsv", args.items, image_size=512, seed=11)
        return tsv, args.items, tsv.stat().st_size / args.items / 1e6
    tsv = _common.realistic_tsv(folder / "items-real.tsv", args.real_items, side=args.real_px, seed=11)
    return tsv, args.real_items, tsv.stat().st_size / args.real_items / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["512", "real"], choices=["512", "real"])
    parser.add_argument("--items", type=int, default=1000, help="items at 512 px")
    parser.add_argument("--real-items", type=int, default=300, help="items at real size")
    parser.add_argument("--real-px", type=int, default=1400, help="side of the real-size PNGs (~1.5 MB, distinct)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--memory-concurrency", type=int, nargs=2, default=[32, 256], metavar=("LOW", "HIGH"))
    parser.add_argument("--memory-latency", type=float, default=4.0)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory per request in flight")
    parser.add_argument("--inspect", default=str(_common.ROOT.parent / ".bench-venv" / "bin" / "inspect"))
    parser.add_argument("--no-inspect", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    inspect = None if args.no_inspect or not shutil.which(args.inspect) else args.inspect
    clients = [c for c in CLIENTS if c != "inspect_ai" or inspect]
    if not inspect and not args.no_inspect:
        print(f"inspect_ai not found at {args.inspect}: its column is left out (see the docstring to install it)")
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench-0000", "INSPECT_LOG_LEVEL": "error"}
    results: list[Measured] = []
    mb_per_row: dict[str, float] = {}
    stages: dict[str, dict[str, float]] = {}  # size -> step -> CPU ms per item
    server_args = ["--blind"]  # reads every body, parses none: the clients, not the server, are measured
    with (
        _common.workdir("peer", keep=args.keep) as folder,
        _common.FakeServer(latency=args.latency, args=server_args) as server,
        _common.FakeServer(latency=args.memory_latency, args=server_args) as slow,
    ):
        for size in args.sizes:
            tsv, n, mb_per_row[size] = make_data(folder, size, args)
            print(f"{size}: {n} items, {mb_per_row[size]:.2f} MB per row")
            stages[size] = runner_overhead.stage_costs(tsv, min(n, 200), folder, repeats=1)
            for step, ms in stages[size].items():
                print(f"  CPU per item, {step}: {ms:.3f} ms")
            for concurrency in args.concurrency:
                for repeat in range(args.repeats):
                    order = clients[repeat % len(clients) :] + clients[: repeat % len(clients)]
                    for client in order:
                        results.append(measure(client, size, tsv, n, concurrency, repeat, server, folder, env, inspect))
            if size == "real" and not args.no_memory:
                print(f"  memory: the server answers after {args.memory_latency:g} s")
                for concurrency in args.memory_concurrency:
                    for client in clients:
                        run = measure(client, size, tsv, n, concurrency, 0, slow, folder, env, inspect, phase="memory")
                        results.append(run)
    summary = summarize([r for r in results if r.phase == "speed"], clients)
    print(_common.table(list(summary[0]), [list(row.values()) for row in summary]))
    per_request = memory_per_request([r for r in results if r.phase == "memory"], clients)
    for line in per_request:
        print(
            f"{line['size']}: {line['client']} {line['mb_per_request']} MB per request in flight "
            f"(peak {line['low_mb']} MB with {line['low_in_flight']} in flight, {line['high_mb']} MB with "
            f"{line['high_in_flight']})"
        )
    _common.write_result(
        "peer",
        {
            "args": vars(args),
            "mb_per_row": mb_per_row,
            "cpu_ms_per_item_by_step": stages,
            "summary": summary,
            "memory_per_request_in_flight": per_request,
            "runs": [asdict(r) for r in results],
        },
    )


def _round(value: float, digits: int = 0) -> float | None:
    return None if value != value else round(value, digits)  # NaN: no successful run


def memory_per_request(results: list[Measured], clients: list[str]) -> list[dict[str, object]]:
    """Per size and client: MB of peak RSS per extra request in flight, between the lowest and the
    highest concurrency run (medians of the repeats, if any)."""
    lines = []
    for size in dict.fromkeys(r.size for r in results):
        for client in clients:
            runs = [r for r in results if (r.size, r.client) == (size, client) and r.ok]
            levels = sorted({r.concurrency for r in runs})
            if len(levels) < 2:
                continue

            def med(attr: str, concurrency: int, runs: list[Measured] = runs) -> float:
                return statistics.median(getattr(r, attr) for r in runs if r.concurrency == concurrency)

            low, high = levels[0], levels[-1]
            added = med("in_flight", high) - med("in_flight", low)
            growth = med("peak_rss_mb", high) - med("peak_rss_mb", low)
            lines.append({
                "size": size, "client": client,
                "mb_per_request": _round(growth / added, 2) if added > 0 else None,
                "low_mb": _round(med("peak_rss_mb", low)), "low_in_flight": med("in_flight", low),
                "high_mb": _round(med("peak_rss_mb", high)), "high_in_flight": med("in_flight", high),
            })  # fmt: skip
    return lines


def summarize(results: list[Measured], clients: list[str]) -> list[dict[str, object]]:
    rows = []
    for size in dict.fromkeys(r.size for r in results):
        for concurrency in dict.fromkeys(r.concurrency for r in results):

            def med(client: str, attr: str, size: str = size, concurrency: int = concurrency) -> float:
                values = [getattr(r, attr) for r in results
                          if (r.client, r.size, r.concurrency) == (client, size, concurrency) and r.ok]  # fmt: skip
                return statistics.median(values) if values else float("nan")

            row: dict[str, object] = {"size": size, "c": concurrency}
            for client in clients:
                row[f"{client} items/s"] = _round(med(client, "items_per_s"), 1)
            row["gmai/bare"] = _round(med("gmai_client", "items_per_s") / med("bare", "items_per_s"), 2)
            if "inspect_ai" in clients:
                row["gmai/inspect"] = _round(med("gmai_client", "items_per_s") / med("inspect_ai", "items_per_s"), 2)
            for client in clients:
                row[f"{client} MB"] = _round(med(client, "peak_rss_mb"))
            for client in clients:
                row[f"{client} cpu s"] = _round(med(client, "cpu_s"), 1)
            row["server cpu %"] = _round(max(med(c, "server_cpu_pct") for c in clients))
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()

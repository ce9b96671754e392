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
being measured). Before the runs, the CPU per item of each step gmai_client adds around a request
(``runner_overhead.stage_costs``), so that the next regression shows where it is.

Prints a table; writes benchmarks/results/peer.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
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
) -> tuple[bool, float, float, float, float]:
    """(exit 0, wall s, peak RSS MB, CPU s of the process, server CPU % of a core).

    The peak RSS is the child's own VmHWM, read while it runs: ``wait4``'s ``ru_maxrss`` would
    count this (large) process's memory, which the child shares between its fork and its exec.
    """
    server_cpu = server.cpu_s()
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
    return code == 0, wall, peak_kb / 1024, usage.ru_utime + usage.ru_stime, server_pct


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
    ):
        url = server.openai_url
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
                        argv_ = command(client, tsv, url, concurrency, folder, inspect)
                        ok, wall, rss, cpu, server_pct = run_one(argv_, env, server)
                        results.append(
                            Measured(client, size, concurrency, repeat, n, ok, wall, n / wall, rss, cpu, server_pct)
                        )
                        print(f"  c={concurrency} {client:12} {n / wall:7.1f} items/s  {wall:6.1f} s  {rss:6.0f} MB")
    summary = summarize(results, clients)
    print(_common.table(list(summary[0]), [list(row.values()) for row in summary]))
    _common.write_result(
        "peer",
        {
            "args": vars(args),
            "mb_per_row": mb_per_row,
            "cpu_ms_per_item_by_step": stages,
            "summary": summary,
            "runs": [asdict(r) for r in results],
        },
    )


def _round(value: float, digits: int = 0) -> float | None:
    return None if value != value else round(value, digits)  # NaN: no successful run


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

"""Does a whole run stream? Peak memory and speed of the CLI on a >= 1 GB TSV versus a small one.

    python benchmarks/stream_large.py [--size-gb 1.0] [--workdir DIR] [--keep]
                                      [--small-items 2000] [--image-size 512] [--concurrency 16]

Writes two GMAI-format TSVs with ``gmai_client.testing.synthetic.write_tsv`` (same seed, same image size): a
small one (``--small-items`` items, 512 px images are ~106 kB a row) and a large one with enough items
to reach ``--size-gb`` GiB (2**30 bytes, so ">= 1 GB" holds in either unit; the item count is sized
from the small file's bytes per row and the file rewritten bigger should it still fall short). Each
is then evaluated by the real CLI in a subprocess::

    python -m gmai_client run --data FILE --model random --no-progress --no-cache --out RUNS -c 16

and measured from outside: file size, item count (records in records.jsonl), total wall time, time
to the first result (the first complete line of the run folder's records.jsonl, polled every 10 ms),
time of the last result (so the tail after it, i.e. metrics, reports, plots and gallery, shows
apart), items/s, and memory: /proc/PID/status VmRSS and VmHWM of the CLI process and its children,
sampled every 50 ms (children found with psutil if installed, else from /proc). The peak reported is
VmHWM, the kernel's high-water mark of resident memory, cross-checked with the ``ru_maxrss`` that
``wait4`` returns for the CLI process.

Targets: peak RSS (VmHWM) < 300 MB on the 1 GB file, and memory flat in the file size, i.e. a
large/small peak ratio of about 1 (<= 1.25 passes). The random backend costs nothing, so items/s
is the client's own overhead: reading, parsing, base64-decoding the images, records, reports.

For scale, the large file is also read without the client, in this process, twice each: raw
(1 MiB ``read`` calls, bytes only) and with Python's ``csv`` module (tab-separated rows, nothing
else done with them). The client's read throughput (file MB per second of its wall time, and
between its first and last result) is shown as a ratio of both. "first result" is the time to the
first request: the random backend answers at once, so a record means a request was made.

Prints a table and writes the figures to benchmarks/results/stream_large.json. The working folder
(default a fresh ``tempfile.mkdtemp`` under /tmp) is deleted at the end unless ``--keep``; in a
``--workdir`` that already existed only what this script created there is deleted. The TSVs are
read back right after being written, so they come from the page cache: this measures the client,
not the disk.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "stream_large.json"

GIB = 2**30
MB = 1e6
PEAK_TARGET_MB = 300.0
RATIO_TARGET = 1.25
FIRST_TARGET_S = 2.0
SAMPLE_EVERY_S = 0.05
POLL_EVERY_S = 0.01

try:
    import psutil
except ImportError:  # the /proc fallback below does the same on Linux
    psutil = None


@dataclass
class Measurement:
    label: str
    file_bytes: int
    items_written: int
    records: int = 0
    records_ok: int = 0
    wall_s: float = 0.0
    first_result_s: float | None = None
    last_result_s: float | None = None
    after_last_result_s: float | None = None  # metrics, reports, plots, gallery
    items_per_s: float = 0.0  # items / wall time
    items_per_s_streaming: float | None = None  # between the first and the last result
    peak_hwm_mb: float = 0.0  # VmHWM summed over the process tree (the CLI alone when no children)
    peak_rss_sampled_mb: float = 0.0  # highest sampled VmRSS, summed over the process tree
    ru_maxrss_mb: float = 0.0  # wait4's peak RSS of the CLI process: a cross-check of VmHWM
    samples: int = 0
    processes_seen: int = 1
    exit_code: int = 0
    run_dir: str = ""
    write_s: float = 0.0  # time write_tsv took (not part of the run)
    rss_timeline_mb: list[tuple[float, float]] = field(default_factory=list)  # (s, VmRSS of the tree), ~1/s


# --------------------------------------------------------------------------- /proc sampling


def proc_memory_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in kB of a live process; None once it is gone (or a zombie: no Vm lines)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":", 1)
            values[name] = int(value.split()[0])
    if "VmRSS" not in values or "VmHWM" not in values:
        return None
    return values["VmRSS"], values["VmHWM"]


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    if psutil is not None:
        try:
            return [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces or parentheses: split after its closing one.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


# --------------------------------------------------------------------------- one run


def make_tsv(path: Path, n_items: int, image_size: int) -> tuple[int, float]:
    """Write ``n_items`` synthetic rows to ``path``: (size in bytes, seconds taken)."""
    from gmai_client.testing.synthetic import write_tsv

    started = time.perf_counter()
    write_tsv(path, n_items, image_size=image_size)
    return path.stat().st_size, time.perf_counter() - started


def count_records(path: Path) -> tuple[int, int]:
    """(records, records with status ok) in a records.jsonl."""
    total = ok = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                total += 1
                ok += json.loads(line).get("status") == "ok"
    return total, ok


def run_cli(label: str, data: Path, runs: Path, concurrency: int, items_written: int, write_s: float) -> Measurement:
    """Run the CLI on ``data`` and watch it from outside until it exits."""
    runs.mkdir(parents=True, exist_ok=True)
    log_path = runs.parent / f"{label}.log"
    command = [
        sys.executable, "-m", "gmai_client", "run",
        "--data", str(data), "--model", "random", "--no-progress", "--no-cache",
        "--out", str(runs), "-c", str(concurrency),
    ]  # fmt: skip
    m = Measurement(label, data.stat().st_size, items_written, write_s=round(write_s, 2))
    hwm_kb: dict[int, int] = {}
    records: Path | None = None
    records_size = 0
    last_sample = last_timeline = -1.0
    with log_path.open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        while True:
            now = time.perf_counter() - started
            if now - last_sample >= SAMPLE_EVERY_S:
                last_sample = now
                rss_kb = 0
                for pid in (proc.pid, *descendants(proc.pid)):
                    memory = proc_memory_kb(pid)
                    if memory is not None:
                        rss_kb += memory[0]
                        hwm_kb[pid] = max(hwm_kb.get(pid, 0), memory[1])
                m.samples += 1
                m.peak_rss_sampled_mb = max(m.peak_rss_sampled_mb, rss_kb * 1024 / MB)
                if now - last_timeline >= 1.0:
                    last_timeline = now
                    m.rss_timeline_mb.append((round(now, 2), round(rss_kb * 1024 / MB, 1)))
            if records is None:
                folders = [p for p in runs.iterdir() if p.is_dir()] if runs.exists() else []
                if len(folders) == 1:
                    m.run_dir = str(folders[0])
                    records = folders[0] / "records.jsonl"
            if records is not None:
                try:
                    size = records.stat().st_size
                except FileNotFoundError:
                    size = 0
                if size != records_size:
                    records_size = size
                    if m.first_result_s is None:
                        with records.open("rb") as handle:
                            if b"\n" in handle.read(1 << 16):
                                m.first_result_s = now
                    if m.first_result_s is not None:
                        m.last_result_s = now  # the time the journal last grew
            # wait4 rather than poll(): it reaps the process and returns its rusage (peak RSS).
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                m.wall_s = time.perf_counter() - started
                proc.returncode = m.exit_code = os.waitstatus_to_exitcode(status)
                m.ru_maxrss_mb = usage.ru_maxrss * 1024 / MB  # kB on Linux
                break
            time.sleep(POLL_EVERY_S)
    if m.exit_code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{label}: the CLI exited {m.exit_code}:\n{tail}")
    if records is None or not records.exists():
        raise SystemExit(f"{label}: no run folder with records.jsonl under {runs}")
    m.records, m.records_ok = count_records(records)
    m.processes_seen = len(hwm_kb)
    m.peak_hwm_mb = sum(hwm_kb.values()) * 1024 / MB
    m.items_per_s = m.records / m.wall_s
    if m.first_result_s is not None and m.last_result_s is not None:
        m.after_last_result_s = m.wall_s - m.last_result_s
        span = m.last_result_s - m.first_result_s
        m.items_per_s_streaming = (m.records - 1) / span if span > 0 else None
    return m


# --------------------------------------------------------------------------- plain reads


def plain_reads(path: Path, repeats: int = 2) -> dict[str, float]:
    """Seconds to read ``path`` raw and with the csv module (best of ``repeats``), and its row count."""
    import csv

    csv.field_size_limit(2**31 - 1)
    raw = []
    for _ in range(repeats):
        started = time.perf_counter()
        with path.open("rb", buffering=0) as handle:
            while handle.read(1 << 20):
                pass
        raw.append(time.perf_counter() - started)
    parsed = []
    rows = 0
    for _ in range(repeats):
        started = time.perf_counter()
        with path.open(newline="", encoding="utf-8") as handle:
            rows = sum(1 for _ in csv.reader(handle, delimiter="\t")) - 1
        parsed.append(time.perf_counter() - started)
    return {"raw_read_s": min(raw), "csv_read_s": min(parsed), "rows": rows}


# --------------------------------------------------------------------------- main


def print_table(rows: list[Measurement]) -> None:
    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    lines = [
        ("file size (MB)", [fmt(r.file_bytes / MB, ",.1f") for r in rows]),
        ("items written", [f"{r.items_written:,}" for r in rows]),
        ("records (ok)", [f"{r.records:,} ({r.records_ok:,})" for r in rows]),
        ("write_tsv time (s)", [fmt(r.write_s, ".1f") for r in rows]),
        ("total wall (s)", [fmt(r.wall_s, ".2f") for r in rows]),
        ("first result (s)", [fmt(r.first_result_s, ".2f") for r in rows]),
        ("last result (s)", [fmt(r.last_result_s, ".2f") for r in rows]),
        ("after last result (s)", [fmt(r.after_last_result_s, ".2f") for r in rows]),
        ("items/s (wall)", [fmt(r.items_per_s, ",.0f") for r in rows]),
        ("items/s (streaming)", [fmt(r.items_per_s_streaming, ",.0f") for r in rows]),
        ("peak RSS VmHWM (MB)", [fmt(r.peak_hwm_mb, ".1f") for r in rows]),
        ("peak sampled VmRSS (MB)", [fmt(r.peak_rss_sampled_mb, ".1f") for r in rows]),
        ("wait4 ru_maxrss (MB)", [fmt(r.ru_maxrss_mb, ".1f") for r in rows]),
        ("processes / samples", [f"{r.processes_seen} / {r.samples}" for r in rows]),
    ]
    width = max(len(name) for name, _ in lines)
    print(f"{'':<{width}}  " + "  ".join(f"{r.label:>16}" for r in rows))
    for name, values in lines:
        print(f"{name:<{width}}  " + "  ".join(f"{v:>16}" for v in values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="large file size in GiB (default 1.0)")
    parser.add_argument("--workdir", type=Path, default=None, help="working folder (default: mkdtemp under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (TSVs, run folders, logs)")
    parser.add_argument("--small-items", type=int, default=2000, help="items of the small file (default 2000)")
    parser.add_argument("--image-size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--concurrency", "-c", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        raise SystemExit("this benchmark reads /proc/PID/status: Linux only")

    created_workdir = args.workdir is None or not args.workdir.exists()
    workdir = Path(tempfile.mkdtemp(prefix="gmai-stream-", dir="/tmp")) if args.workdir is None else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    ours = [workdir / "small.tsv", workdir / "large.tsv", workdir / "runs"]
    target = math.ceil(args.size_gb * GIB)
    print(f"working folder: {workdir}  (psutil: {'yes' if psutil is not None else 'no, /proc'})", flush=True)
    load_before = os.getloadavg()
    try:
        small_tsv, large_tsv = ours[0], ours[1]
        small_bytes, small_write_s = make_tsv(small_tsv, args.small_items, args.image_size)
        n_small = args.small_items
        print(f"small: wrote {n_small:,} items, {small_bytes / MB:,.1f} MB in {small_write_s:.1f} s", flush=True)
        small = run_cli("small", small_tsv, workdir / "runs" / "small", args.concurrency, n_small, small_write_s)
        print(f"small: ran in {small.wall_s:.1f} s", flush=True)

        # Size the large file from the small one's bytes per row; grow it in the rare case it falls short.
        per_row = small_bytes / max(1, n_small)
        n_large = math.ceil(target / per_row * 1.01)
        large_write_s = 0.0
        while True:
            large_bytes, seconds = make_tsv(large_tsv, n_large, args.image_size)
            large_write_s += seconds
            if large_bytes >= target:
                break
            n_large = math.ceil(n_large * target / large_bytes * 1.01)
        print(f"large: wrote {n_large:,} items, {large_bytes / MB:,.1f} MB in {large_write_s:.1f} s", flush=True)
        large = run_cli("large", large_tsv, workdir / "runs" / "large", args.concurrency, n_large, large_write_s)
        print(f"large: ran in {large.wall_s:.1f} s", flush=True)
        plain = plain_reads(large_tsv)
        print(f"large: raw read {plain['raw_read_s']:.1f} s, csv read {plain['csv_read_s']:.1f} s", flush=True)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        elif created_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for path in ours:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    ratio = large.peak_hwm_mb / small.peak_hwm_mb
    size_ratio = large.file_bytes / small.file_bytes
    peak_ok = large.peak_hwm_mb < PEAK_TARGET_MB
    flat_ok = ratio <= RATIO_TARGET
    print()
    print(
        f"random backend, {args.image_size} px images, concurrency {args.concurrency}, "
        f"{os.cpu_count()} CPUs (load avg {load_before[0]:.2f} before)"
    )
    print_table([small, large])
    print()
    print(f"file size large/small:     {size_ratio:.1f}x")
    print(f"peak RSS large/small:      {ratio:.2f}x  (target <= {RATIO_TARGET}: {'PASS' if flat_ok else 'FAIL'})")
    print(
        f"peak RSS on the large file: {large.peak_hwm_mb:.1f} MB  "
        f"(target < {PEAK_TARGET_MB:.0f} MB: {'PASS' if peak_ok else 'FAIL'})"
    )

    mb = large.file_bytes / MB
    reads = {
        "raw_mb_per_s": mb / plain["raw_read_s"],
        "csv_mb_per_s": mb / plain["csv_read_s"],
        "csv_rows_per_s": plain["rows"] / plain["csv_read_s"],
        "runner_mb_per_s_wall": mb / large.wall_s,
        "runner_mb_per_s_streaming": (
            mb * (large.records - 1) / large.records / (large.last_result_s - large.first_result_s)
            if large.first_result_s is not None and large.last_result_s and large.last_result_s > large.first_result_s
            else None
        ),
        **plain,
    }
    reads["runner_wall_vs_csv"] = reads["runner_mb_per_s_wall"] / reads["csv_mb_per_s"]
    reads["runner_wall_vs_raw"] = reads["runner_mb_per_s_wall"] / reads["raw_mb_per_s"]
    if reads["runner_mb_per_s_streaming"] is not None:
        reads["runner_streaming_vs_csv"] = reads["runner_mb_per_s_streaming"] / reads["csv_mb_per_s"]
        reads["runner_streaming_vs_raw"] = reads["runner_mb_per_s_streaming"] / reads["raw_mb_per_s"]
    first_ok = large.first_result_s is not None and large.first_result_s < FIRST_TARGET_S
    print()
    print(f"reading the large file ({mb:,.0f} MB, {plain['rows']:,} rows):")
    print(f"  raw read (1 MiB chunks):   {reads['raw_mb_per_s']:8,.0f} MB/s")
    print(f"  csv module, rows only:     {reads['csv_mb_per_s']:8,.0f} MB/s  ({reads['csv_rows_per_s']:,.0f} rows/s)")
    streaming = reads["runner_mb_per_s_streaming"]
    print(
        f"  the client (whole run):    {reads['runner_mb_per_s_wall']:8,.0f} MB/s  "
        f"= {reads['runner_wall_vs_csv']:.2f}x csv, {reads['runner_wall_vs_raw']:.3f}x raw"
    )
    if streaming is not None:
        print(
            f"  the client (first to last result): {streaming:,.0f} MB/s  "
            f"= {reads['runner_streaming_vs_csv']:.2f}x csv, {reads['runner_streaming_vs_raw']:.3f}x raw"
        )
    print(
        f"first request after {'-' if large.first_result_s is None else format(large.first_result_s, '.2f')} s  "
        f"(target < {FIRST_TARGET_S:g} s: "
        f"{'PASS' if first_ok else 'FAIL'})"
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "stream_large",
        "command": "python -m gmai_client run --data FILE --model random --no-progress --no-cache "
        f"--out WORKDIR/runs/LABEL -c {args.concurrency}",
        "size_gb_requested": args.size_gb,
        "image_size": args.image_size,
        "concurrency": args.concurrency,
        "memory_source": "/proc/PID/status VmRSS, VmHWM every 50 ms; children via "
        + ("psutil" if psutil is not None else "/proc"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "runs": {m.label: asdict(m) for m in (small, large)},
        "file_size_ratio_large_small": round(size_ratio, 2),
        "peak_rss_ratio_large_small": round(ratio, 3),
        "targets": {
            "peak_rss_large_mb_below": PEAK_TARGET_MB,
            "peak_rss_large_mb": round(large.peak_hwm_mb, 1),
            "peak_ok": peak_ok,
            "peak_rss_ratio_at_most": RATIO_TARGET,
            "ratio_ok": flat_ok,
            "first_request_s_below": FIRST_TARGET_S,
            "first_request_s": large.first_result_s,
            "first_request_ok": first_ok,
        },
        "plain_reads": reads,
        "note": "CPU shared with other work: expect noise of tens of percent in the timings between runs; "
        "the TSVs are read from the page cache right after being written",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0 if peak_ok and flat_ok and first_ok else 1


if __name__ == "__main__":
    sys.exit(main())

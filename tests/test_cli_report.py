"""``python -m gmai_client report RUN_DIR``: re-rendering a run folder, as a user types it (subprocesses
where a second process or a crash is the point, ``main`` in-process elsewhere)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from gmai_client.records import read_records


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gmai_client", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def start_slow_run(tmp_path: Path, data: Path, items: int = 60) -> tuple[subprocess.Popen[str], Path]:
    """A run of ``items`` scripted answers at 0.1 s each, two at a time; returned once 3 are recorded."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps({str(i): "A" for i in range(items)}))
    command = [
        sys.executable, "-m", "gmai_client", "run", "--no-progress", "--data", str(data), "--limit", str(items),
        "-m", f"scripted:{script}", "-B", "latency=0.1", "-c", "2", "--out", str(tmp_path / "runs"), "--run-name", "s",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "runs/s/records.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (journal.exists() and journal.read_text().count("\n") >= 3):
        time.sleep(0.02)
    return process, tmp_path / "runs/s"


def test_rescore_while_the_run_is_writing_is_refused_naming_its_pid(tmp_path: Path, small_tsv: Path) -> None:
    run, run_dir = start_slow_run(tmp_path, small_tsv)
    try:
        journal = (run_dir / "records.jsonl").stat()
        rescore = cli("report", str(run_dir), "--rescore", cwd=tmp_path)
        still_running = run.poll() is None
    finally:
        _, err = run.communicate(timeout=120)
    assert still_running, "the run ended before the report was tried: the test proves nothing"
    assert rescore.returncode == 2, rescore.stdout
    said = " ".join(rescore.stderr.split())
    assert f"in use by another gmai_client process (pid {run.pid})" in said and "Traceback" not in said
    assert (run_dir / "records.jsonl").stat().st_ino == journal.st_ino  # never replaced under the writer
    assert run.returncode == 0, err
    assert len(read_records(run_dir / "records.jsonl")) == 60


def test_no_lock_file_stays_in_the_folder_after_a_run_or_a_report(tmp_path: Path) -> None:
    from gmai_client.cli import main

    assert main(["run", "--no-progress", "--out", str(tmp_path), "--run-name", "r", "--limit", "5"]) == 0
    assert not (tmp_path / "r/.lock").exists()
    assert main(["report", str(tmp_path / "r"), "--rescore"]) == 0
    assert not (tmp_path / "r/.lock").exists()

"""``report`` and ``report --rescore`` when the disk fills up: one line naming the file that could
not be written, no traceback, no ``.tmp`` file left in the run folder, and records.jsonl as it was.

The disk is "filled" for one process: a file-size limit (``RLIMIT_FSIZE``) makes every write past
it fail with an OSError, as a full disk does, without filling a real disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gmai_client.cli import main

resource = pytest.importorskip("resource")  # POSIX only

#: Bytes any one file may grow to in the "full" process: less than metrics.json and records.jsonl.
LIMIT = 1500


def run_report(run_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``python -m gmai_client report RUN_DIR`` in a process whose files cannot grow past LIMIT."""
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))\n"
        "from gmai_client.cli import main\n"
        f"sys.exit(main(['report', {str(run_dir)!r}, *{list(options)!r}]))\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    assert main(["run", "--no-progress", "--limit", "12", "--out", str(tmp_path), "--run-name", "r"]) == 0
    return tmp_path / "r"


def test_report_on_a_full_disk_says_so_in_one_line_and_leaves_no_tmp_file(run_dir: Path) -> None:
    records = (run_dir / "records.jsonl").read_bytes()
    done = run_report(run_dir)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "could not be written" in done.stderr and "File too large" in done.stderr
    assert sorted(p.name for p in run_dir.rglob("*.tmp")) == []
    assert (run_dir / "records.jsonl").read_bytes() == records


def test_rescore_on_a_full_disk_keeps_the_journal_and_leaves_no_tmp_file(run_dir: Path) -> None:
    path = run_dir / "records.jsonl"
    lines = path.read_text(encoding="utf-8").split("\n")
    first = json.loads(lines[0])
    first["letters"], first["status"] = [], "unparsed"  # read again by --rescore: the journal is rewritten
    lines[0] = json.dumps(first, ensure_ascii=False)
    path.write_text("\n".join(lines), encoding="utf-8")
    records = path.read_bytes()
    done = run_report(run_dir, "--rescore")
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "could not be written" in done.stderr
    assert sorted(p.name for p in run_dir.rglob("*.tmp")) == []
    assert path.read_bytes() == records  # the rewrite failed whole: the old journal stands

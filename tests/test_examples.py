"""The shipped examples run as a user would run them (subprocess, fresh folder, no key, no network)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gmai_client.results.records import read_records

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def only_metrics(cwd: Path) -> dict:
    (run_dir,) = (cwd / "runs").iterdir()
    return json.loads((run_dir / "metrics.json").read_text())["models"]


def test_custom_backend_example_evaluates_its_toy_service(tmp_path: Path) -> None:
    pytest.importorskip("httpx")
    done = run_example("custom_backend.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = only_metrics(tmp_path)
    assert set(metrics) == {"toy", "random"}
    # The toy service always answers the last option: right exactly where the key is the last letter.
    (run_dir,) = (tmp_path / "runs").iterdir()
    records = [r for r in read_records(run_dir / "records.jsonl") if r.model == "toy"]
    assert len(records) == 300 and all(r.status == "ok" for r in records)
    assert all(r.correct == (r.answer == (r.options[-1][0],)) for r in records)


def test_side_by_side_demo_compares_the_fake_gpt4o_with_random(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    pytest.importorskip("aiohttp")
    done = run_example("side_by_side.py", "--demo", "--limit", "60", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = only_metrics(tmp_path)
    # Every fault was retried away and every answer read right: the lenient reading (which scores
    # multi-answer keys by set match) is perfect; the headline, VLMEvalKit's, never hits a multi-answer key.
    gpt = metrics["gpt-4o"]["overall"]
    assert gpt["errored"] == 0 and gpt["lenient_accuracy"] == 1.0
    (run_dir,) = (tmp_path / "runs").iterdir()
    records = [r for r in read_records(run_dir / "records.jsonl") if r.model == "gpt-4o"]
    assert all(r.correct for r in records if not r.is_multi_answer)
    assert gpt["correct"] == sum(not r.is_multi_answer for r in records)
    assert "gpt-4o: 60 items (0 errors" in done.stdout

"""The shipped examples run as a user would run them (subprocess, fresh folder, no key, no network)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gmai_client import load_run_file
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


def test_the_compare_models_run_file_plans_without_a_key_or_the_network(tmp_path: Path) -> None:
    # `plan` reads the whole file (three models, selection, rules, limits) and sends nothing, so no
    # key is needed; the vLLM server is given by URL and never called.
    environment = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-m", "gmai_client", "plan", "--config", str(EXAMPLES / "compare_models.toml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "What the run would send (nothing was sent)" in done.stdout
    assert len(re.findall(r"^│ \S+ +│ +40 │", done.stdout, flags=re.M)) == 3  # 3 models, the file's limit each
    for label in ("gpt-4o", "sonnet-4.5"):
        assert f"{label}: $" in done.stdout, label  # priced from the shipped table
    assert "qwen2.5-vl-7b: $0 / $0 per 1M input / output tokens" in done.stdout  # the file's -B price_in/out
    assert not (tmp_path / "runs").exists()  # plan writes nothing
    config = load_run_file(EXAMPLES / "compare_models.toml")
    assert [m.backend for m in config.models] == ["openai", "anthropic", "openai"]
    assert config.models[2].endpoint == "http://localhost:8000/v1" and config.policy.max_errors == 0.2


def test_the_readme_shows_the_run_file_as_it_is_shipped() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    (shown,) = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    shipped = (EXAMPLES / "compare_models.toml").read_text(encoding="utf-8")
    assert shipped.endswith(shown) and shown.startswith("data = ")  # the file less its header comments

"""The command line as a user types it (in a subprocess: the real entry point, real exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gmai_client", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_run_with_no_arguments_evaluates_random_on_the_sample(tmp_path: Path) -> None:
    done = cli("run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "GMAI-MMBench accuracy" in done.stdout and "by clinical VQA task" in done.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    for name in ("config.json", "records.jsonl", "metrics.json", "metrics.csv", "report.md", "predictions/random.tsv"):
        assert (run_dir / name).exists(), name
    assert len((run_dir / "records.jsonl").read_text().splitlines()) == 300


def test_select_and_limit_and_two_models(tmp_path: Path) -> None:
    done = cli(
        "run",
        "--select",
        "granularity=Box Level",
        "--model",
        "random",
        "--model",
        "random",
        "-B",
        "seed=7",
        "-B",
        "label=random-7",
        "--limit",
        "20",
        "--run-name",
        "pair",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "runs/pair/metrics.json").read_text())
    assert set(metrics["models"]) == {"random", "random-7"}
    assert metrics["models"]["random"]["overall"]["n"] == 20
    assert list(metrics["models"]["random"]["groups"]["perceptual granularity"]) == ["Box Level"]
    assert metrics["comparison"]["reference"] == "random"
    assert "Δ random-7" in done.stdout


def test_unknown_selection_name_is_one_clear_line(tmp_path: Path) -> None:
    done = cli("run", "--select", "department=Opthalmology", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown name 'Opthalmology'" in done.stderr and "Ophthalmology" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_tree_shows_counts(tmp_path: Path) -> None:
    done = cli("tree", "--view", "granularity", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Box Level" in done.stdout and "300 items" in done.stdout


def test_report_rerenders_and_rescores_without_models(tmp_path: Path) -> None:
    assert cli("run", "--run-name", "r", cwd=tmp_path).returncode == 0
    run_dir = tmp_path / "runs/r"
    before = json.loads((run_dir / "metrics.json").read_text())["models"]["random"]["overall"]
    (run_dir / "metrics.json").unlink()
    done = cli("report", str(run_dir), "--rescore", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    after = json.loads((run_dir / "metrics.json").read_text())["models"]["random"]["overall"]
    assert after == before


def test_report_keeps_the_run_figures_and_the_model_order(tmp_path: Path) -> None:
    # Labels chosen so that the record order or an alphabetical order would put "b" first.
    models = ["--model", "random", "-B", "label=z-first", "--model", "random", "-B", "label=a-second"]
    assert cli("run", "--run-name", "r", *models, cwd=tmp_path).returncode == 0
    metrics_file = tmp_path / "runs/r/metrics.json"
    before = json.loads(metrics_file.read_text())
    assert before["run"]["models"]["z-first"]["done"] == 300

    assert cli("report", str(tmp_path / "runs/r"), cwd=tmp_path).returncode == 0
    after = json.loads(metrics_file.read_text())
    assert after["run"] == before["run"]  # timings, requests, cache hits: only the run knew them
    assert list(after["models"]) == ["z-first", "a-second"]


def test_missing_data_file_is_a_clear_error(tmp_path: Path) -> None:
    done = cli("run", "--data", str(tmp_path / "nope.tsv"), cwd=tmp_path)
    assert done.returncode == 2 and "nope.tsv" in done.stderr and "Traceback" not in done.stderr


def test_brackets_in_messages_are_printed_as_text_not_markup(tmp_path: Path) -> None:
    # rich would swallow "[v2]" as a style tag; file names and error texts must come out whole.
    done = cli("run", "--data", str(tmp_path / "val[v2].tsv"), cwd=tmp_path)
    assert done.returncode == 2 and "val[v2].tsv" in done.stderr, done.stderr

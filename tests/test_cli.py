"""The command line as a user types it: in a subprocess (the real entry point, real exit codes and
signals) or in-process through ``main`` where that is enough. Bad inputs have their own table in
test_bad_inputs.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from gmai_client.cli import EXIT_ERRORS, EXIT_STOPPED, EXIT_USAGE, main
from gmai_client.config import flatten
from gmai_client.data.splits import sample_path
from gmai_client.results.records import read_records


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


# --- --resume runs the saved configuration (issue 13.4) ---------------------------------------------


def saved_config(run_dir: Path) -> dict:
    """config.json's configuration, every field by its flat name."""
    return flatten(json.loads((run_dir / "config.json").read_text())["config"])


def test_resume_runs_with_the_saved_configuration_and_states_overrides(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "runs")
    saved = [
        "--concurrency", "3", "--rpm", "6000", "--tpm", "900000", "--max-attempts", "3", "--attempt-timeout", "7",
        "--item-deadline", "60", "--max-errors", "50", "--executor", "ray", "--ray-address", "127.0.0.1:1",
        "--no-cache", "--select", "granularity=Box Level|Mask Level", "--limit", "10", "--temperature", "0.3",
        "--max-tokens", "64", "--seed", "5", "--judge", "random", "-J", "seed=9",
    ]  # fmt: skip
    assert main(["run", "--no-progress", "--out", out, "--run-name", "r", *saved]) == 0
    run_dir = tmp_path / "runs/r"
    before = saved_config(run_dir)
    capsys.readouterr()

    # Nothing but the folder: every saved setting comes back, none is replaced by a default.
    assert main(["run", "--no-progress", "--resume", str(run_dir), "--limit", "20"]) == 0
    after = saved_config(run_dir)
    assert {k: v for k, v in after.items() if k != "limit"} == {k: v for k, v in before.items() if k != "limit"}
    assert after["limit"] == 20 and "--limit 20 extends the saved run's 10 items" in capsys.readouterr().err
    assert after["concurrency"] == 3 and after["rpm"] == 6000 and after["max_attempts"] == 3
    assert after["executor"] == "ray" and after["cache"] is False and after["params"]["temperature"] == 0.3
    assert len(read_records(run_dir / "records.jsonl")) == 20
    # A pace option given with --resume overrides the saved one, and says so.
    assert main(["run", "--no-progress", "--resume", str(run_dir), "-c", "5", "--rpm", "6000"]) == 0
    said = capsys.readouterr().err
    assert "note: --concurrency 5 overrides the saved 3" in said and "--rpm" not in said  # --rpm is unchanged
    assert saved_config(run_dir)["concurrency"] == 5


def test_resume_refuses_options_that_would_change_the_run(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "runs")
    assert main(["run", "--no-progress", "--out", out, "--run-name", "r", "--limit", "5"]) == 0
    capsys.readouterr()
    other = tmp_path / "other.tsv"
    other.write_bytes(sample_path().read_bytes())
    code = main(["run", "--no-progress", "--resume", str(tmp_path / "runs/r"), "--data", str(other), "--seed", "3"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == EXIT_USAGE
    assert f"--data {other} (the saved run has sample)" in err and "--seed 3 (the saved run has 0)" in err
    # The same value written again is no conflict.
    assert main(["run", "--no-progress", "--resume", str(tmp_path / "runs/r"), "--data", "sample", "--seed", "0"]) == 0


def test_multi_answer_prompt_is_part_of_the_run_and_names_its_own_folder(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "runs")
    assert main(["run", "--no-progress", "--out", out, "--limit", "5"]) == 0
    assert main(["run", "--no-progress", "--out", out, "--limit", "5", "--multi-answer-prompt"]) == 0
    folders = {saved_config(path)["multi_answer_instruction"]: path for path in (tmp_path / "runs").iterdir()}
    assert set(folders) == {False, True}  # another prompt, another folder: neither resumes the other
    # --resume brings the setting back; asking for it on a run made without it is refused.
    assert main(["run", "--no-progress", "--resume", str(folders[True])]) == 0
    assert saved_config(folders[True])["multi_answer_instruction"] is True
    capsys.readouterr()
    assert main(["run", "--no-progress", "--resume", str(folders[False]), "--multi-answer-prompt"]) == EXIT_USAGE
    assert "--multi-answer-prompt on (the saved run has off)" in " ".join(capsys.readouterr().err.split())


# --- exit statuses (issue 13.10) ---------------------------------------------------------------------


def test_exit_status_says_whether_every_item_was_evaluated(tmp_path: Path, capsys) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"0": "A", "1": {"error": "ServerError"}, "2": "B"}))
    common = ["run", "--no-progress", "--out", str(tmp_path / "runs"), "--limit", "3", "--max-attempts", "1"]
    assert main([*common, "-m", f"scripted:{script}", "--run-name", "e"]) == EXIT_ERRORS
    said = " ".join(capsys.readouterr().err.split())
    assert "1 item(s) ended in an error" in said and "--resume" in said and "--retry-errors" in said
    # Still an error on a plain resume: not every item has an answer.
    assert main(["run", "--no-progress", "--resume", str(tmp_path / "runs/e")]) == EXIT_ERRORS
    script.write_text(json.dumps({"0": "A", "1": "C", "2": "B"}))
    assert main(["run", "--no-progress", "--resume", str(tmp_path / "runs/e"), "--retry-errors"]) == 0

    bad_key = tmp_path / "bad_key.json"
    bad_key.write_text(json.dumps({str(i): {"error": "AuthError"} for i in range(3)}))
    assert main([*common, "-m", f"scripted:{bad_key}", "-m", "random"]) == EXIT_STOPPED
    assert "stopped early" in capsys.readouterr().out
    # --max-errors stops the model: a failure too, not a finished run with errors.
    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps({str(i): {"error": "ServerError"} for i in range(3)}))
    assert main([*common, "-m", f"scripted:{failing}", "-c", "1", "--max-errors", "1"]) == EXIT_STOPPED
    assert "--max-errors 1" in capsys.readouterr().out


# --- SIGTERM and a second Ctrl-C (subprocesses: real signals, the real entry point) -------------------


def start_slow_run(tmp_path: Path, small_tsv: Path) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({str(i): "A" for i in range(60)}))
    command = [
        sys.executable, "-m", "gmai_client", "run", "--no-progress", "--data", str(small_tsv),
        "-m", f"scripted:{script}", "-B", "latency=0.1", "-c", "2", "--out", str(tmp_path / "runs"), "--run-name", "s",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "runs/s/records.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (journal.exists() and journal.read_text().count("\n") >= 6):
        time.sleep(0.02)
    return process, tmp_path / "runs/s"


def test_sigterm_ends_a_run_like_ctrl_c(tmp_path: Path, small_tsv: Path) -> None:
    process, run_dir = start_slow_run(tmp_path, small_tsv)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert f"resume with: python -m gmai_client run --resume {run_dir}" in " ".join(out.split())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    finished = len(read_records(run_dir / "records.jsonl"))
    assert metrics["run"]["interrupted"] is True and 6 <= finished < 60
    assert metrics["models"][next(iter(metrics["models"]))]["overall"]["n"] == finished  # partial metrics


def test_a_second_interrupt_quits_at_once_without_a_traceback(tmp_path: Path, small_tsv: Path) -> None:
    process, run_dir = start_slow_run(tmp_path, small_tsv)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err and "Error" not in err, err
    assert "interrupted" in err + out
    done = read_records(run_dir / "records.jsonl")
    assert 6 <= len(done) < 60  # what finished is kept; a rerun finishes the rest
    rerun = subprocess.run(process.args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert len(read_records(run_dir / "records.jsonl")) == 60

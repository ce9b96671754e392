"""``python -m gmai_client report RUN_DIR``: re-rendering a run folder, as a user types it (subprocesses
where a second process or a crash is the point, ``main`` in-process elsewhere)."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from gmai_client.results.records import read_records


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


# --- runs that did not answer every selected item (issue 19 D3, D10, §5) ----------------------------


def run_scripted(tmp_path: Path, data: Path, answers: dict[str, object], *options: str) -> tuple[int, Path]:
    """``run`` of a scripted model labelled "s" over the first ``len(answers)`` items, one at a time."""
    from gmai_client.cli import main

    script = tmp_path / "script.json"
    script.write_text(json.dumps(answers), encoding="utf-8")
    code = main(
        [
            "run", "--no-progress", "--data", str(data), "--limit", str(len(answers)), "--out", str(tmp_path),
            "--run-name", "r", "-m", f"scripted:{script}", "-B", "label=s", "-c", "1", "--max-attempts", "1", *options,
        ]
    )  # fmt: skip
    return code, tmp_path / "r"


def overall_csv_row(run_dir: Path) -> dict[str, str]:
    with (run_dir / "metrics.csv").open(encoding="utf-8") as handle:
        return next(row for row in csv.DictReader(handle) if row["view"] == "overall")


def test_a_401_after_5_of_50_items_is_incomplete_in_every_output_and_report_exits_3(
    tmp_path: Path, small_tsv: Path, capsys
) -> None:
    from gmai_client.cli import EXIT_STOPPED, main

    answers: dict[str, object] = {str(i): "A" if i < 5 else {"error": "AuthError"} for i in range(50)}
    code, run_dir = run_scripted(tmp_path, small_tsv, answers)
    assert code == EXIT_STOPPED
    banner = "INCOMPLETE: s: 45 of 50 selected items got no answer (45 never recorded; s stopped early: AuthError)"
    model = json.loads((run_dir / "metrics.json").read_text())["models"]["s"]
    assert (model["incomplete"], model["selected"], model["answered"], model["unanswered"]) == (True, 50, 5, 45)
    row = overall_csv_row(run_dir)
    assert (row["selected"], row["unanswered"], row["incomplete"]) == ("50", "45", "true")
    assert banner in (run_dir / "report.md").read_text()
    assert "<strong>Incomplete:</strong> s: 45 of 50 selected items got no answer" in (
        run_dir / "report.html"
    ).read_text()
    capsys.readouterr()

    assert main(["report", str(run_dir)]) == EXIT_STOPPED
    assert banner in " ".join(capsys.readouterr().out.split())
    (run_dir / "metrics.json").unlink()  # as a run killed before writing it: the selection is counted again
    assert main(["report", str(run_dir)]) == EXIT_STOPPED
    assert "45 of 50 selected items got no answer (45 never recorded; the run did not finish)" in " ".join(
        capsys.readouterr().out.split()
    )


def test_max_errors_counts_every_item_without_an_answer_against_the_selection(tmp_path: Path, small_tsv: Path) -> None:
    # Every third item fails: the 9th error (item 24) stops the model with 25 of 50 recorded, 16 answered.
    answers: dict[str, object] = {str(i): {"error": "ServerError"} if i % 3 == 0 else "A" for i in range(50)}
    code, run_dir = run_scripted(tmp_path, small_tsv, answers, "--max-errors", "9")
    assert code == 3
    said = (run_dir / "report.md").read_text()
    assert "INCOMPLETE: s: 34 of 50 selected items got no answer (9 ended in an error; 25 never recorded;" in said
    assert json.loads((run_dir / "metrics.json").read_text())["models"]["s"]["unanswered"] == 34


def test_a_spent_token_budget_leaves_the_rest_counted_as_unanswered(tmp_path: Path, small_tsv: Path) -> None:
    code, run_dir = run_scripted(tmp_path, small_tsv, {str(i): "A" for i in range(20)}, "--token-budget", "3000")
    assert code == 3
    model = json.loads((run_dir / "metrics.json").read_text())["models"]["s"]
    assert model["incomplete"] and model["unanswered"] == 20 - model["answered"] > 0
    said = (run_dir / "report.md").read_text()
    assert f"INCOMPLETE: s: {model['unanswered']} of 20 selected items got no answer" in said
    assert "token budget of 3,000 is spent" in said


def test_an_interrupted_run_is_reported_incomplete_and_report_exits_130(tmp_path: Path, small_tsv: Path) -> None:
    run, run_dir = start_slow_run(tmp_path, small_tsv)
    run.send_signal(signal.SIGTERM)
    run.communicate(timeout=60)
    assert run.returncode == 130
    (model,) = json.loads((run_dir / "metrics.json").read_text())["models"].values()
    assert model["incomplete"] is True and model["selected"] == 60
    report = cli("report", str(run_dir), cwd=tmp_path)
    assert report.returncode == 130, report.stderr
    said = (run_dir / "report.md").read_text()
    assert "INTERRUPTED" in said and "of 60 selected items got no answer" in said


def test_a_killed_run_is_reported_incomplete_and_report_exits_3(tmp_path: Path, small_tsv: Path) -> None:
    run, run_dir = start_slow_run(tmp_path, small_tsv)
    run.kill()
    run.communicate(timeout=60)
    report = cli("report", str(run_dir), cwd=tmp_path)
    assert report.returncode == 3, report.stderr
    missing = 60 - len(read_records(run_dir / "records.jsonl"))
    said = " ".join(report.stdout.split())
    assert f"{missing} of 60 selected items got no answer ({missing} never recorded; the run did not finish)" in said


def test_a_run_that_selects_nothing_says_so_in_its_reports(tmp_path: Path) -> None:
    from gmai_client.cli import EXIT_EMPTY, main

    args = ["run", "--no-progress", "--out", str(tmp_path), "--run-name", "e"]
    assert main([*args, "--select", "modality=Fundus Photography & department=Urology"]) == EXIT_EMPTY
    for name in ("report.md", "report.html"):
        said = (tmp_path / "e" / name).read_text()
        assert "no item was selected" in said and "no answer key" not in said.lower()
    assert main(["report", str(tmp_path / "e")]) == EXIT_EMPTY


def test_a_model_that_could_not_start_is_named_with_its_reason_in_the_reports(tmp_path: Path) -> None:
    from gmai_client.cli import EXIT_STOPPED, main

    missing = tmp_path / "nowhere.jsonl"
    args = ["run", "--no-progress", "--out", str(tmp_path), "--run-name", "n", "--limit", "3"]
    assert main([*args, "-m", f"replay:{missing}", "-B", "label=rp"]) == EXIT_STOPPED
    for name in ("report.md", "report.html"):
        said = " ".join((tmp_path / "n" / name).read_text().split())
        assert "rp: 3 of 3 selected items got no answer (3 never recorded; rp stopped early: could not start" in said
        assert "nowhere.jsonl" in said and "no answer key" not in said.lower()


def test_the_html_shows_the_answered_only_figure_the_console_shows(tmp_path: Path) -> None:
    from gmai_client.cli import main

    assert main(["run", "--no-progress", "--out", str(tmp_path), "--run-name", "a", "--limit", "20"]) == 0
    accuracy = json.loads((tmp_path / "a/metrics.json").read_text())["models"]["random"]["overall"]["accuracy"]
    page = (tmp_path / "a/report.html").read_text()
    row = page[page.index('<tr data-model="random">') :]
    cells = re.findall(r'<td class="num">([^<]*)</td>', row[: row.index("</tr>")])
    answered_only = cells[6]  # after the interval and the five counts
    assert answered_only == f"{100 * accuracy:.2f}"  # nothing errored: equal to acc, as in the console

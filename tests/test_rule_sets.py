"""Tests for the rule sets as a user meets them: ``--rules`` on run, plan and report, every output
naming the set and showing all three side by side, and a finished run rescored without a request.

(Each era's letters against that era's own VLMEvalKit: test_conformance.py.)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gmai_client.cli import EXIT_USAGE, main
from gmai_client.protocol.rulesets import RULE_NAMES, VLMEVALKIT_2024, VLMEVALKIT_2026, rule_set
from gmai_client.results.records import read_records
from gmai_client.testing import answer_corpus

ERAS = ("vlmevalkit-2024", "vlmevalkit-2025", "vlmevalkit-2026")


@pytest.fixture
def answered(tmp_path: Path) -> tuple[Path, Path]:
    """A small corpus (every answer style, so the eras read some answers differently) and its answers."""
    tsv, answers, _ = answer_corpus.write(tmp_path / "corpus", 171, seed=3)
    return tsv, answers


def _run(tsv: Path, answers: Path, out: Path, *extra: str) -> int:
    return main(["run", "--data", str(tsv), "--model", f"replay:{answers}", "--no-progress", "--out", str(out), *extra])


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def test_rule_sets_are_named_by_year_and_latest_is_the_newest() -> None:
    assert (*ERAS, "latest") == RULE_NAMES
    assert rule_set("latest") is VLMEVALKIT_2026
    assert VLMEVALKIT_2024.letter_window is None and VLMEVALKIT_2026.answer_is_fallback


def test_every_output_names_the_rule_set_and_shows_all_three(
    answered: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(*answered, tmp_path / "runs", "--run-name", "r") == 0  # default: the published table's rules
    run_dir = tmp_path / "runs" / "r"
    printed = " ".join(capsys.readouterr().out.split())  # the tables wrap their titles
    assert "rules vlmevalkit-2024" in printed and "the same answers under each rule set" in printed

    metrics = _metrics(run_dir)
    assert metrics["protocol"]["rules"].startswith("vlmevalkit-2024: VLMEvalKit 69268c70")
    sets = metrics["rule_sets"]["sets"]
    assert metrics["rule_sets"]["headline"] == "vlmevalkit-2024" and list(sets) == list(ERAS)
    (label,) = metrics["models"]
    headline = metrics["models"][label]["overall"]["accuracy"]
    assert sets["vlmevalkit-2024"]["models"][label]["accuracy"] == headline
    assert sets["vlmevalkit-2024"]["models"][label]["letters_differ_from_headline"] == 0
    assert sets["vlmevalkit-2025"]["models"][label]["letters_differ_from_headline"] > 0
    assert set(sets["vlmevalkit-2026"]["models"][label]["groups"]) >= {"clinical VQA task", "category"}

    with (run_dir / "metrics.csv").open(encoding="utf-8") as handle:
        assert {row["rules"] for row in csv.DictReader(handle)} == {"vlmevalkit-2024"}
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "Rule set: **vlmevalkit-2024**" in report and "## Under each rule set" in report
    assert "### By department, under each rule set" in report
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Rule set: vlmevalkit-2024" in html and "vlmevalkit-2026" in html
    assert "Table: accuracy by department under each rule set" in html
    note = (run_dir / "predictions" / "README.md").read_text(encoding="utf-8")
    assert "scored them under vlmevalkit-2024" in note


def test_report_rules_rescores_a_finished_run_without_asking_the_model(
    answered: tuple[Path, Path], tmp_path: Path
) -> None:
    tsv, answers = answered
    assert _run(tsv, answers, tmp_path / "runs", "--run-name", "r") == 0
    run_dir = tmp_path / "runs" / "r"
    before = _metrics(run_dir)
    (label,) = before["models"]
    expected = before["rule_sets"]["sets"]["vlmevalkit-2025"]["models"][label]["accuracy"]
    letters = {r.index: r.letters for r in read_records(run_dir / "records.jsonl")}
    answers.unlink()  # the model's answers are gone: a report can only read the records

    assert main(["report", str(run_dir), "--rules", "vlmevalkit-2025"]) == 0
    after = _metrics(run_dir)
    assert after["rule_sets"]["headline"] == "vlmevalkit-2025"
    assert after["models"][label]["overall"]["accuracy"] == expected != before["models"][label]["overall"]["accuracy"]
    rescored = {r.index: r.letters for r in read_records(run_dir / "records.jsonl")}
    assert rescored != letters  # the journal agrees with the new headline
    # The folder keeps the set it was last scored under.
    assert main(["report", str(run_dir)]) == 0
    assert _metrics(run_dir)["models"][label]["overall"]["accuracy"] == expected


def test_a_folder_from_before_rule_sets_keeps_the_2025_rules_it_was_scored_under(
    answered: tuple[Path, Path], tmp_path: Path
) -> None:
    tsv, answers = answered
    assert _run(tsv, answers, tmp_path / "runs", "--run-name", "old", "--rules", "vlmevalkit-2025") == 0
    run_dir = tmp_path / "runs" / "old"
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    del config["config"]["protocol"]["rules"]  # as an earlier client wrote it
    (run_dir / "config.json").write_text(json.dumps(config), encoding="utf-8")
    letters = {r.index: r.letters for r in read_records(run_dir / "records.jsonl")}

    assert main(["report", str(run_dir)]) == 0
    assert _metrics(run_dir)["rule_sets"]["headline"] == "vlmevalkit-2025"
    assert {r.index: r.letters for r in read_records(run_dir / "records.jsonl")} == letters


def test_the_rule_set_is_not_part_of_the_run_identity(answered: tuple[Path, Path], tmp_path: Path) -> None:
    """Every set sends the same requests, so runs under two sets share their folder."""
    tsv, answers = answered
    assert _run(tsv, answers, tmp_path / "runs") == 0
    assert _run(tsv, answers, tmp_path / "runs", "--rules", "latest") == 0
    (folder,) = (tmp_path / "runs").iterdir()
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))["config"]["protocol"]
    assert saved["rules"] == "vlmevalkit-2026"  # "latest" is kept as the set it named
    assert _metrics(folder)["rule_sets"]["headline"] == "vlmevalkit-2026"


def test_an_unknown_rule_set_is_a_usage_error_naming_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["run", "--rules", "vlmevalkit-2023", "--out", str(tmp_path)])
    assert stop.value.code == EXIT_USAGE
    assert "vlmevalkit-2024, vlmevalkit-2025, vlmevalkit-2026, latest" in capsys.readouterr().err


def test_plan_names_the_rule_set(
    answered: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tsv, answers = answered
    assert main(["plan", "--data", str(tsv), "--model", f"replay:{answers}", "--rules", "vlmevalkit-2025"]) == 0
    assert "Scored under vlmevalkit-2025" in " ".join(capsys.readouterr().out.split())

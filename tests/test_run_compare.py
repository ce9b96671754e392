"""Tests for ``compare RUN_DIR...``: runs made apart, at other times, on other items and under other
rules, set side by side exactly as one run with their models would show them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gmai_client.cli import EXIT_EMPTY, EXIT_ERRORS, EXIT_OK, EXIT_STOPPED, EXIT_USAGE, main
from gmai_client.results.records import read_records
from gmai_client.results.rundir import RunLock
from gmai_client.testing import answer_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """171 items answered in every style (so the rule sets read some answers differently)."""
    tsv, answers, _ = answer_corpus.write(tmp_path_factory.mktemp("corpus"), 171, seed=5)
    return tsv, answers


def _rows(tsv: Path, out: Path, first: int, last: int, *, edit: str = "") -> Path:
    """A data file of the corpus's rows ``first``..``last`` (1-based); ``edit``: an index whose
    question is changed (same index, another row)."""
    header, *rows = tsv.read_text(encoding="utf-8").splitlines()
    chosen = rows[first - 1 : last]
    if edit:
        chosen = [row.replace("\t", "\tEdited: ", 1) if row.split("\t", 1)[0] == edit else row for row in chosen]
    out.write_text("\n".join([header, *chosen]) + "\n", encoding="utf-8")
    return out


def _run(data: Path, out: Path, name: str, *models: str) -> Path:
    code = main(["run", "--data", str(data), *models, "--no-progress", "--out", str(out), "--run-name", name])
    assert code == EXIT_OK
    return out / name


def _two_runs(tsv: Path, tmp_path: Path, rows: int, *second: str) -> tuple[Path, Path, Path]:
    """(the data file of the corpus's first ``rows`` rows, a run of ``RANDOM`` on it named "a", a run of
    the ``second`` options on it named "b")."""
    data = _rows(tsv, tmp_path / "d.tsv", 1, rows)
    return data, _run(data, tmp_path / "runs", "a", *RANDOM), _run(data, tmp_path / "runs", "b", *second)


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def _replay(answers: Path) -> list[str]:
    return ["-m", f"replay:{answers}", "-B", "label=replayed"]


RANDOM = ["-m", "random", "-B", "label=rnd"]


def test_two_runs_on_overlapping_items_under_other_rules_equal_one_run_of_both_on_the_shared_items(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    tsv, answers = corpus
    runs = tmp_path / "runs"
    first = _run(_rows(tsv, tmp_path / "a.tsv", 1, 120), runs, "a", *_replay(answers), "--rules", "vlmevalkit-2026")
    second = _run(_rows(tsv, tmp_path / "b.tsv", 31, 171), runs, "b", *RANDOM)
    together = _run(_rows(tsv, tmp_path / "ab.tsv", 31, 120), runs, "ab", *_replay(answers), *RANDOM)

    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "cmp")]) == EXIT_OK
    compared, single = _metrics(tmp_path / "cmp"), _metrics(together)
    assert compared["rule_sets"]["headline"] == single["rule_sets"]["headline"] == "vlmevalkit-2024"
    for label in ("replayed", "rnd"):
        for key in ("overall", "groups", "macro", "multi_answer"):
            assert compared["models"][label][key] == single["models"][label][key], (label, key)
    assert compared["comparison"]["paired"] == single["comparison"]["paired"]
    assert compared["models"]["rnd"]["overall"]["n"] == 90
    # The replayed run was scored under 2026: its answers were read again under 2024 (nothing sent).
    own = _metrics(first)["rule_sets"]["sets"]
    assert own["vlmevalkit-2024"] != own["vlmevalkit-2026"]  # the eras do read this corpus otherwise
    about = json.loads((tmp_path / "cmp" / "compare.json").read_text(encoding="utf-8"))
    assert about["rescored"] == [str(first)]
    assert about["items"] == 90
    assert about["left_out"] == {str(first): 30, str(second): 51}
    assert [(m["label"], m["folder"], m["rules"], m["status"]) for m in about["models"]] == [
        ("replayed", str(first), "vlmevalkit-2026", "finished"),
        ("rnd", str(second), "vlmevalkit-2024", "finished"),
    ]
    report = (tmp_path / "cmp" / "report.md").read_text(encoding="utf-8")
    assert "## Runs compared" in report and "90 items compared" in report
    page = (tmp_path / "cmp" / "report.html").read_text(encoding="utf-8")
    assert "Runs compared" in page and "runs compared on the items they share" in page
    # The runs' own folders are left as they were.
    assert _metrics(first)["rule_sets"]["headline"] == "vlmevalkit-2026"


def test_an_item_changed_between_runs_is_named_and_left_out_and_strict_refuses(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tsv, answers = corpus
    first = _run(_rows(tsv, tmp_path / "a.tsv", 1, 40), tmp_path / "runs", "a", *RANDOM)
    edited_index = tsv.read_text(encoding="utf-8").splitlines()[7].split("\t", 1)[0]
    edited = _rows(tsv, tmp_path / "b.tsv", 1, 40, edit=edited_index)
    second = _run(edited, tmp_path / "runs", "b", *_replay(answers))

    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "cmp")]) == EXIT_OK
    about = json.loads((tmp_path / "cmp" / "compare.json").read_text(encoding="utf-8"))
    assert about["changed_items"] == [edited_index]
    assert about["items"] == 39
    out = capsys.readouterr().out
    assert "another content in another run" in out and edited_index in out

    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "c2"), "--strict"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--strict" in err and edited_index in err
    assert not (tmp_path / "c2").exists()


def test_two_runs_of_one_label_are_told_apart_by_their_date(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    tsv, _ = corpus
    data = _rows(tsv, tmp_path / "d.tsv", 1, 30)
    first = _run(data, tmp_path / "runs", "monday", *RANDOM)
    second = _run(data, tmp_path / "runs", "tuesday", "-m", "random", "-B", "label=rnd", "-B", "seed=9")
    config = json.loads((second / "config.json").read_text(encoding="utf-8"))
    config["started"] = "2026-12-08T09:00:00+00:00"  # as if run the next day
    (second / "config.json").write_text(json.dumps(config), encoding="utf-8")

    code = main(["compare", str(first), str(second), "--out", str(tmp_path / "cmp"), "--reference", "rnd (2026-12-08)"])
    assert code == EXIT_OK
    metrics = _metrics(tmp_path / "cmp")
    day = json.loads((first / "config.json").read_text(encoding="utf-8"))["started"][:10]
    assert list(metrics["models"]) == [f"rnd ({day})", "rnd (2026-12-08)"]
    assert metrics["comparison"]["reference"] == "rnd (2026-12-08)"


def test_runs_asked_otherwise_are_compared_with_the_difference_said_or_refused_with_strict(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tsv, _ = corpus
    data = _rows(tsv, tmp_path / "d.tsv", 1, 20)
    first = _run(data, tmp_path / "runs", "cold", *RANDOM)
    second = _run(data, tmp_path / "runs", "warm", "-m", "random", "-B", "label=hot", "--temperature", "0.7")

    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "cmp")]) == EXIT_OK
    assert "The runs differ: temperature: 0.0 in cold, 0.7 in warm" in capsys.readouterr().out
    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "c2"), "--strict"]) == EXIT_USAGE
    assert "temperature" in capsys.readouterr().err


def test_what_cannot_be_compared_is_a_usage_error_and_nothing_is_written(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tsv, _ = corpus
    first = _run(_rows(tsv, tmp_path / "a.tsv", 1, 10), tmp_path / "runs", "a", *RANDOM)
    second = _run(_rows(tsv, tmp_path / "b.tsv", 11, 20), tmp_path / "runs", "b", "-m", "random", "-B", "label=r2")
    records_before = (first / "records.jsonl").read_bytes()

    assert main(["compare", str(first), str(tmp_path / "nowhere")]) == EXIT_USAGE
    assert "not a run folder" in capsys.readouterr().err
    assert main(["compare", str(first), str(first)]) == EXIT_USAGE  # the same folder twice
    assert main(["compare", str(first), str(second), "--out", str(second)]) == EXIT_USAGE  # over a run's reports
    assert "is a run folder" in capsys.readouterr().err
    with RunLock(second):  # a run still writing its folder
        assert main(["compare", str(first), str(second), "--out", str(tmp_path / "cmp")]) == EXIT_USAGE
        assert "in use" in capsys.readouterr().err
    assert (first / "records.jsonl").read_bytes() == records_before
    # No item in common: the report says so, and the exit status says nothing was compared.
    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "cmp")]) == EXIT_EMPTY
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text(encoding="utf-8"))["items"] == 0


def test_an_incomplete_run_is_marked_and_its_missing_items_are_left_out(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    tsv, answers = corpus
    data = _rows(tsv, tmp_path / "d.tsv", 1, 30)
    complete = _run(data, tmp_path / "runs", "full", *RANDOM)
    partial = _run(data, tmp_path / "runs", "part", *_replay(answers))
    kept = read_records(partial / "records.jsonl")[:25]  # as if killed after 25 items
    (partial / "records.jsonl").write_text(
        "".join(line + "\n" for line in (partial / "records.jsonl").read_text(encoding="utf-8").splitlines()[:25]),
        encoding="utf-8",
    )
    (partial / "metrics.json").unlink()

    # Compared on what both answered; the exit status is the killed run's, as `report` of it would exit.
    assert main(["compare", str(complete), str(partial), "--out", str(tmp_path / "cmp")]) == EXIT_STOPPED
    about = json.loads((tmp_path / "cmp" / "compare.json").read_text(encoding="utf-8"))
    assert about["items"] == len(kept) == 25
    assert [m["status"] for m in about["models"]] == ["finished", "interrupted"]
    assert "INTERRUPTED" in (tmp_path / "cmp" / "report.md").read_text(encoding="utf-8")


def test_compare_from_python_returns_what_was_compared(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    import gmai_client

    tsv, answers = corpus
    first = _run(_rows(tsv, tmp_path / "a.tsv", 1, 50), tmp_path / "runs", "a", *RANDOM)
    second = _run(_rows(tsv, tmp_path / "b.tsv", 41, 60), tmp_path / "runs", "b", *_replay(answers))
    compared = gmai_client.compare([first, second], rules="vlmevalkit-2026")
    assert compared.items == 10 and compared.rules.name == "vlmevalkit-2026"
    assert [c.label for c in compared.columns] == ["rnd", "replayed"]
    assert {r.index for r in compared.records} == {r.index for r in read_records(second / "records.jsonl")[:10]}
    (folder,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("compare-rnd-replayed-")]
    assert _metrics(folder)["rule_sets"]["headline"] == "vlmevalkit-2026"


def test_a_read_only_copy_of_a_run_is_compared_without_its_lock_unless_a_run_holds_it(
    corpus: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _data, first, second = _two_runs(corpus[0], tmp_path, 10, "-m", "random", "-B", "label=r2")
    # As another machine's runs mounted read-only (root may write anywhere: the check is what is faked).
    monkeypatch.setattr("gmai_client.results.run_compare.os.access", lambda path, mode: False)
    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "cmp")]) == EXIT_OK
    assert not (first / ".lock").exists()
    with RunLock(second):
        assert main(["compare", str(first), str(second), "--out", str(tmp_path / "c2")]) == EXIT_USAGE


def test_an_epochs_run_is_compared_on_its_first_sample_and_is_not_marked_incomplete(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    tsv, _ = corpus
    data = _rows(tsv, tmp_path / "d.tsv", 1, 10)
    once = _run(data, tmp_path / "runs", "once", *RANDOM)
    thrice = _run(data, tmp_path / "runs", "thrice", "-m", "random", "-B", "label=r3", "--epochs", "3")
    assert main(["compare", str(once), str(thrice), "--out", str(tmp_path / "cmp")]) == EXIT_OK
    about = json.loads((tmp_path / "cmp" / "compare.json").read_text(encoding="utf-8"))
    assert [m["status"] for m in about["models"]] == ["finished", "finished"]
    report = (tmp_path / "cmp" / "report.md").read_text(encoding="utf-8")
    assert f"{thrice} asked 3 samples per item: compared on each model's first" in report
    assert list(_metrics(tmp_path / "cmp")["models"]) == ["rnd", "r3"]  # no column per sample


def test_the_report_never_goes_inside_a_run_folder_and_an_earlier_comparisons_files_go(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, first, second = _two_runs(corpus[0], tmp_path, 10, "-m", "random", "-B", "label=r2")
    third = _run(data, tmp_path / "runs", "c", "-m", "random", "-B", "label=r3")
    before = sorted(p.relative_to(first) for p in first.rglob("*"))
    assert main(["compare", str(first), str(second), "--out", str(first / "predictions")]) == EXIT_USAGE
    assert "inside the run folder" in capsys.readouterr().err
    assert sorted(p.relative_to(first) for p in first.rglob("*")) == before

    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "cmp")]) == EXIT_OK
    assert main(["compare", str(first), str(third), "--out", str(tmp_path / "cmp")]) == EXIT_OK
    assert sorted(p.stem for p in (tmp_path / "cmp" / "predictions").glob("*.tsv")) == ["r3", "rnd"]


def test_unreadable_config_and_records_of_a_model_the_config_does_not_name(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _data, first, second = _two_runs(corpus[0], tmp_path, 10, "-m", "random", "-B", "label=r2")
    lines = (second / "records.jsonl").read_text(encoding="utf-8").splitlines()
    phantom = json.loads(lines[0]) | {"model": "zzz"}
    (second / "records.jsonl").write_text("\n".join([*lines, json.dumps(phantom)]) + "\n", encoding="utf-8")
    # Left out of the comparison; the run counts as `report` counts it (a model that answered 1 of 10: exit 3).
    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "cmp")]) == EXIT_STOPPED
    assert list(_metrics(tmp_path / "cmp")["models"]) == ["rnd", "r2"]
    assert "records of zzz, which its config.json names no model of" in capsys.readouterr().out

    (second / "config.json").write_text("{not json", encoding="utf-8")
    assert main(["compare", str(first), str(second), "--out", str(tmp_path / "c2")]) == EXIT_USAGE
    assert main(["report", str(second)]) == EXIT_USAGE
    assert "config.json is unreadable" in capsys.readouterr().err


def test_a_run_with_errors_is_compared_with_them_counted_wrong_and_its_own_folder_named(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tsv, _ = corpus
    data = _rows(tsv, tmp_path / "d.tsv", 1, 10)
    first = _run(data, tmp_path / "runs", "a", *RANDOM)
    indices = [line.split("\t", 1)[0] for line in data.read_text(encoding="utf-8").splitlines()[1:]]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({i: ({"error": "BadRequest"} if i == indices[3] else "A") for i in indices}))
    code = main(["run", "--data", str(data), "-m", f"scripted:{script}", "-B", "label=s", "--no-progress",
                 "--out", str(tmp_path / "runs"), "--run-name", "b"])  # fmt: skip
    assert code == EXIT_ERRORS
    capsys.readouterr()
    assert main(["compare", str(first), str(tmp_path / "runs" / "b"), "--out", str(tmp_path / "cmp")]) == EXIT_ERRORS
    said = capsys.readouterr().err
    assert "its errors and answers never judged are counted wrong" in said and "--resume" in said
    assert _metrics(tmp_path / "cmp")["models"]["s"]["overall"]["errored"] == 1
    assert "Finish the run with" not in (tmp_path / "cmp" / "report.md").read_text(encoding="utf-8")
    assert "Finish the run with" not in (tmp_path / "cmp" / "report.html").read_text(encoding="utf-8")
    # A second compare writing the same folder meanwhile is refused, naming the process.
    with RunLock(tmp_path / "cmp"):
        assert main(["compare", str(first), str(tmp_path / "runs" / "b"), "--out", str(tmp_path / "cmp")]) == 2
    assert "another compare is writing it" in capsys.readouterr().err


def test_the_same_command_run_in_two_places_is_told_apart_by_its_path(
    corpus: tuple[Path, Path], tmp_path: Path
) -> None:
    tsv, _ = corpus
    data = _rows(tsv, tmp_path / "d.tsv", 1, 10)
    here = _run(data, tmp_path / "laptop", "r", *RANDOM)
    there = _run(data, tmp_path / "gpu-box", "r", *RANDOM)
    for folder in (here, there):  # started the same minute of the same day
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config["started"] = "2026-12-07T10:00:00+00:00"
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert main(["compare", str(here), str(there), "--out", str(tmp_path / "cmp")]) == EXIT_OK
    assert list(_metrics(tmp_path / "cmp")["models"]) == [f"rnd ({here})", f"rnd ({there})"]

"""Tests for gmai_client.results.predictions: VLMEvalKit's prediction file (xlsx and its TSV twin)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from openpyxl import load_workbook

from gmai_client.results.predictions import FAILURE_PREDICTION, file_stems, prediction_table, write_prediction_files
from gmai_client.types import Record

ROW = (
    ("index", "12"),
    ("question", " What is shown? "),
    ("A", "cyst"),
    ("B", "none"),
    ("C", "N/A"),
    ("answer", "A"),
    ("category", "cyst"),
)


def record(index: str, *, model: str = "m", status: str = "ok", prediction: str | None = "A", **kw) -> Record:
    row = tuple((name, index if name == "index" else value) for name, value in ROW)
    return Record(index=index, model=model, status=status, prediction=prediction, row=row, **kw)


def test_table_has_the_dataset_columns_then_prediction_sorted_by_index() -> None:
    header, rows = prediction_table([record("12"), record("3", prediction="  B  ")])
    assert header == ["index", "question", "A", "B", "C", "answer", "category", "prediction"]
    assert rows[0] == [3, " What is shown? ", "cyst", "none", "", "A", "cyst", "  B  "]
    assert rows[1][0] == 12  # integer indexes as numbers, as pandas reads them


def test_a_model_that_thought_gets_a_thinking_column_after_prediction_as_split_think_writes_it(
    tmp_path: Path,
) -> None:
    records = [record("1", thinking="It is round, so a cyst."), record("2", prediction="B")]
    header, rows = prediction_table(records)
    assert header[-2:] == ["prediction", "thinking"]
    assert [row[-2:] for row in rows] == [["A", "It is round, so a cyst."], ["B", ""]]
    # A model that gave no thinking keeps VLMEvalKit's plain file; a dataset column of that name is not copied.
    other = [record("1", model="plain"), record("2", model="plain")]
    assert prediction_table(other)[0][-1] == "prediction"
    (tsv,) = [p for p in write_prediction_files(tmp_path, records) if p.suffix == ".tsv"]
    with tsv.open(encoding="utf-8", newline="") as handle:
        read = list(csv.DictReader(handle, delimiter="\t"))
    assert read[0]["thinking"] == "It is round, so a cyst." and read[0]["prediction"] == "A"


def test_an_item_without_answer_carries_vlmevalkits_failure_text() -> None:
    _, rows = prediction_table([record("1", status="error", prediction=None, error="timeout")])
    assert rows[0][-1] == FAILURE_PREDICTION == "Failed to obtain answer via API."


def test_labels_that_make_the_same_file_name_get_different_files(tmp_path: Path) -> None:
    stems = file_stems(["m/1", "m:1", "gpt-4o"])
    assert stems["gpt-4o"] == "gpt-4o"
    assert len(set(stems.values())) == 3
    paths = write_prediction_files(tmp_path, [record("1", model="m/1"), record("1", model="m:1", prediction="B")])
    assert len(paths) == 4 and len({p.name for p in paths}) == 4


#: The label a documented five-endpoint spec used to get: far past a file name's 255 bytes.
LONG_LABEL = "openai:llava-hf/llava-1.5-7b-hf@" + ",".join(
    f"http://gpu-node-{n:02d}.cluster.example.org:8000/v1" for n in range(5)
)


def test_a_long_label_gets_a_bounded_file_name_that_stays_unique(tmp_path: Path) -> None:
    other = LONG_LABEL.replace("gpu-node-04", "gpu-node-99")  # differs only past the cut
    stems = file_stems([LONG_LABEL, other])
    assert all(len(stem.encode()) <= 100 for stem in stems.values())
    assert stems[LONG_LABEL] != stems[other]
    paths = write_prediction_files(tmp_path, [record("1", model=LONG_LABEL), record("1", model=other)])
    assert len({p.name for p in paths}) == 4 and all(p.is_file() for p in paths)


def test_a_run_with_a_long_label_writes_every_report(tmp_path: Path) -> None:
    from gmai_client.cli import main

    code = main(["run", "-m", "random", "-B", f"label={LONG_LABEL}", "--limit", "4", "--no-progress",
                 "--no-cache", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    assert len([p for p in (run_dir / "predictions").iterdir() if p.suffix in (".xlsx", ".tsv")]) == 2
    assert (run_dir / "report.html").is_file() and (run_dir / "report.md").is_file()
    assert any((run_dir / "plots").glob("*.svg"))


def test_an_answer_too_long_for_an_xlsx_cell_is_said_and_kept_whole_in_the_tsv(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long_answer = "The lesion is benign. " * 2000 + "Answer: B"  # 44,009 characters
    xlsx, tsv = write_prediction_files(tmp_path, [record("7", prediction=long_answer), record("8")])

    sheet = list(load_workbook(xlsx, read_only=True).active.iter_rows(values_only=True))
    assert len(sheet[1][-1]) == 32_767  # Excel's limit: the xlsx cannot hold more
    with tsv.open(newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle, delimiter="\t"))[1][-1] == long_answer  # the TSV twin keeps it all

    said = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "m.xlsx" in said and "32,767" in said and "m.tsv" in said and "7" in said
    note = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "m.xlsx" in note and "m.tsv" in note and "index 7" in note and "44,009" in note


def test_the_note_says_nothing_was_cut_when_nothing_was(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_prediction_files(tmp_path, [record("1", prediction="B")])
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert "cut" not in (tmp_path / "README.md").read_text(encoding="utf-8")


def test_bad_rows_are_left_out_and_both_files_hold_the_same_table(tmp_path: Path) -> None:
    bad = Record(index="f.tsv:row9", model="m", status="error", prediction=None, error_kind="bad_row")
    xlsx, tsv = write_prediction_files(tmp_path, [record("1", prediction="two\nlines\tand a tab"), bad])
    sheet = list(load_workbook(xlsx, read_only=True).active.iter_rows(values_only=True))
    with tsv.open(newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle, delimiter="\t"))
    assert len(sheet) == len(table) == 2
    assert sheet[1][-1] == table[1][-1] == "two\nlines\tand a tab"
    assert sheet[1][0] == 1 and table[1][0] == "1"

"""The replay backend's predictions files: an index given twice is an error naming the file and
its rows, never the last one silently winning; a records.jsonl of this client keeps its own rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gmai_client.backends.replay import load_predictions
from gmai_client.errors import ConfigError


def test_a_tsv_with_an_index_twice_is_refused_naming_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "preds.tsv"
    path.write_text("index\tprediction\n1\tA\n2\tB\n1\tC\n3\tD\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_predictions(path)
    message = str(caught.value)
    assert str(path) in message and "index 1" in message and "rows 2 and 4" in message


def test_a_jsonl_with_an_index_twice_is_refused_naming_the_lines(tmp_path: Path) -> None:
    path = tmp_path / "preds.jsonl"
    lines = [{"index": 7, "prediction": "A"}, {"index": "8", "prediction": "B"}, {"index": "7", "prediction": "C"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"index 7 .*lines 1 and 3"):
        load_predictions(path)


def test_an_xlsx_with_an_index_twice_is_refused(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    path = tmp_path / "preds.xlsx"
    book = openpyxl.Workbook()
    for row in (["index", "prediction"], [5, "A"], [5.0, "B"]):
        book.active.append(row)
    book.save(path)
    with pytest.raises(ConfigError, match="index 5"):
        load_predictions(path)


def record(index: str, model: str, status: str, prediction: str | None) -> str:
    return json.dumps({"index": index, "model": model, "status": status, "prediction": prediction}) + "\n"


def test_a_records_journal_keeps_its_last_record_per_item(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"  # a resumed run: the error, then the answer of --retry-errors
    path.write_text(record("1", "m", "error", None) + record("2", "m", "ok", "B") + record("1", "m", "ok", "A"))
    assert load_predictions(path) == {"1": "A", "2": "B"}


def test_a_records_journal_of_several_models_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(record("1", "gpt-4o", "ok", "A") + record("1", "claude", "ok", "B"))
    with pytest.raises(ConfigError, match=r"several models \(claude, gpt-4o\)"):
        load_predictions(path)

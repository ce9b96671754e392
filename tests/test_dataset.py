"""The TSV reader: real column names, options, keys, departments, streaming, and bad rows."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import pytest
from PIL import Image as PILImage

from gmai_client.dataset import iter_items, open_dataset
from gmai_client.errors import DataError
from gmai_client.types import BadRow, Item
from tests.conftest import write_rows

HEADER = [
    "index",
    "question",
    "A",
    "B",
    "C",
    "D",
    "E",
    "answer",
    "image",
    "category",
    "clinical VQA task",
    "department",
    "perceptual granularity",
    "modality",
    "original task",
]


def png_b64() -> str:
    buffer = io.BytesIO()
    PILImage.new("L", (8, 8), 128).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def row(index: str, *, options=("cat", "dog", "", "", ""), answer="A", image=None, department="Ophthalmology"):
    return [
        index,
        f"Question {index}?",
        *options,
        answer,
        png_b64() if image is None else image,
        "glaucoma",
        "Disease Diagnosis",
        department,
        "Image Level",
        "Fundus Photography",
        "orig",
    ]


def read(path: Path) -> list[Item | BadRow]:
    return list(iter_items(open_dataset([path])))


def test_reads_items_with_metadata_and_case_insensitive_header(tmp_path: Path) -> None:
    header = [name.upper() if name in ("index", "answer") else name for name in HEADER]
    path = write_rows(tmp_path / "val.tsv", header, [row("7", options=("cat", "dog", "cow", "", "none"))])
    (item,) = read(path)
    assert isinstance(item, Item)
    assert item.index == "7"
    assert item.options == (("A", "cat"), ("B", "dog"), ("C", "cow"))  # empty and "none" cells dropped
    assert item.answer == ("A",)
    assert (item.task, item.department, item.granularity, item.modality, item.category) == (
        "Disease Diagnosis",
        "Ophthalmology",
        "Image Level",
        "Fundus Photography",
        "glaucoma",
    )
    assert item.extra == {"original task": "orig"}
    assert item.source.file == str(path) and item.source.row == 1


def test_empty_department_is_the_na_group(tmp_path: Path) -> None:
    (item,) = read(write_rows(tmp_path / "v.tsv", HEADER, [row("1", department="")]))
    assert item.department == "N/A"


def test_multi_answer_key(tmp_path: Path) -> None:
    (item,) = read(write_rows(tmp_path / "v.tsv", HEADER, [row("1", options=("a", "b", "c", "", ""), answer="A,C")]))
    assert item.answer == ("A", "C") and item.is_multi_answer


def test_test_split_without_answer_column(tmp_path: Path) -> None:
    header = [h for h in HEADER if h != "answer"]
    cells = row("1")
    del cells[HEADER.index("answer")]
    (item,) = read(write_rows(tmp_path / "t.tsv", header, [cells]))
    assert item.answer is None


def test_bad_rows_are_reported_and_the_rest_goes_on(tmp_path: Path) -> None:
    rows = [
        row("1"),
        row("2", options=("only one", "", "", "", "")),
        row("3", answer="D"),
        row("4", image=""),
        row("5")[:5],  # truncated row
        row("6"),
    ]
    entries = read(write_rows(tmp_path / "v.tsv", HEADER, rows))
    assert [type(e).__name__ for e in entries] == ["Item", "BadRow", "BadRow", "BadRow", "BadRow", "Item"]
    bad = {e.source.index: e for e in entries if isinstance(e, BadRow)}
    assert bad["2"].field == "A" and "at least 2 options" in bad["2"].message
    assert bad["3"].field == "answer" and "not among the options" in bad["3"].message
    assert bad["4"].field == "image"
    assert "truncated" in bad["5"].message
    assert str(bad["3"]).startswith(f"{tmp_path / 'v.tsv'}, row 3, index 3")


def test_several_files_stream_in_order(tmp_path: Path) -> None:
    first = write_rows(tmp_path / "part_1.tsv", HEADER, [row("1"), row("2")])
    second = write_rows(tmp_path / "part_2.tsv", HEADER, [row("3")])
    entries = list(iter_items(open_dataset([first, second])))
    assert [e.index for e in entries] == ["1", "2", "3"]


def test_quoted_cells_with_tabs_and_newlines_between_plain_rows(tmp_path: Path) -> None:
    # Plain rows take the fast split; a row with quotes is handed to the csv module, which must
    # consume exactly the lines its multi-line cell spans and leave the next row intact.
    quoted = row("2", options=('say "cat"', "dog\twith tab", "two\nlines", "", ""))
    path = tmp_path / "v.tsv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter="\t", lineterminator="\n").writerows([HEADER, row("1"), quoted, row("3")])
    assert '"' not in path.read_text().splitlines()[1]  # row 1 really goes the fast way
    entries = read(path)
    assert [(type(e).__name__, e.index) for e in entries] == [("Item", "1"), ("Item", "2"), ("Item", "3")]
    assert entries[1].options == (("A", 'say "cat"'), ("B", "dog\twith tab"), ("C", "two\nlines"))
    assert [e.source.row for e in entries] == [1, 2, 3]


def test_windows_line_endings_and_blank_lines(tmp_path: Path) -> None:
    lines = ["\t".join(HEADER), "\t".join(row("1")), "", "\t".join(row("2"))]
    path = tmp_path / "v.tsv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    entries = read(path)
    assert [e.index for e in entries] == ["1", "2"]
    assert all(isinstance(e, Item) and e.extra == {"original task": "orig"} for e in entries)


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty file"), ("index\tquestion\tA\tB\n", r"missing required column\(s\) image")],
)
def test_file_level_problems_fail_before_any_work(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "broken.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message) as info:
        open_dataset([path])
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        open_dataset([tmp_path / "nope.tsv"])


def test_synthetic_file_reads_back(small_tsv: Path) -> None:
    entries = read(small_tsv)
    assert len(entries) == 60 and all(isinstance(e, Item) for e in entries)
    assert any(e.department == "N/A" for e in entries)

"""The TSV reader: real column names, options, keys, departments, streaming, and bad rows."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import pytest
from PIL import Image as PILImage

from gmai_client.data.dataset import find_items, iter_items, open_dataset
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
    # The empty cell is missing; lowercase "none" is an option, as pandas reads it.
    assert item.options == (("A", "cat"), ("B", "dog"), ("C", "cow"), ("E", "none"))
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


@pytest.mark.parametrize("cell", ["", "N/A", "NA", "n/a", "null", "NULL", "None", "nan", "NaN", "<NA>", "#N/A"])
def test_cells_pandas_reads_as_missing_are_no_option(tmp_path: Path, cell: str) -> None:
    (item,) = read(write_rows(tmp_path / "v.tsv", HEADER, [row("1", options=("cat", "dog", cell, "", ""))]))
    assert item.letters == ("A", "B")


@pytest.mark.parametrize("cell", ["none", " NA", "Na", "-", "0"])
def test_cells_pandas_keeps_are_options_and_can_be_the_answer(tmp_path: Path, cell: str) -> None:
    (item,) = read(write_rows(tmp_path / "v.tsv", HEADER, [row("1", options=("cat", "dog", cell, "", ""), answer="C")]))
    assert item.options[2] == ("C", cell) and item.answer == ("C",)


def test_whitespace_inside_cells_is_kept_as_pandas_keeps_it(tmp_path: Path) -> None:
    cells = row("1", options=("  cat ", "dog", "", "", ""), answer=" A")
    cells[1] = "  Is it a cat?  "
    (item,) = read(write_rows(tmp_path / "v.tsv", HEADER, [cells]))
    assert item.question == "  Is it a cat?  "
    assert item.options[0] == ("A", "  cat ")
    assert item.answer == ("A",) and item.answer_cell == " A"  # the reference never hits " A"


def test_the_row_keeps_every_cell_but_the_image_for_the_prediction_file(tmp_path: Path) -> None:
    (item,) = read(write_rows(tmp_path / "v.tsv", HEADER, [row("1", options=("cat", "dog", "N/A", "", ""))]))
    assert [name for name, _ in item.row] == [name for name in HEADER if name != "image"]
    assert dict(item.row)["C"] == "N/A" and dict(item.row)["original task"] == "orig"


def test_a_stray_quote_fails_its_row_and_every_later_row_is_read(tmp_path: Path) -> None:
    rows = [row(str(i)) for i in range(1, 601)]
    rows[9][1] = '"What is shown?'  # an unclosed quote at the start of the question of row 10
    entries = read(write_rows(tmp_path / "v.tsv", HEADER, rows))
    assert len(entries) == 600
    (bad,) = [e for e in entries if isinstance(e, BadRow)]
    assert (bad.source.row, bad.field) == (10, "question") and "never closed" in bad.message
    assert [e.index for e in entries if isinstance(e, Item)] == [str(i) for i in range(1, 601) if i != 10]


def test_two_stray_quotes_rows_apart_fail_only_their_row(tmp_path: Path) -> None:
    rows = [row(str(i)) for i in range(1, 8)]
    rows[1][1] = '"Question two'
    rows[3][1] = 'Question four"'  # a quote at the end closes nothing in pandas' reading ...
    rows[4][1] = '"Question five'  # ... but two opening quotes could pair up across rows
    entries = read(write_rows(tmp_path / "v.tsv", HEADER, rows))
    assert [e.source.row for e in entries if isinstance(e, BadRow)] == [2, 5]
    assert [e.index for e in entries if isinstance(e, Item)] == ["1", "3", "4", "6", "7"]


def test_duplicate_index_fails_the_later_row_naming_the_first(tmp_path: Path) -> None:
    entries = read(write_rows(tmp_path / "v.tsv", HEADER, [row("1"), row("2"), row("1")]))
    assert [type(e).__name__ for e in entries] == ["Item", "Item", "BadRow"]
    assert "index 1 is used twice: already at row 1" in entries[2].message
    assert entries[2].record_index == "v.tsv:row3"  # its error record does not replace item 1's


def test_duplicate_index_across_files(tmp_path: Path) -> None:
    first = write_rows(tmp_path / "part_1.tsv", HEADER, [row("1"), row("2")])
    second = write_rows(tmp_path / "part_2.tsv", HEADER, [row("2"), row("3")])
    entries = list(iter_items(open_dataset([first, second])))
    bad = [e for e in entries if isinstance(e, BadRow)]
    assert [e.index for e in entries if isinstance(e, Item)] == ["1", "2", "3"]
    assert len(bad) == 1 and f"already at {first}, row 2" in bad[0].message


def test_a_utf8_byte_order_mark_before_the_header_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "v.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join("\t".join(r) for r in [HEADER, row("1")]).encode() + b"\n")
    (item,) = read(path)
    assert item.index == "1"


def test_a_row_that_is_not_utf8_fails_naming_row_and_field(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "v.tsv", HEADER, [row("1"), row("2"), row("3")])
    data = path.read_bytes().replace(b"Question 2?", b"Question \xff2?")
    path.write_bytes(data)
    entries = read(path)
    assert [type(e).__name__ for e in entries] == ["Item", "BadRow", "Item"]
    assert entries[1].field == "question" and "not UTF-8" in entries[1].message and entries[1].source.row == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04rest-of-a-zip", "not a TSV: this is a zip archive"),
        (b"index,question,A,B,answer,image\n1,q,a,b,A,xx\n", "commas and no tabs"),
        (b"\x00\x01\x02binary", "binary data"),
    ],
)
def test_files_that_are_not_tsv_say_so(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "data.tsv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        open_dataset([path])


def test_several_files_stream_in_order(tmp_path: Path) -> None:
    first = write_rows(tmp_path / "part_1.tsv", HEADER, [row("1"), row("2")])
    second = write_rows(tmp_path / "part_2.tsv", HEADER, [row("3")])
    entries = list(iter_items(open_dataset([first, second])))
    assert [e.index for e in entries] == ["1", "2", "3"]


def test_quoted_cells_with_tabs_and_newlines_between_plain_rows(tmp_path: Path) -> None:
    # Plain rows take the fast split; a row with quotes is scanned cell by cell, which must
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


def test_find_items_parses_only_the_wanted_rows(tmp_path: Path) -> None:
    rows = [row(str(i)) for i in range(1, 50)]
    rows[5][1] = '"stray'  # a broken row elsewhere does not matter
    rows[8][1] = '"quoted, not wanted"'  # a quoted row is parsed, then left out
    path = write_rows(tmp_path / "v.tsv", HEADER, rows)
    found = list(find_items(open_dataset([path]), ["7", "3", "48", "999"]))
    assert sorted(item.index for item in found) == ["3", "48", "7"]
    assert all(item.question == f"Question {item.index}?" for item in found)


def test_every_item_knows_the_byte_offset_of_its_row_and_find_items_seeks_there(tmp_path: Path) -> None:
    rows = [row(str(i)) for i in range(1, 30)]
    rows[4][1] = '"quoted"'  # a quoted row too
    path = write_rows(tmp_path / "v.tsv", HEADER, rows)
    data = path.read_bytes()
    items = [e for e in read(path) if isinstance(e, Item)]
    assert all(data[item.source.offset :].startswith(f"{item.index}\t".encode()) for item in items)
    at = {item.index: (str(path), item.source.offset) for item in items if item.index in {"3", "5", "27"}}
    at["28"] = (str(path), 0)  # a wrong offset: the row there is the header, so 28 is found by a scan
    found = {item.index: item for item in find_items(open_dataset([path]), ["3", "5", "27", "28"], at)}
    assert sorted(found) == ["27", "28", "3", "5"] and found["5"].question == "quoted"


# --- column names as pandas gives them (a repeated header name) ---------------------------------


@pytest.mark.parametrize(
    "header",
    [
        ["A", "A", "A"],
        ["A", "A", "A.1"],  # the suffix pandas would give is taken: it skips to A.2
        ["x", "x.1", "x", "x.1", "x"],
        ["", "A", "", "A"],  # blank names are "Unnamed: <position>", numbered after the named ones
        ["a", "A", "a"],  # pandas compares names case-sensitively
    ],
)
def test_column_names_are_pandas_names(header: list[str]) -> None:
    pandas = pytest.importorskip("pandas")
    from gmai_client.data.tsv import column_names

    text = "\t".join(header) + "\n" + "\t".join("1" for _ in header) + "\n"
    assert column_names(header) == tuple(pandas.read_csv(io.StringIO(text), sep="\t").columns)


def test_a_repeated_column_is_kept_under_pandas_name_and_the_first_is_the_one_used(tmp_path: Path) -> None:
    header = [*HEADER, "A", "answer"]  # a second option A and a second answer column
    path = write_rows(tmp_path / "v.tsv", header, [[*row("1"), "second A", "B"]])
    (item,) = read(path)
    assert isinstance(item, Item)
    assert item.options[0] == ("A", "cat") and item.answer == ("A",)  # the first of each, as pandas' df["A"]
    cells = dict(item.row)  # what the prediction file holds: both columns, named as pandas names them
    assert (cells["A"], cells["A.1"], cells["answer"], cells["answer.1"]) == ("cat", "second A", "A", "B")
    assert item.extra["a.1"] == "second A"

    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(path, sep="\t", dtype=str)
    assert [name for name in frame.columns if name != "image"] == [name for name, _ in item.row]


# --- VLMEvalKit's image references: a short image cell is another row's index -------------------


def test_an_image_cell_holding_another_rows_index_shares_that_rows_image(tmp_path: Path) -> None:
    # VLMEvalKit (ImageBaseDataset.__init__): an image cell of at most 64 characters is the index of
    # the row whose image it shares, before or after it in the file.
    rows = [row("1", image="3"), row("2"), row("3"), row("4", image="2"), row("5", image="2")]
    images = {"2": png_b64(), "3": png_b64().replace("A", "B", 1)}
    rows[1][8], rows[2][8] = images["2"], images["3"]
    path = write_rows(tmp_path / "v.tsv", HEADER, rows)
    items = {e.index: e for e in read(path)}
    assert all(isinstance(e, Item) for e in items.values())
    assert items["1"].images_b64 == (images["3"],)  # a row further on
    assert items["4"].images_b64 == items["5"].images_b64 == (images["2"],)  # a row before
    # Read one at a time (resume, the report's gallery) the same holds.
    found = {item.index: item for item in find_items(open_dataset([path]), ["1", "5"])}
    assert found["1"].images_b64 == (images["3"],) and found["5"].images_b64 == (images["2"],)
    at = {"4": (str(path), items["4"].source.offset)}
    assert [item.images_b64 for item in find_items(open_dataset([path]), ["4"], at)] == [(images["2"],)]


def test_an_image_reference_to_no_row_or_to_another_reference_fails_its_row_only(tmp_path: Path) -> None:
    rows = [row("1"), row("2", image="99"), row("3", image="1"), row("4", image="3"), row("5", image="abc=")]
    entries = {e.source.index: e for e in read(write_rows(tmp_path / "v.tsv", HEADER, rows))}
    assert isinstance(entries["1"], Item) and isinstance(entries["3"], Item)
    for index in ("2", "4", "5"):
        bad = entries[index]
        assert isinstance(bad, BadRow) and bad.field == "image", index
    assert "no row of this file has the index '99'" in entries["2"].message
    assert "holds no image" in entries["4"].message  # VLMEvalKit follows a reference once
    assert "too short to be an image" in entries["5"].message

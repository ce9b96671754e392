"""The prediction files: ``predictions/<model>.xlsx`` and its TSV twin, in VLMEvalKit's format.

This is the file VLMEvalKit's inference writes and its evaluation reads (``GMAIMMBenchDataset
.evaluate``), and the file GMAI-MMBench's authors ask TEST submitters for: every column of the
dataset but the image, in the file's own order and spelling, cells as written (missing cells
empty), plus ``prediction``, the model's raw answer. An item that got no answer carries VLMEvalKit's
own failure text (``reference.API_FAILURE_TEXT``), which its evaluation scores wrong, as the
headline here does. Rows that could not be read at all (no cells to copy) are left out.

Integer indexes are written as numbers, as pandas reads them from the TSV, so that VLMEvalKit
matches the file's rows with its dataset's.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from gmai_client.reference import API_FAILURE_TEXT, is_missing
from gmai_client.types import Record

PREDICTIONS_DIR = "predictions"
#: What an item that got no answer is written with: VLMEvalKit's own failure text, scored wrong.
FAILURE_PREDICTION = API_FAILURE_TEXT + "."
#: The longest file-name stem made from a model label, in UTF-8 bytes (hash included).
MAX_STEM = 80

_INTEGER = re.compile(r"[+-]?\d+")
# Characters an xlsx cell cannot hold (XML 1.0 forbids them); openpyxl refuses them.
_ILLEGAL_XLSX = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Columns of a record written without its row (records from before rows were kept, or replays).
_FALLBACK_COLUMNS = ("index", "category", "clinical VQA task", "department", "perceptual granularity", "modality")


def write_prediction_files(folder: Path, records: Iterable[Record]) -> list[Path]:
    """One xlsx and one TSV per model; file names are unique per model label."""
    folder.mkdir(exist_ok=True)
    by_model: dict[str, list[Record]] = {}
    for record in records:
        if record.status == "error" and record.error_kind == "bad_row":
            continue
        by_model.setdefault(record.model, []).append(record)
    paths: list[Path] = []
    for label, stem in file_stems(list(by_model)).items():
        header, rows = prediction_table(by_model[label])
        paths.append(_write_xlsx(folder / f"{stem}.xlsx", header, rows))
        paths.append(_write_tsv(folder / f"{stem}.tsv", header, rows))
    return paths


def file_stems(labels: Sequence[str]) -> dict[str, str]:
    """A file-name stem per label: the label made safe, plus a short hash when it had to change,
    so that labels such as ``m/1`` and ``m:1`` never share a file. A long label (a spec with
    several endpoints) is cut to ``MAX_STEM`` bytes before its hash: a file name holds 255
    bytes, and the ``.xlsx.tmp`` written first must fit too."""
    stems: dict[str, str] = {}
    for label in labels:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label).strip("._") or "model"
        if safe != label or len(safe.encode()) > MAX_STEM:
            cut = safe.encode()[: MAX_STEM - 7].decode(errors="ignore").rstrip("._-")  # bytes: a name's limit
            safe = f"{cut}-{hashlib.sha256(label.encode()).hexdigest()[:6]}"
        stems[label] = safe
    return stems


def prediction_table(records: Sequence[Record]) -> tuple[list[str], list[list[str | int]]]:
    """The header (the dataset's columns but the image, then ``prediction``) and one row per record."""
    header: list[str] = []
    for record in records:
        for name, _ in record.row or _fallback_row(record):
            if name not in header and name.strip().lower() != "prediction":
                header.append(name)
    rows = []
    for record in sorted(records, key=lambda r: _index_key(r.index)):
        cells = dict(record.row or _fallback_row(record))
        row: list[str | int] = [_cell(name, cells.get(name, "")) for name in header]
        row.append(FAILURE_PREDICTION if record.status == "error" else (record.prediction or ""))
        rows.append(row)
    return [*header, "prediction"], rows


def _fallback_row(record: Record) -> tuple[tuple[str, str], ...]:
    values = (record.index, record.category, record.task, record.department, record.granularity, record.modality)
    options = tuple((letter, text) for letter, text in record.options)
    answer = (("answer", record.answer_cell),) if record.answer_cell is not None else ()
    return (*zip(_FALLBACK_COLUMNS, values, strict=True), *options, *answer)


def _cell(name: str, value: str) -> str | int:
    if is_missing(value):
        return ""
    if name.strip().lower() == "index" and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return value


def _index_key(index: str) -> tuple[int, int, str]:
    return (0, int(index), "") if _INTEGER.fullmatch(index) else (1, 0, index)


def _write_xlsx(path: Path, header: list[str], rows: list[list[str | int]]) -> Path:
    # xlsxwriter (what VLMEvalKit writes its own files with), streaming rows: twice as fast as
    # openpyxl's write-only mode (0.36 s for 4,550 rows). Text stays text: no number or URL guessing.
    import xlsxwriter

    tmp = path.with_suffix(".xlsx.tmp")
    settings = {"constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
                "strings_to_urls": False}  # fmt: skip
    with xlsxwriter.Workbook(str(tmp), settings) as book:
        sheet = book.add_worksheet()
        sheet.write_row(0, 0, header)
        for number, row in enumerate(rows, start=1):
            sheet.write_row(number, 0, [_ILLEGAL_XLSX.sub("", c) if isinstance(c, str) else c for c in row])
    tmp.replace(path)
    return path


def _write_tsv(path: Path, header: list[str], rows: list[list[str | int]]) -> Path:
    # Quoted only where needed (a tab, a line break or a quote in a cell): what pandas reads back.
    tmp = path.with_suffix(".tsv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)
    return path

"""The prediction files: ``predictions/<model>.xlsx`` and its TSV twin, in VLMEvalKit's format.

This is the file VLMEvalKit's inference writes and its evaluation reads (``GMAIMMBenchDataset
.evaluate``), and the file GMAI-MMBench's authors ask TEST submitters for: every column of the
dataset but the image, in the file's own order and spelling, cells as written (missing cells
empty), plus ``prediction``, the model's raw answer (and ``thinking``, its reasoning text, for a model
that gave one, the column VLMEvalKit adds with ``SPLIT_THINK`` set). An item that got no answer carries VLMEvalKit's
own failure text (``reference.API_FAILURE_TEXT``), which its evaluation scores wrong, as the
headline here does. Rows that could not be read at all (no cells to copy) are left out.

Integer indexes are written as numbers, as pandas reads them from the TSV, so that VLMEvalKit
matches the file's rows with its dataset's.

An xlsx cell holds at most 32,767 characters: a longer answer is cut there (as VLMEvalKit's own
file would cut it), never silently: a warning names the file and items, and the folder's
``README.md`` (written every time: what each file is) lists them and points at the TSV twin,
which keeps every answer whole.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gmai_client.protocol.reference import API_FAILURE_TEXT, is_missing
from gmai_client.results.atomic import written_whole
from gmai_client.types import Record

PREDICTIONS_DIR = "predictions"
#: What an item that got no answer is written with: VLMEvalKit's own failure text, scored wrong.
FAILURE_PREDICTION = API_FAILURE_TEXT + "."
#: The most characters an xlsx cell holds (Excel's limit; xlsxwriter cuts longer strings).
XLSX_CELL_LIMIT = 32_767
README = "README.md"
#: The longest file-name stem made from a model label, in UTF-8 bytes (hash included).
MAX_STEM = 80

_INTEGER = re.compile(r"[+-]?\d+")
# Characters an xlsx cell cannot hold (XML 1.0 forbids them); openpyxl refuses them.
_ILLEGAL_XLSX = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Columns of a record written without its row (records from before rows were kept, or replays).
_FALLBACK_COLUMNS = ("index", "category", "clinical VQA task", "department", "perceptual granularity", "modality")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CutCell:
    """A cell the xlsx could not hold whole: its row's index, its column and its full length."""

    index: str
    column: str
    length: int


def write_prediction_files(folder: Path, records: Iterable[Record], *, scoring: str = "") -> list[Path]:
    """One xlsx and one TSV per model (their paths are returned), file names unique per model
    label, and the folder's ``README.md`` saying what they are and which cells the xlsx cut;
    ``scoring``: a line saying which rule set the run's reports scored these answers under."""
    folder.mkdir(exist_ok=True)
    by_model: dict[str, list[Record]] = {}
    for record in records:
        if record.status == "error" and record.error_kind == "bad_row":
            continue
        by_model.setdefault(record.model, []).append(record)
    paths: list[Path] = []
    cut: dict[str, list[CutCell]] = {}
    for label, stem in file_stems(list(by_model)).items():
        header, rows = prediction_table(by_model[label])
        paths.append(_write_xlsx(folder / f"{stem}.xlsx", header, rows))
        paths.append(_write_tsv(folder / f"{stem}.tsv", header, rows))
        cut[stem] = cells_too_long(header, rows)
        if cut[stem]:
            log.warning(
                "%s: %d cell(s) longer than an xlsx cell's %s characters were cut there (%s); "
                "%s holds them whole",
                folder / f"{stem}.xlsx", len(cut[stem]), f"{XLSX_CELL_LIMIT:,}",
                _describe_cut(cut[stem], 5), folder / f"{stem}.tsv",
            )  # fmt: skip
    if by_model:
        _write_readme(folder / README, cut, scoring)
    return paths


def cells_too_long(header: Sequence[str], rows: Iterable[Sequence[str | int]]) -> list[CutCell]:
    """The cells of ``rows`` an xlsx cell cannot hold whole."""
    return [
        CutCell(str(row[0]) if header and header[0].strip().lower() == "index" else "?", column, len(cell))
        for row in rows
        for column, cell in zip(header, row, strict=True)
        if isinstance(cell, str) and len(cell) > XLSX_CELL_LIMIT
    ]


def _describe_cut(cells: Sequence[CutCell], most: int) -> str:
    shown = ", ".join(f"index {c.index} {c.column!r}: {c.length:,} characters" for c in cells[:most])
    return shown + (f", and {len(cells) - most} more" if len(cells) > most else "")


def _write_readme(path: Path, cut: dict[str, list[CutCell]], scoring: str = "") -> None:
    lines = [
        "# Prediction files",
        "",
        "Per model, `<model>.xlsx` is VLMEvalKit's prediction file (the file its evaluation reads and "
        "GMAI-MMBench's authors ask for), and `<model>.tsv` holds the same table as text.",
        f"An xlsx cell holds at most {XLSX_CELL_LIMIT:,} characters; the TSV keeps every cell whole.",
        "",
        *([scoring, ""] if scoring else []),
    ]
    for stem, cells in cut.items():
        if cells:
            lines += [
                f"## {stem}.xlsx: {len(cells)} cell(s) cut to {XLSX_CELL_LIMIT:,} characters",
                "",
                f"The whole text is in `{stem}.tsv`; VLMEvalKit reading `{stem}.xlsx` sees the cut text.",
                "",
                *(f"- index {c.index}, column `{c.column}`: {c.length:,} characters" for c in cells),
                "",
            ]
    with written_whole(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")


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
    """The header (the dataset's columns but the image, then ``prediction``, and ``thinking`` for a
    model that thought aloud) and one row per record."""
    header: list[str] = []
    for record in records:
        for name, _ in record.row or _fallback_row(record):
            if name not in header and name.strip().lower() not in _OURS:
                header.append(name)
    # As VLMEvalKit's inference writes it with SPLIT_THINK set: the answer, then its thinking apart.
    thought = any(record.thinking for record in records)
    rows = []
    for record in sorted(records, key=lambda r: _index_key(r.index)):
        cells = dict(record.row or _fallback_row(record))
        row: list[str | int] = [_cell(name, cells.get(name, "")) for name in header]
        row.append(FAILURE_PREDICTION if record.status == "error" else (record.prediction or ""))
        if thought:
            row.append(record.thinking)
        rows.append(row)
    return [*header, "prediction", *(["thinking"] if thought else [])], rows


#: The columns this file writes itself (a dataset column of the same name is not copied).
_OURS = frozenset({"prediction", "thinking"})


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

    settings = {"constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
                "strings_to_urls": False}  # fmt: skip
    with written_whole(path) as tmp, xlsxwriter.Workbook(str(tmp), settings) as book:
        sheet = book.add_worksheet()
        sheet.write_row(0, 0, header)
        for number, row in enumerate(rows, start=1):
            sheet.write_row(number, 0, [_ILLEGAL_XLSX.sub("", c) if isinstance(c, str) else c for c in row])
    return path


def _write_tsv(path: Path, header: list[str], rows: list[list[str | int]]) -> Path:
    # Quoted only where needed (a tab, a line break or a quote in a cell): what pandas reads back.
    with written_whole(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path

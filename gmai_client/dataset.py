"""Streams GMAI-MMBench TSV files (VLMEvalKit format) as ``Item``s, one row at a time.

The real VAL file is 9.34 GB of base64 PNGs, so nothing here holds more than one row: images stay
base64 text (never decoded here) and a bad row becomes a ``BadRow`` naming file, row, index and
field, so that one broken item fails alone and the run goes on.

File-level problems (no header, a missing required column, an empty file) are raised as
``DataError`` by ``open_dataset`` before any work starts: no point sending a single request
against a file that cannot be read.
"""

from __future__ import annotations

import ast
import csv
import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gmai_client.errors import DataError
from gmai_client.normalize import parse_key
from gmai_client.types import NO_DEPARTMENT, BadRow, Item, SourceRef

OPTION_LETTERS = ("A", "B", "C", "D", "E")

# Header names (lower-cased) of the columns with a meaning; everything else is kept as metadata.
_INDEX, _QUESTION, _ANSWER, _IMAGE, _HINT = "index", "question", "answer", "image", "hint"
_GROUP_COLUMNS = {
    "category": "category",
    "clinical vqa task": "task",
    "department": "department",
    "perceptual granularity": "granularity",
    "modality": "modality",
}
_REQUIRED = (_INDEX, _QUESTION, "a", "b", _IMAGE)
# Cells pandas and the released files use for "no value".
_EMPTY_CELLS = {"", "nan", "none", "null"}

# Rows hold whole base64 images: lift the csv module's 128 KiB field limit.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class DatasetFile:
    """One TSV file whose header has been checked."""

    path: Path
    columns: tuple[str, ...]  # lower-cased header names, in file order
    has_answer: bool


def _is_empty(cell: str) -> bool:
    return cell.strip().lower() in _EMPTY_CELLS


def open_dataset(paths: Sequence[Path]) -> list[DatasetFile]:
    """Check that every file exists and has the columns the benchmark needs."""
    if not paths:
        raise DataError("no data files given")
    files = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError("no such file", file=str(path))
        with path.open(newline="", encoding="utf-8") as handle:
            try:
                header = next(csv.reader(handle, delimiter="\t"), None)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DataError(f"unreadable header: {exc}", file=str(path)) from exc
        if not header:
            raise DataError("empty file: no header row", file=str(path))
        columns = tuple(name.strip().lower() for name in header)
        missing = [name for name in _REQUIRED if name not in columns]
        if missing:
            raise DataError(
                f"missing required column(s) {', '.join(missing)}; found {', '.join(header)}",
                file=str(path),
            )
        files.append(DatasetFile(path, columns, _ANSWER in columns))
    return files


def iter_items(files: Sequence[DatasetFile]) -> Iterator[Item | BadRow]:
    """Yield each row of each file, in order, as an Item or a BadRow."""
    for dataset_file in files:
        yield from _iter_file(dataset_file)


def _iter_file(dataset_file: DatasetFile) -> Iterator[Item | BadRow]:
    name = str(dataset_file.path)
    columns = dataset_file.columns
    with dataset_file.path.open(newline="", encoding="utf-8", errors="replace") as handle:
        lines = iter(handle)
        _next_record(lines)  # header, checked by open_dataset
        row_number = 0
        while True:
            row_number += 1
            try:
                cells = _next_record(lines)
            except csv.Error as exc:
                # A broken quote swallows the rest of the file in one field; report and stop this file.
                yield BadRow(SourceRef(name, row_number), "", f"unreadable row: {exc}")
                return
            if cells is None:
                return
            if not cells:
                continue
            yield _parse_row(name, row_number, columns, cells, dataset_file.has_answer)


def _next_record(lines: Iterator[str]) -> list[str] | None:
    """The next TSV record from ``lines`` (None at the end). Rows without a quote character (all
    released rows) are split directly, twice as fast as the csv module on megabyte-long base64
    cells; a row with a quote goes through ``csv.reader``, which pulls exactly the lines a quoted
    multi-line cell spans from the same iterator, so both paths read one record and leave the rest."""
    line = next(lines, None)
    if line is None:
        return None
    if '"' not in line:
        stripped = line.rstrip("\r\n")
        return stripped.split("\t") if stripped else []
    return next(csv.reader(itertools.chain((line,), lines), delimiter="\t"), [])


def _parse_row(file: str, row: int, columns: tuple[str, ...], cells: list[str], has_answer: bool) -> Item | BadRow:
    values = dict(zip(columns, cells, strict=False))  # a length mismatch is reported below
    index = values.get(_INDEX, "").strip()
    source = SourceRef(file, row, index)
    if len(cells) != len(columns):
        return BadRow(source, "", f"expected {len(columns)} cells, found {len(cells)} (truncated row?)")
    if not index:
        return BadRow(source, _INDEX, "empty index")
    question = values[_QUESTION].strip()
    if _is_empty(question):
        return BadRow(source, _QUESTION, "empty question")

    options = tuple(
        (letter, values[letter.lower()].strip())
        for letter in OPTION_LETTERS
        if letter.lower() in values and not _is_empty(values[letter.lower()])
    )
    if len(options) < 2:
        return BadRow(source, "A", f"needs at least 2 options, found {len(options)}")

    answer: tuple[str, ...] | None = None
    if has_answer:
        try:
            answer = parse_key(values[_ANSWER])
        except ValueError as exc:
            return BadRow(source, _ANSWER, str(exc))
        outside = [letter for letter in answer if letter not in dict(options)]
        if outside:
            return BadRow(
                source, _ANSWER, f"answer {','.join(outside)} is not among the options {','.join(dict(options))}"
            )

    images = _split_images(values[_IMAGE])
    if not images:
        return BadRow(source, _IMAGE, "empty image cell")

    groups = {attr: values.get(column, "").strip() for column, attr in _GROUP_COLUMNS.items()}
    for attr, value in groups.items():
        if _is_empty(value):
            groups[attr] = ""
    # The tree files items of no department under N/A; the reference leaves them ungrouped by mistake.
    groups["department"] = groups["department"] or NO_DEPARTMENT

    hint = values.get(_HINT, "")
    known = {_INDEX, _QUESTION, _ANSWER, _IMAGE, _HINT, *_GROUP_COLUMNS, *(x.lower() for x in OPTION_LETTERS)}
    extra = {key: value for key, value in values.items() if key not in known}
    return Item(
        index=index,
        question=question,
        options=options,
        answer=answer,
        images_b64=images,
        hint="" if _is_empty(hint) else hint.strip(),
        source=source,
        extra=extra,
        **groups,
    )


def _split_images(cell: str) -> tuple[str, ...]:
    """One base64 image, or a Python-literal list of them (VLMEvalKit's multi-image form)."""
    cell = cell.strip()
    if _is_empty(cell):
        return ()
    if cell.startswith("["):
        try:
            parsed = ast.literal_eval(cell)
        except (ValueError, SyntaxError):
            return (cell,)  # let the image decoder report it as undecodable
        return tuple(str(image) for image in parsed)
    return (cell,)


def count_items(files: Sequence[DatasetFile], keep: Callable[[Item | BadRow], bool]) -> int:
    """How many rows ``keep`` accepts: run in a worker thread so the progress bar can show an ETA."""
    return sum(1 for entry in iter_items(files) if keep(entry))

"""Streams GMAI-MMBench TSV files (VLMEvalKit format) as ``Item``s, one row at a time.

The real VAL file is 9.34 GB of base64 PNGs, so nothing here holds more than one row: images stay
base64 text (never decoded here) and a bad row becomes a ``BadRow`` naming file, row, index and
field, so that one broken item fails alone and the run goes on.

Cells are read as pandas reads them with its defaults, because that is how VLMEvalKit (whose
prompts and scores are the reference) reads the same file: a cell is missing exactly when its whole
text is one of pandas' missing-value strings (``types.PANDAS_NA_STRINGS``: ``"N/A"`` is
missing, ``"none"`` is an option); every other cell is kept as is, surrounding whitespace included;
a cell that starts with ``"`` is quoted (``""`` inside is one quote, tabs and line breaks inside
are part of it); a UTF-8 byte-order mark before the header is dropped; blank lines are skipped;
columns are named as pandas names them (``tsv.column_names``: a repeated ``A`` is kept as ``A.1``,
and where a column the benchmark needs is repeated, the first is the one used). An image cell of
at most 64 characters is VLMEvalKit's image reference: the index of the row (in the same file)
whose image this row shares (``_SharedImages``).

Where pandas would quietly do the wrong thing, the reader says so instead and goes on:
- a quote that opens a cell and is not closed within the row (pandas would swallow the following
  rows, or the rest of the file, into that cell) fails that row; the next line is read as the
  next row;
- a row whose bytes are not UTF-8 fails that row (pandas refuses the whole file);
- an ``index`` already seen (in this file or an earlier one of the same run) fails the later row,
  naming both; resume and metrics key records by index, so two rows cannot share one.

File-level problems (no header, a missing required column, an empty file, a file that is not a
TSV at all) are raised as ``DataError`` by ``open_dataset`` before any work starts.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gmai_client.config import NOT_UTF8_PATH, non_utf8_path
from gmai_client.data.tsv import READ_BUFFER, SKIPPED, Broken, RecordReader, column_names
from gmai_client.errors import DataError
from gmai_client.types import NO_DEPARTMENT, BadRow, Item, SourceRef, is_missing

#: Option columns: single-letter headers, as VLMEvalKit reads options (GMAI-MMBench uses A-E).
OPTION_LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

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
_KNOWN = {_INDEX, _QUESTION, _ANSWER, _IMAGE, _HINT, *_GROUP_COLUMNS, *(x.lower() for x in OPTION_LETTERS)}

_KEY_SEPARATORS = re.compile(r"[\s,;]+")
_KEY_LETTERS = frozenset("ABCDE")


@dataclass(frozen=True)
class DatasetFile:
    """One TSV file whose header has been checked."""

    path: Path
    columns: tuple[str, ...]  # lower-cased header names, in file order
    has_answer: bool
    header: tuple[str, ...] = ()  # the header names as written (for exports in the file's own form)


def parse_key(text: str) -> tuple[str, ...]:
    """Parse an answer-key cell into sorted distinct letters: "A", "A,C", "A, C", "A;C", "A C", "AC".

    Only upper-case A-E are accepted; a glued run ("AC") is read letter by letter. Anything else
    (empty, lower case, other letters or words, a repeated letter) raises ``ValueError``: a key
    that cannot be read is a data error, never a guess.
    """
    parts = [part for part in _KEY_SEPARATORS.split(text.strip()) if part]
    if not parts:
        raise ValueError("empty answer key")
    letters = [letter for part in parts for letter in part]
    bad = [letter for letter in letters if letter not in _KEY_LETTERS]
    if bad:
        raise ValueError(f"answer key {text!r} is not a list of letters A-E (found {bad[0]!r})")
    if len(set(letters)) != len(letters):
        raise ValueError(f"answer key {text!r} repeats a letter")
    return tuple(sorted(letters))


def open_dataset(paths: Sequence[Path]) -> list[DatasetFile]:
    """Check that every file exists, is a TSV, and has the columns the benchmark needs."""
    if not paths:
        raise DataError("no data files given")
    return [_open_one(Path(path)) for path in paths]


def _open_one(path: Path) -> DatasetFile:
    shown = non_utf8_path(path)
    if shown:
        raise DataError(f"the file's name is not UTF-8 text: {NOT_UTF8_PATH}", file=shown)
    if not path.is_file():
        raise DataError("no such file" if not path.exists() else "not a file", file=str(path))
    try:
        with path.open("rb") as handle:
            first = handle.readline(1 << 20)
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    _check_is_tsv(path, first)
    try:
        text = first.decode("utf-8").removeprefix("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"the header is not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)) from None
    if not text.strip():
        raise DataError("empty file: no header row", file=str(path))
    # Named as pandas names them (a repeated "A" is "A.1"): a second column never replaces the first.
    header = column_names(text.split("\t"))
    columns = column_names([name.strip().lower() for name in header])
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise DataError(f"missing required column(s) {', '.join(missing)}; found {', '.join(header)}", file=str(path))
    return DatasetFile(path, columns, _ANSWER in columns, header)


def _check_is_tsv(path: Path, first: bytes) -> None:
    """Refuse spreadsheets, archives and comma-separated files with a message that says what they are."""
    if first.startswith(b"PK\x03\x04"):
        raise DataError(
            "not a TSV: this is a zip archive (an .xlsx workbook?); export it as tab-separated text", file=str(path)
        )
    if first.startswith(b"\xd0\xcf\x11\xe0"):
        raise DataError(
            "not a TSV: this is an old Excel (.xls) workbook; export it as tab-separated text", file=str(path)
        )
    if b"\x00" in first:
        raise DataError("not a TSV: the file holds binary data (NUL bytes)", file=str(path))
    if b"\t" not in first and first.count(b",") >= 3:
        raise DataError(
            "not a TSV: the header has commas and no tabs (a CSV file?); GMAI-MMBench files are tab-separated",
            file=str(path),
        )


def iter_items(files: Sequence[DatasetFile]) -> Iterator[Item | BadRow]:
    """Yield each row of each file, in order, as an Item or a BadRow.

    An index seen before (in any of ``files``) makes the later row a BadRow naming the first.
    """
    seen: dict[str, SourceRef] = {}
    for dataset_file in files:
        for entry in _iter_file(dataset_file):
            if isinstance(entry, Item):
                first = seen.setdefault(entry.index, entry.source)
                if first is not entry.source:
                    where = f"row {first.row}" if first.file == entry.source.file else f"{first.file}, row {first.row}"
                    entry = BadRow(
                        SourceRef(entry.source.file, entry.source.row, offset=entry.source.offset),
                        _INDEX,
                        f"index {entry.index} is used twice: already at {where}",
                    )
            yield entry


def _iter_file(dataset_file: DatasetFile, only: set[str] | None = None) -> Iterator[Item | BadRow]:
    """Every row of one file; with ``only`` (the index is the first column), just those items."""
    name = str(dataset_file.path)
    # A large buffer: readline over megabyte-long rows is 4x cheaper with 8 MB than with the default.
    with dataset_file.path.open("rb", buffering=READ_BUFFER) as handle, _SharedImages(dataset_file) as shared:
        reader = RecordReader(handle, len(dataset_file.columns), only)
        reader.next_line()  # the header, checked by open_dataset
        row_number = 0
        while (record := reader.next_record()) is not None:
            row_number += 1
            if record is SKIPPED:
                continue
            if isinstance(record, Broken):
                if only is not None:
                    continue
                field = dataset_file.header[record.cell] if record.cell < len(dataset_file.header) else ""
                where = SourceRef(name, row_number, record.index, reader.record_offset)
                yield BadRow(where, field.strip(), record.message)
                continue
            if only is None:
                shared.note(record, reader.record_offset)
            entry = _parse_row(SourceRef(name, row_number, offset=reader.record_offset), dataset_file, record, shared)
            if only is None or (isinstance(entry, Item) and entry.index in only):
                yield entry  # a quoted row is parsed before its index can be compared


def _parse_row(where: SourceRef, dataset_file: DatasetFile, cells: list[str], shared: _SharedImages) -> Item | BadRow:
    columns = dataset_file.columns
    values = dict(zip(columns, cells, strict=False))  # a length mismatch is reported below
    index = values.get(_INDEX, "").strip()
    source = SourceRef(where.file, where.row, index, where.offset)
    if len(cells) != len(columns):
        return BadRow(source, "", f"expected {len(columns)} cells, found {len(cells)} (truncated row?)")
    if is_missing(index):
        return BadRow(source, _INDEX, "empty index")
    question = values[_QUESTION]
    if is_missing(question) or not question.strip():
        return BadRow(source, _QUESTION, "empty question")

    options = tuple(
        (letter, values[letter.lower()])
        for letter in OPTION_LETTERS
        if letter.lower() in values and not is_missing(values[letter.lower()])
    )
    if len(options) < 2:
        return BadRow(source, "A", f"needs at least 2 options, found {len(options)}")

    answer_cell = values.get(_ANSWER)
    answer: tuple[str, ...] | None = None
    if dataset_file.has_answer:
        try:
            answer = parse_key(answer_cell or "")
        except ValueError as exc:
            return BadRow(source, _ANSWER, str(exc))
        outside = [letter for letter in answer if letter not in dict(options)]
        if outside:
            return BadRow(
                source, _ANSWER, f"answer {','.join(outside)} is not among the options {','.join(dict(options))}"
            )

    image_cell = values[_IMAGE].strip()
    if len(image_cell) <= IMAGE_REFERENCE_MAX and not is_missing(image_cell):
        images = shared.images_of(image_cell)  # another row's index: that row's image
        if isinstance(images, str):
            return BadRow(source, _IMAGE, images)
    else:
        images = _split_images(image_cell)
    if not images:
        return BadRow(source, _IMAGE, "empty image cell")

    groups = {attr: _cell(values.get(column, "")) for column, attr in _GROUP_COLUMNS.items()}
    # The tree files items of no department under N/A; the reference leaves them ungrouped by mistake.
    groups["department"] = groups["department"] or NO_DEPARTMENT
    return Item(
        index=index,
        question=question,
        options=options,
        answer=answer,
        answer_cell=answer_cell if answer_cell is not None and not is_missing(answer_cell) else None,
        images_b64=images,
        hint=_cell(values.get(_HINT, "")),
        source=source,
        extra={key: value for key, value in values.items() if key not in _KNOWN},
        row=tuple(
            (name, cell)
            for name, column, cell in zip(dataset_file.header, columns, cells, strict=True)
            if column != _IMAGE
        ),
        **groups,
    )


def _cell(value: str) -> str:
    """A text cell as pandas reads it: missing -> ""; anything else kept as is."""
    return "" if is_missing(value) else value


def _split_images(cell: str) -> tuple[str, ...]:
    """One base64 image, or a Python-literal list of them (VLMEvalKit's multi-image form)."""
    cell = cell.strip()
    if is_missing(cell):
        return ()
    if cell.startswith("["):
        try:
            parsed = ast.literal_eval(cell)
        except (ValueError, SyntaxError):
            return (cell,)  # let the image decoder report it as undecodable
        return tuple(str(image) for image in parsed)
    return (cell,)


def find_items(
    files: Sequence[DatasetFile], wanted: Iterable[str], at: Mapping[str, tuple[str, int]] | None = None
) -> Iterator[Item]:
    """The items whose index is in ``wanted``, read by the same rules as ``iter_items`` but parsing
    only those rows. ``at`` maps an index to (file, byte offset of its row), as records keep them:
    those rows are read where they are; the others are found by a scan in which a row's index
    cell is compared before the rest of its (megabyte-long) cells are split, stopping once every
    wanted item was found (the real VAL file is 9 GB)."""
    remaining = set(wanted)
    for item in read_at(files, {index: at[index] for index in remaining if at and index in at}):
        remaining.discard(item.index)
        yield item
    for dataset_file in files:
        if not remaining:
            return
        if _INDEX not in dataset_file.columns or dataset_file.columns.index(_INDEX) != 0:
            found = (e for e in _iter_file(dataset_file) if isinstance(e, Item) and e.index in remaining)
        else:
            found = _iter_file(dataset_file, only=remaining)
        for item in found:
            remaining.discard(item.index)
            yield item
            if not remaining:
                return


def read_at(files: Sequence[DatasetFile], places: Mapping[str, tuple[str, int]]) -> Iterator[Item]:
    """The rows at known byte offsets (a row that is not the item expected there is skipped)."""
    by_name = {str(f.path): f for f in files}
    shared: dict[str, _SharedImages] = {}
    try:
        for index, (name, offset) in sorted(places.items(), key=lambda entry: entry[1]):
            dataset_file = by_name.get(name)
            if dataset_file is None or offset < 0:
                continue
            record = _record_at(dataset_file.path, offset, len(dataset_file.columns))
            if isinstance(record, list):
                images = shared.setdefault(name, _SharedImages(dataset_file))
                entry = _parse_row(SourceRef(name, 0, offset=offset), dataset_file, record, images)
                if isinstance(entry, Item) and entry.index == index:
                    yield entry
    finally:
        for images in shared.values():
            images.close()


def _record_at(path: Path, offset: int, width: int, handle: BinaryIO | None = None) -> list[str] | Broken | None:
    """The record whose row starts at byte ``offset``."""
    if handle is None:
        with path.open("rb") as own:
            return _record_at(path, offset, width, own)
    handle.seek(offset)
    return RecordReader(handle, width).next_record()


#: VLMEvalKit reads an image cell of at most this many characters as the index of another row whose
#: image this row shares (files save space that way); a base64 image is far longer.
IMAGE_REFERENCE_MAX = 64


class _SharedImages:
    """VLMEvalKit's image references within one file (``ImageBaseDataset.__init__``): an image cell of
    at most 64 characters is the index of the row whose image(s) this row shares. That row may come
    before or after; its own image cell must be an image, not another reference.

    Only where rows start is held (index -> byte offset), never images: a row referred to is read
    again from disk, and only the last one is kept (rows sharing an image usually come together).
    ``note`` is told of every row the caller reads, in file order; a reference to a row not read yet
    scans ahead for it from the last row noted, noting what it passes, so nothing is scanned twice.
    """

    def __init__(self, dataset_file: DatasetFile):
        self._file = dataset_file
        self._index = dataset_file.columns.index(_INDEX)
        self._image = dataset_file.columns.index(_IMAGE)
        self._offsets: dict[str, int] = {}
        self._noted_to = -1  # every row before this offset was noted (-1: none yet)
        self._handle: BinaryIO | None = None
        self._last: tuple[str, tuple[str, ...]] = ("", ())

    def __enter__(self) -> _SharedImages:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def note(self, cells: list[str], offset: int) -> None:
        if len(cells) > self._index:
            self._offsets.setdefault(cells[self._index].strip(), offset)  # a repeated index: the first row
        self._noted_to = max(self._noted_to, offset)

    def images_of(self, reference: str) -> tuple[str, ...] | str:
        """The images of the row whose index is ``reference``, or why there are none."""
        if reference == self._last[0]:
            return self._last[1]
        offset = self._offsets.get(reference)
        if offset is None:
            offset = self._scan_for(reference)
        if offset is None:
            return (
                f"the image cell {reference!r} is too short to be an image, and no row of this file has the "
                f"index {reference!r} (VLMEvalKit reads an image cell of at most {IMAGE_REFERENCE_MAX} characters "
                "as the index of the row whose image it shares)"
            )
        record = _record_at(self._file.path, offset, len(self._file.columns), self._open())
        cell = record[self._image].strip() if isinstance(record, list) and len(record) > self._image else ""
        images = _split_images(cell)
        if not images or any(len(image) <= IMAGE_REFERENCE_MAX for image in images):
            return (
                f"the image cell {reference!r} refers to the row of index {reference!r}, whose own image cell "
                "holds no image (VLMEvalKit follows a reference once, to a row with an image)"
            )
        self._last = (reference, images)
        return images

    def _open(self) -> BinaryIO:
        if self._handle is None:
            self._handle = self._file.path.open("rb", buffering=READ_BUFFER)
        return self._handle

    def _scan_for(self, wanted: str) -> int | None:
        handle = self._open()
        handle.seek(max(self._noted_to, 0))
        reader = RecordReader(handle, len(self._file.columns))
        if self._noted_to < 0:
            reader.next_line()  # the header
        while (record := reader.next_record()) is not None:
            if isinstance(record, list):
                self.note(record, reader.record_offset)
                if record[self._index].strip() == wanted:
                    return reader.record_offset
        return None


def count_items(files: Sequence[DatasetFile], keep: Callable[[Item | BadRow], bool]) -> int:
    """How many rows ``keep`` accepts: run in a worker thread so the progress bar can show an ETA."""
    return sum(1 for entry in iter_items(files) if keep(entry))

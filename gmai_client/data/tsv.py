"""Splits a TSV file into records of cells by pandas' rules, and names its columns as pandas does.

VLMEvalKit (whose prompts and scores are the reference) reads the benchmark's files with
``pandas.read_csv(sep="\t")``, so this module reads the same bytes into the same cells and the same
column names, one record at a time (the real VAL file is 9.34 GB; ``dataset`` turns the cells into
items). Where pandas would quietly swallow rows (a stray quote), ``RecordReader`` fails the one
record instead and goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

# A quoted cell may span lines; one that has not closed after this many lines or bytes is a stray
# quote, not a cell (the released files have no multi-line cells at all).
MAX_QUOTED_LINES = 200
MAX_QUOTED_BYTES = 32 << 20
READ_BUFFER = 8 << 20


def column_names(header: Sequence[str]) -> tuple[str, ...]:
    """The header's names as pandas names the columns of a DataFrame: a blank name is
    ``Unnamed: <position>``, and a repeated name gets a suffix, so that no column replaces another.

    pandas' rule (its C parser): the second ``A`` becomes ``A.1``, the third ``A.2``, skipping a
    suffix the header already holds (``A, A, A.1`` gives ``A, A.2, A.1``); named columns are
    numbered before blank ones.
    """
    names = [name if name else f"Unnamed: {position}" for position, name in enumerate(header)]
    blank = [position for position, name in enumerate(header) if not name]
    order = [position for position in range(len(names)) if header[position]] + blank
    counts: dict[str, int] = {}
    for position in order:
        name = original = names[position]
        count = counts.get(name, 0)
        while count > 0:
            counts[original] = count + 1
            name = f"{original}.{count}"
            count = count + 1 if name in names else counts.get(name, 0)
        names[position] = name
        counts[name] = count + 1
    return tuple(names)


@dataclass(frozen=True)
class Broken:
    """A record the reader could not split into cells."""

    message: str
    cell: int = -1  # the cell where it went wrong, when known
    index: str = ""


SKIPPED: list[str] = []  # a row ``find_items`` did not want (never parsed)


class RecordReader:
    """Splits a TSV byte stream into records of cells with pandas' quoting rules.

    Lines without a quote (all released rows) are split on tabs directly: twice as fast as a
    general parser on megabyte-long base64 cells. A line with a quote is scanned cell by cell;
    a quoted cell may pull in the following lines, up to ``MAX_QUOTED_LINES``/``MAX_QUOTED_BYTES``.
    When that fails (a stray quote), the lines it pulled in are given back and read as rows. A
    pulled line that holds a whole row's worth of tabs is taken for the next row, not the rest of
    a cell: pandas would swallow it, silently.
    """

    def __init__(self, handle: BinaryIO, width: int, only: set[str] | None = None):
        self._handle = handle
        self._width = width
        self._pending: list[tuple[int, bytes]] = []  # (offset, line) given back after a stray quote
        self._position = handle.tell()  # where the next line read from the file starts
        self.line_offset = self._position  # where the line last returned starts
        self.record_offset = -1  # where the record last returned starts
        # Indexes wanted (the index being the first cell): other rows come back as SKIPPED unsplit.
        self._only = {index.encode() for index in only} if only is not None else None

    def next_line(self) -> bytes | None:
        if self._pending:
            self.line_offset, line = self._pending.pop()
            return line
        line = self._handle.readline()
        self.line_offset = self._position
        self._position += len(line)
        return line or None

    def next_record(self) -> list[str] | Broken | None:  # or SKIPPED
        while True:
            raw = self.next_line()
            if raw is None:
                return None
            if len(raw) > 2 or raw.strip(b"\r\n"):  # (no copy of a megabyte line to test that)
                self.record_offset = self.line_offset
                break  # pandas skips blank lines
        if self._only is not None and b'"' not in raw and raw.split(b"\t", 1)[0].strip() not in self._only:
            return SKIPPED
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._not_utf8(raw, exc)
        if '"' not in line:
            cells = line.split("\t")  # then the line end off the last cell: one copy of the line, not two
            cells[-1] = cells[-1].rstrip("\r\n")
            return cells
        return self._quoted(raw, line)

    def _not_utf8(self, raw: bytes, exc: UnicodeDecodeError) -> Broken:
        cell = raw[: exc.start].count(b"\t")
        index = raw.split(b"\t", 1)[0].decode("utf-8", errors="replace")
        return Broken(f"not UTF-8 text ({exc.reason} at byte {exc.start} of the row)", cell, index)

    def _quoted(self, first_raw: bytes, text: str) -> list[str] | Broken:
        pulled: list[tuple[int, bytes]] = []  # continuation lines, given back if the quote turns out stray
        cells: list[str] = []
        position = 0
        while True:
            if text.startswith('"', position):
                parts: list[str] = []
                start = position + 1
                while True:
                    close = text.find('"', start)
                    if close == -1:
                        more = self._continue(pulled, first_raw)
                        if more is None:
                            self._give_back(pulled)
                            return Broken(
                                "a cell starts with a double quote that is never closed on this row "
                                "(pandas would read the following rows into it)",
                                len(cells),
                                _first_cell(text),
                            )
                        text += more
                        continue
                    if text.startswith('"', close + 1):  # "" inside a quoted cell is one quote
                        parts.append(text[start : close + 1])
                        start = close + 2
                        continue
                    parts.append(text[start:close])
                    position = close + 1
                    break
                end, last = cell_end(text, position)
                cells.append("".join(parts) + text[position:end])
            else:
                end, last = cell_end(text, position)
                cells.append(text[position:end])
            if last:
                break
            position = end + 1
        if pulled and len(cells) != self._width:
            # The quote closed, but only by pairing with another stray quote rows later.
            self._give_back(pulled)
            return Broken(
                "a quoted cell runs over several lines and leaves the row with "
                f"{len(cells)} cells instead of {self._width} (a stray double quote?)",
                index=_first_cell(text),
            )
        return cells

    def _continue(self, pulled: list[tuple[int, bytes]], first_raw: bytes) -> str | None:
        """The next line of a quoted cell, or None when the quote has run on too far."""
        size = len(first_raw) + sum(len(line) for _, line in pulled)
        if len(pulled) >= MAX_QUOTED_LINES or size > MAX_QUOTED_BYTES:
            return None
        raw = self.next_line()
        if not raw:
            return None
        pulled.append((self.line_offset, raw))
        if raw.count(b"\t") >= self._width - 1:
            return None  # a whole row's worth of cells: the next row, not the rest of a cell
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _give_back(self, pulled: list[tuple[int, bytes]]) -> None:
        self._pending.extend(reversed(pulled))


def cell_end(text: str, position: int) -> tuple[int, bool]:
    """Where the cell starting at ``position`` ends, and whether it is the row's last cell."""
    tab = text.find("\t", position)
    if tab != -1:
        return tab, False
    end = len(text)
    if text.endswith("\r\n"):
        end -= 2
    elif text.endswith("\n"):
        end -= 1
    return end, True


def _first_cell(text: str) -> str:
    cell = text.split("\t", 1)[0]
    return "" if '"' in cell or "\n" in cell else cell.strip()

"""The prediction file's round trip: a cell as VLMEvalKit's evaluation reads it back.

VLMEvalKit never scores an answer as the model gave it: its inference writes every answer into
``<model>_<dataset>.xlsx`` (pandas ``to_excel`` with the xlsxwriter engine, xlsxwriter's defaults)
and its evaluation scores what pandas ``read_excel`` (openpyxl) reads back from that file. The same
happens to the question and option cells it matches against. Found by running that writer and
reader (``tests/test_readback.py`` checks every rule here against them), the effects are:

1. empty text, and text that is one of pandas' missing-value strings, reads back as NaN ("nan");
2. text that starts with ``=`` (or is ``{=...}``) is written as a formula and reads back as the
   number 0, in the eras whose writer turns strings into formulas (``RuleSet.xlsx_formulas``);
3. text that starts with ``http://``, ``https://``, ``ftp://``, ``ftps://``, ``mailto:``,
   ``internal:``, ``external:`` or ``file://`` (and holds a ":") is written as a hyperlink: over
   2,079 UTF-16 units before or after its first ``#`` it is dropped (reads back as NaN); otherwise
   it reads back as the link's display text (``mailto:``/``internal:`` cut off; ``file://`` and
   ``external:`` links as a Windows path, ``/`` turned into ``\\``);
4. a cell holds at most 32,767 UTF-16 units: the rest is cut (never splitting a surrogate pair);
5. control characters other than tab and line feed (``\\r`` included) are stored as ``_xHHHH_``
   and read back as those seven characters (``"B\\r"`` -> ``"B_x000D_"``); a literal ``x005F_``
   is dropped by the reader;
6. a column whose every cell reads back as a number, a missing value or a boolean word is
   converted as pandas converts it (``"01"`` -> ``1``; with a missing value, every number a float:
   ``"1"`` -> ``1.0``). Only a whole column can do this, so it is applied to one model's answers
   together (``read_back_column``); one answer in an otherwise textual column is never converted.

Not reproduced: xlsxwriter's limit of 65,530 hyperlinks per sheet (a GMAI-MMBench file has fewer
cells than that), and rich-text markup (a cell that starts with ``<r>`` and ends with ``</r>``).
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gmai_client.types import PANDAS_NA_STRINGS

#: Excel's (and xlsxwriter's) cell limit, in UTF-16 code units.
CELL_LIMIT = 32767
#: xlsxwriter's limit on a hyperlink's address (and on its anchor after "#"), in UTF-16 code units.
URL_LIMIT = 2079

_URL_START = re.compile(r"(?:ftp|http)s?://|mailto:|(?:in|ex)ternal:|file://")
_ESCAPE_LIKE = re.compile(r"(_x[0-9a-fA-F]{4}_)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")
# pandas' number syntax for a text cell (its C parser: surrounding blanks allowed, no "_" or ",").
_BLANK = "[ \t\n\v\f\r]*"
_INT = re.compile(rf"{_BLANK}[+-]?[0-9]+{_BLANK}")
_FLOAT = re.compile(
    rf"{_BLANK}[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan){_BLANK}", re.IGNORECASE
)
_TRUE, _FALSE = frozenset({"True", "TRUE", "true"}), frozenset({"False", "FALSE", "false"})
_INT64 = (-(2**63), 2**64 - 1)  # int64, or uint64 for the non-negative

#: A cell as read back: text, a number (a formula's cached value), or None (NaN).
Cell = str | int | None


def _utf16_len(text: str) -> int:
    return len(text) + sum(ord(ch) > 0xFFFF for ch in text) if not text.isascii() else len(text)


def _utf16_cut(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` UTF-16 units."""
    units = 0
    for position, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return text[:position]
    return text


def _link_text(url: str) -> str | None:
    """What a hyperlink cell shows (None: xlsxwriter drops a link that long)."""
    address, _, anchor = url.partition("#")
    if _utf16_len(address) > URL_LIMIT or _utf16_len(anchor) > URL_LIMIT:
        return None
    if url.startswith("mailto:"):
        return url.replace("mailto:", "", 1)
    if url.startswith("internal:"):
        return url.replace("internal:", "", 1)
    if url.startswith(("file://", "external:")):
        path = url.replace("external:", "file:///", 1).replace("file:///", "", 1).replace("file://", "", 1)
        return path.replace("/", "\\")
    return url


def read_back_cell(text: str, *, formulas: bool) -> Cell:
    """One text cell written by VLMEvalKit's writer and read back by its reader (effects 1-5)."""
    if text == "":
        return None
    if formulas and (text.startswith("=") or (text.startswith("{=") and text.endswith("}"))):
        return 0
    if ":" in text and _URL_START.match(text):
        shown = _link_text(text)
        if shown is None:
            return None
        text = shown
    if len(text) > CELL_LIMIT // 2 and _utf16_len(text) > CELL_LIMIT:
        text = _utf16_cut(text, CELL_LIMIT)
    if "_x" in text or not text.isprintable():
        text = _ESCAPE_LIKE.sub(r"_x005F\1", text)
        text = _CONTROL.sub(lambda match: f"_x{ord(match.group()):04X}_", text)
        text = text.replace("\ufffe", "_xFFFE_").replace("\uffff", "_xFFFF_")
    if "x005F_" in text:
        text = text.replace("x005F_", "")  # what openpyxl's reader does to every shared string
    return None if text in PANDAS_NA_STRINGS else text


def as_text(cell: Cell) -> str:
    """``str()`` of a cell in a textual column, as VLMEvalKit's evaluation makes every prediction."""
    return "nan" if cell is None else str(cell)


def read_back(text: str, *, formulas: bool) -> str:
    """One answer as VLMEvalKit evaluates it, in a column that stays textual (effects 1-5)."""
    return as_text(read_back_cell(text, formulas=formulas))


def read_back_column(texts: Sequence[str], *, formulas: bool) -> list[str]:
    """A whole column (one model's answers) as VLMEvalKit evaluates it: effects 1-6."""
    cells = [read_back_cell(text, formulas=formulas) for text in texts]
    converted = _convert_column(cells)
    return converted if converted is not None else [as_text(cell) for cell in cells]


def _convert_column(cells: Sequence[Cell]) -> list[str] | None:
    """pandas' conversion of a column of numbers/booleans; None when the column stays textual."""
    present = [cell for cell in cells if cell is not None]
    if not present:
        return None
    if all(isinstance(cell, int) or _INT.fullmatch(cell) for cell in present):
        numbers = [int(cell) for cell in present]  # int() takes the same surrounding blanks
        if not all(_INT64[0] <= n <= _INT64[1] for n in numbers) or (
            min(numbers) < 0 and max(numbers) >= 2**63
        ):
            return None
        if len(present) == len(cells):
            return [str(int(cell)) for cell in cells]  # type: ignore[arg-type]
        return ["nan" if cell is None else str(float(int(cell))) for cell in cells]
    if all(isinstance(cell, int) or _FLOAT.fullmatch(cell) for cell in present):
        floats = [float(cell) for cell in present]
        overflow = (abs(f) == float("inf") and not _says_infinity(c) for f, c in zip(floats, present, strict=True))
        if any(overflow):
            return None  # an overflow ("1e400"): pandas keeps the column as text
        return ["nan" if cell is None else str(float(cell)) for cell in cells]
    if len(present) == len(cells) and all(cell in _TRUE or cell in _FALSE for cell in present):
        return [str(cell in _TRUE) for cell in present]
    return None


def _says_infinity(cell: Cell) -> bool:
    return isinstance(cell, str) and "inf" in cell.lower()

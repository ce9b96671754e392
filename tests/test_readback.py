"""Tests for gmai_client.protocol.readback: an answer as VLMEvalKit reads it back from its prediction file.

The examples pin each effect; the oracle tests write cells with VLMEvalKit's own ``dump`` (xlsx)
and read them with its own ``load``, and require the same text for every cell and column.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import pytest

from gmai_client.protocol.readback import read_back, read_back_column
from tests import vlmeval_oracle

LONG_URL = "https://example.org/" + "a" * 2060  # 2,080 characters: one more than a link may hold


@pytest.mark.parametrize(
    ("answer", "formulas", "expected"),
    [
        ("B", True, "B"),
        ("", True, "nan"),
        ("None", True, "nan"),
        (" NA", True, " NA"),
        ("=> A", True, "0"),  # a formula: its cached value
        ("= B. atrium", True, "0"),
        ("=> A", False, "=> A"),  # the 2026 writer keeps text as text
        ("{=1}", True, "0"),
        ("Answer: B\r\n", False, "Answer: B_x000D_\n"),
        ("B\x01", False, "B_x0001_"),
        ("keep _x0041_ as typed", False, "keep _x0041_ as typed"),
        ("tab\tand\nnewline", False, "tab\tand\nnewline"),
        ("http://example.org B", False, "http://example.org B"),
        (LONG_URL + " The answer is B.", False, "nan"),  # a link too long: dropped
        (LONG_URL[:-3] + " B", False, LONG_URL[:-3] + " B"),  # 2,079 characters: kept
        ("mailto:someone B", False, "someone B"),
        ("file://dir/x B", False, "dir\\x B"),
        ("x" * 32_767 + " The answer is B.", False, "x" * 32_767),  # cut at Excel's cell limit
        ("\U0001f600" * 16_384, False, "\U0001f600" * 16_383),  # UTF-16 units; a pair is never split
    ],
)
def test_each_effect(answer: str, formulas: bool, expected: str) -> None:
    assert read_back(answer, formulas=formulas) == expected


def test_a_whole_column_of_numbers_is_converted_as_pandas_converts_it() -> None:
    assert read_back_column(["1", "02", "3"], formulas=True) == ["1", "2", "3"]
    assert read_back_column(["1", "", "3"], formulas=True) == ["1.0", "nan", "3.0"]  # a gap: floats
    assert read_back_column(["=x", "2"], formulas=True) == ["0", "2"]
    assert read_back_column(["1", "B"], formulas=True) == ["1", "B"]  # one text cell: all stay text
    assert read_back_column(["true", "False"], formulas=True) == ["True", "False"]


# ---------------------------------------------------------------------------- against VLMEvalKit

CELLS = [
    "=> A", "= B. atrium", "=1+1", "{=A1}", "{=x", "=", "Answer: B\r\n", "a\rb", "x\x01y", "\x00B", "\x1fB",
    "_x0041_", "_x000D_", "a x005F_ b", "_x005F_x0041_", "\ufffeB", "\uffffB", "tab\there", "line\nbreak",
    "http://x.org/a B", "https://" + "a" * 2100, "https://" + "a" * 2060 + " B", "https://" + "a" * 2071,
    "https://" + "a" * 2072, "http://" + "a" * 2000 + "#" + "b" * 100, "http://x#" + "b" * 2080,
    "mailto:foo B", "external:foo/bar B", "internal:Sheet1!A1", "file://x/y B", "file:///c/d B",
    "ftp://q B", "ftps://q B", "http//x", "HTTP://X.ORG B", "http://", "see http://x.org B", "https:/x B",
    "x" * 32_770 + " B", "y" * 32_767, "z" * 32_768, "\U0001f600" * 16_390, "a" + "\U0001f600" * 16_383,
    "NA", "None", " NA", "", "  ", "nan", "5", "01", "True", "1e3", " ", "\n", "a\u2028b", "\ufeffB", "\x7fB",
    "<r>B</r>x", "&amp; B", "<b>B</b>", "]]> B", "mailto:NA", "=NA",
]  # fmt: skip

COLUMNS = [
    ["1", "2", "3"], ["1", "", "2"], ["01", "2"], ["1.50", "2"], ["=x", "=y"], ["=x", ""], ["=x", "NA", "1"],
    [" 5", "6"], ["5 ", "6"], ["True", "False"], ["true", "false"], ["TRUE", "1"], ["True", ""],
    ["1e5", "2"], ["inf", "1"], ["-inf", "1"], ["Infinity", "1"], ["1,000", "2"], ["-0", "1"],
    ["12345678901234567890", "1"], ["123456789012345678901234", "1"], ["0x10", "1"], ["+5", "1"], [".5", "1"],
    ["5.", "1"], ["1_000", "2"], ["\u0661", "2"], ["1", "NaN"], ["1e400", "1"], ["1.0", "2"], ["0.1", "0.2"],
    ["nan", "1"], ["-nan", "1"], ["1d5", "1"], ["1E5", "1"], ["9007199254740993", "1"],
    ["-9223372036854775809", "1"], ["18446744073709551616", "1"], ["18446744073709551615", "1"],
    ["18446744073709551615", "-1"], ["1", "B"], ["", "", ""], ["NA", "None"], ["\t5", "1"], ["5\n", "1"],
    ["1 000", "1"], ["1.5", "", "=x"], ["=x", "true"], ["1", "2.5e-3"], ["-1.5E+2", "7"], ["INF", "1"],
]  # fmt: skip


@pytest.fixture(scope="module")
def oracle() -> Any:
    return vlmeval_oracle.load()


def _round_trip(oracle: Any, folder: Path, values: list[str]) -> list[str]:
    """Values written as a prediction column by VLMEvalKit's dump, read back by its load, str()'d."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"index": range(len(values)), "question": ["q"] * len(values), "prediction": values})
    path = folder / "model_GMAI-MMBench_VAL.xlsx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # xlsxwriter warns of the links it drops and the cells it cuts
        oracle.smp.dump(frame, str(path))
    return [str(x) for x in oracle.smp.load(str(path))["prediction"]]


def test_every_cell_reads_back_as_vlmevalkit_reads_it(oracle: Any, tmp_path: Path) -> None:
    rng = random.Random(20)
    # (No link prefix here, and no formula with a control character: either makes the whole file
    # unreadable to VLMEvalKit's reader, so no letter can be compared.)
    pieces = ["B", " ", "\r", "\n", "\t", "=", "_x000D_", "x005F_", "NA", "\x02", "é", "\U0001f600", "{", "}"]
    fuzz = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(400)]
    fuzz = [cell for cell in fuzz if not (cell.startswith("=") and "\x02" in cell)]
    cells = [*CELLS, *fuzz, "a text cell so that the column stays textual"]
    theirs = _round_trip(oracle, tmp_path, cells)
    ours = [read_back(cell, formulas=True) for cell in cells]
    pairs = zip(cells, ours, theirs, strict=True)
    differ = [(cell[:40], mine[:40], their[:40]) for cell, mine, their in pairs if mine != their]
    assert differ == []


@pytest.mark.parametrize("column", COLUMNS, ids=[repr(c)[:40] for c in COLUMNS])
def test_a_whole_column_reads_back_as_vlmevalkit_reads_it(oracle: Any, tmp_path: Path, column: list[str]) -> None:
    assert read_back_column(column, formulas=True) == _round_trip(oracle, tmp_path, column)

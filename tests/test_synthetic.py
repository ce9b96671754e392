"""Tests for gmai_client.testing.synthetic: determinism, tree coverage and consistency, the TSV layout, and that
the shipped gmai_client/data/sample.tsv is exactly what the default generator writes."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from gmai_client.testing import synthetic as S

DATA = Path(S.__file__).resolve().parents[1] / "data"
SAMPLE = DATA / "sample.tsv"
TREE = json.loads((DATA / "lexical_tree.json").read_text(encoding="utf-8"))
VIEWS = (S.TASK_VIEW, S.DEPARTMENT_VIEW, S.GRANULARITY_VIEW)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return list(S.iter_synthetic_rows(300))


def _read_tsv(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _options(row: dict[str, str]) -> list[str]:
    return [row[letter] for letter in S.LETTERS if row[letter] not in ("", "none")]


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = S.write_tsv(tmp_path / "a.tsv", 80, seed=3)
    b = S.write_tsv(tmp_path / "b.tsv", 80, seed=3)
    c = S.write_tsv(tmp_path / "c.tsv", 80, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_columns_and_layout(rows: list[dict[str, str]]) -> None:
    assert list(rows[0]) == list(S.COLUMNS)
    assert [r["index"] for r in rows] == [str(i) for i in range(len(rows))]
    no_answer = list(S.iter_synthetic_rows(20, with_answer=False))
    assert list(no_answer[0]) == [c for c in S.COLUMNS if c != "answer"]
    # Dropping the answer changes nothing else.
    assert no_answer == [{k: v for k, v in r.items() if k != "answer"} for r in rows[:20]]


def test_first_300_cover_the_tree(rows: list[dict[str, str]]) -> None:
    tasks = Counter(r[S.TASK_VIEW] for r in rows)
    departments = Counter(r[S.DEPARTMENT_VIEW] or S.NO_DEPARTMENT for r in rows)
    granularities = Counter(r[S.GRANULARITY_VIEW] for r in rows)
    modalities = Counter(r["modality"] for r in rows)
    assert set(tasks) == set(TREE[S.TASK_VIEW]) and len(tasks) == 18
    assert set(departments) == set(TREE[S.DEPARTMENT_VIEW]) and len(departments) == 19
    assert set(granularities) == set(TREE[S.GRANULARITY_VIEW]) and len(granularities) == 4
    assert len(modalities) >= 30
    # "No department" is stored as an empty cell, never as the tree's "N/A".
    assert any(r[S.DEPARTMENT_VIEW] == "" for r in rows)
    assert not any(r[S.DEPARTMENT_VIEW] == S.NO_DEPARTMENT for r in rows)


def test_every_row_is_consistent_with_the_tree(rows: list[dict[str, str]]) -> None:
    # Checked against the raw JSON, not the module's own index.
    for r in rows + list(S.iter_synthetic_rows(40, seed=11)):
        cats = {S.TASK_VIEW: r[S.TASK_VIEW], S.DEPARTMENT_VIEW: r[S.DEPARTMENT_VIEW] or S.NO_DEPARTMENT}
        cats[S.GRANULARITY_VIEW] = r[S.GRANULARITY_VIEW]
        for view, category in cats.items():
            labels = TREE[view][category].get(r["modality"], [])
            assert r["category"] in labels, (r["index"], view, category, r["modality"], r["category"])


def test_options_and_answers(rows: list[dict[str, str]]) -> None:
    counts = Counter()
    for r in rows:
        opts = _options(r)
        n = len(opts)
        counts[n] += 1
        assert 2 <= n <= 5
        assert len(set(opts)) == n
        # Used options come first; the unused trailing ones are all empty or all "none".
        assert all(r[letter] not in ("", "none") for letter in S.LETTERS[:n])
        assert len({r[letter] for letter in S.LETTERS[n:]}) <= 1
        letters = r["answer"].split(",")
        assert letters == sorted(set(letters))
        assert set(letters) <= set(S.LETTERS[:n])
        picked = [r[letter] for letter in letters]
        assert r["category"] in picked
        multi = len(letters) > 1
        assert len(letters) in (1, 2)
        assert ("Select all that apply" in r["question"]) == multi
        if multi:  # the second correct label is consistent with the item's categories too
            other = next(p for p in picked if p != r["category"])
            dept = r[S.DEPARTMENT_VIEW] or S.NO_DEPARTMENT
            assert other in TREE[S.DEPARTMENT_VIEW][dept][r["modality"]]
    assert set(counts) == {2, 3, 4, 5}
    assert sum(1 for r in rows if "," in r["answer"]) == 12  # exactly 4% of 300
    assert any(r["A"] == "none" or r["E"] == "none" for r in rows)


def test_correct_letter_position_is_roughly_uniform() -> None:
    by_count: dict[int, Counter[str]] = {}
    for r in S.iter_synthetic_rows(1500, image_size=8, multi_answer_fraction=0.0):
        by_count.setdefault(len(_options(r)), Counter())[r["answer"]] += 1
    for n, counter in by_count.items():
        total = sum(counter.values())
        assert set(counter) == set(S.LETTERS[:n])
        for letter in S.LETTERS[:n]:
            assert abs(counter[letter] / total - 1 / n) < 0.1, (n, counter)


def test_images_decode(rows: list[dict[str, str]]) -> None:
    for r in rows[:60]:
        raw = base64.b64decode(r["image"], validate=True)
        img = Image.open(io.BytesIO(raw))
        assert img.format == "PNG" and img.size == (96, 96)
        img.load()
        if r[S.GRANULARITY_VIEW] != "Image Level":
            assert img.mode == "RGB"  # marks are coloured
    big = next(S.iter_synthetic_rows(1, image_size=200))
    assert Image.open(io.BytesIO(base64.b64decode(big["image"]))).size == (200, 200)


def test_text_does_not_depend_on_image_size(rows: list[dict[str, str]]) -> None:
    strip = [{k: v for k, v in r.items() if k != "image"} for r in rows[:30]]
    for kwargs in ({"image_size": 16}, {"image_size": 16, "image_variants": 4}, {"image_size": 300}):
        other = list(S.iter_synthetic_rows(30, **kwargs))
        assert [{k: v for k, v in r.items() if k != "image"} for r in other] == strip


def test_write_tsv_is_plain_csv_writer_output(tmp_path: Path) -> None:
    for with_answer in (True, False):
        path = S.write_tsv(tmp_path / "x.tsv", 150, with_answer=with_answer)
        columns = S.COLUMNS if with_answer else S.COLUMNS_NO_ANSWER
        expected = io.StringIO(newline="")
        writer = csv.writer(expected, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(columns)
        for r in S.iter_synthetic_rows(150, with_answer=with_answer):
            writer.writerow([r[c] for c in columns])
        text = path.read_bytes().decode("utf-8")
        assert text == expected.getvalue()
        assert '""best""' in text  # a quoted field exercises csv quoting


def _pixels_close(a_b64: str, b_b64: str) -> bool:
    """Same pixels, or nearly: a different Pillow may rasterise a polygon edge a pixel differently."""
    a = Image.open(io.BytesIO(base64.b64decode(a_b64)))
    b = Image.open(io.BytesIO(base64.b64decode(b_b64)))
    if (a.size, a.mode) != (b.size, b.mode):
        return False
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).convert("L")
    changed = sum(diff.point(lambda v: 255 if v else 0).histogram()[1:])
    return changed <= 0.02 * a.size[0] * a.size[1]


def test_shipped_sample_matches_a_fresh_generation(tmp_path: Path) -> None:
    assert SAMPLE.exists(), "run: python tools/make_sample.py"
    fresh = S.write_tsv(tmp_path / "sample.tsv", 300)
    if SAMPLE.read_bytes() == fresh.read_bytes():
        return
    # PNG bytes depend on the zlib build; text must match exactly and pixels (almost) exactly.
    shipped, regenerated = _read_tsv(SAMPLE), _read_tsv(fresh)
    assert len(shipped) == len(regenerated) == 300
    for a, b in zip(shipped, regenerated, strict=True):
        assert {k: v for k, v in a.items() if k != "image"} == {k: v for k, v in b.items() if k != "image"}, (
            "sample.tsv drifted from the generator: run python tools/make_sample.py"
        )
        assert _pixels_close(a["image"], b["image"]), f"image of item {a['index']} drifted"


def test_shipped_sample_parses_as_released_format() -> None:
    parsed = _read_tsv(SAMPLE)
    assert len(parsed) == 300
    assert list(parsed[0]) == list(S.COLUMNS)
    for r in parsed:
        assert "\n" not in r["image"]
        binascii.a2b_base64(r["image"])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        next(S.iter_synthetic_rows(-1))
    with pytest.raises(ValueError):
        next(S.iter_synthetic_rows(1, multi_answer_fraction=1.5))

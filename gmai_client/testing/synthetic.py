"""Deterministic, clearly synthetic GMAI-MMBench-format items (the shipped sample, tests, benchmarks).

This module owns the generator of fake benchmark rows: questions, options, answers and their images in
the released TSV layout (VLMEvalKit style, as pandas writes it). Every item is consistent with the real
lexical tree: its leaf label occurs under its modality in its clinical VQA task, its department and its
perceptual granularity. Nothing here is medical data; every image has "SYNTHETIC" burned into a corner.
The tree and the order items visit it are in ``synthetic_tree``, the images in ``synthetic_images``;
their public names are importable from here too.

Determinism: the same arguments give a byte-identical file in one environment. Text cells come from
seeded ``random.Random`` streams only (string seeds, so PYTHONHASHSEED does not matter) and do not
depend on ``image_size``; pixels come from their own per-image stream. PNG bytes can differ across
zlib/Pillow builds, which is why the sample's regression test compares decoded pixels as a fallback.

Speed: images are drawn lazily into a pool of pre-encoded PNGs keyed by (granularity, modality,
variant) and reused, so writing multi-GB files is dominated by I/O rather than drawing.
"""

from __future__ import annotations

import csv
import itertools
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

from gmai_client.testing.synthetic_images import (
    IMAGE_SLOTS,
    ImagePool,
    default_image_variants,
    pool_variants,
)
from gmai_client.testing.synthetic_tree import (
    DEPARTMENT_VIEW,
    GRANULARITY_VIEW,
    NO_DEPARTMENT,
    TASK_VIEW,
    LeafCombo,
    TreeIndex,
    coverage_order,
    load_lexical_tree,
    tree_index,
)

__all__ = [
    "COLUMNS",
    "COLUMNS_NO_ANSWER",
    "DEPARTMENT_VIEW",
    "GRANULARITY_VIEW",
    "LETTERS",
    "NO_DEPARTMENT",
    "TASK_VIEW",
    "ImagePool",
    "LeafCombo",
    "TreeIndex",
    "default_image_variants",
    "iter_synthetic_rows",
    "load_lexical_tree",
    "tree_index",
    "write_tsv",
]


LETTERS = ("A", "B", "C", "D", "E")
COLUMNS: tuple[str, ...] = (
    "index", "question", *LETTERS, "answer", "image",
    "category", TASK_VIEW, DEPARTMENT_VIEW, GRANULARITY_VIEW, "modality",
)  # fmt: skip
#: TEST files carry no answer column.
COLUMNS_NO_ANSWER: tuple[str, ...] = tuple(c for c in COLUMNS if c != "answer")

# How many options an item has (2..5), weighted towards 4-5 like most of the benchmark.
_OPTION_COUNT_WEIGHTS = {2: 1, 3: 2, 4: 3, 5: 4}
# Items whose unused trailing options hold the literal "none" (some released rows do) instead of empty.
_NONE_FILL_FRACTION = 0.1
# Every _QUOTE_EVERY-th item gets a double quote in its question so that csv quoting is exercised.
_QUOTE_EVERY = 100
_QUOTE_OFFSET = 42
# Tasks whose labels are mutually exclusive (a count, a grade, a phase): never multi-answer.
_SINGLE_ANSWER_TASKS = frozenset(
    {"Counting", "Severity Grading", "Image Quality Grading", "Surgical Workflow Recognition"}
)


# --------------------------------------------------------------------------- question text

_MODALITY_PHRASES = {
    "Adaptive Optics Ophthalmoscopy": "adaptive optics ophthalmoscopy",
    "Colposcopy": "colposcopy",
    "Dermoscopy": "dermoscopy",
    "Endoscopy": "endoscopy",
    "Fundus Photography": "fundus photography",
    "Histopathology": "histopathology",
    "Infrared Reflectance (IR) imaging": "infrared reflectance",
    "Microscopy": "microscopy",
    "Texture Characterization of Bone Radiograph": "bone radiograph",
    "UltraSound": "ultrasound",
}

# Per task: (single-answer, multi-answer) question. {where} is "shown" / "highlighted by the box" etc.,
# {region} is "" or " in the region highlighted by the box" etc., {mod} the modality phrase.
_TASK_QUESTIONS: dict[str, tuple[str, str]] = {
    "Attribute Recognition": (
        "Which attribute best describes the finding {where} in this {mod} image?",
        "Which attributes describe the finding {where} in this {mod} image?",
    ),
    "Blood Vessels Recognition": (
        "Which blood vessel is {where} in this {mod} image?",
        "Which blood vessels are {where} in this {mod} image?",
    ),
    "Bone": ("Which bone is {where} in this {mod} image?", "Which bones are {where} in this {mod} image?"),
    "Cell Recognition": (
        "What type of cell is {where} in this {mod} image?",
        "What types of cells are {where} in this {mod} image?",
    ),
    "Counting": ("How many cells are {where} in this {mod} image?", ""),
    "Disease Diagnosis": (
        "What abnormality is {where} in this {mod} image?",
        "What abnormalities are {where} in this {mod} image?",
    ),
    "Image Quality Grading": ("What is the quality grade of this {mod} image{region}?", ""),
    "Microorganism Recognition": (
        "Which microorganism is {where} in this {mod} image?",
        "Which microorganisms are {where} in this {mod} image?",
    ),
    "Muscle": (
        "Which muscle is {where} in this {mod} image?",
        "Which muscles are {where} in this {mod} image?",
    ),
    "Nervous Tissue": (
        "Which nervous tissue structure is {where} in this {mod} image?",
        "Which nervous tissue structures are {where} in this {mod} image?",
    ),
    "Severity Grading": ("What is the severity grade of the finding {where} in this {mod} image?", ""),
    "Surgeon Action Recognition": (
        "What action is the surgeon performing{region} in this {mod} image?",
        "What actions is the surgeon performing{region} in this {mod} image?",
    ),
    "Surgical Instrument Recognition": (
        "What surgical instrument is {where} in this {mod} image?",
        "What surgical instruments are {where} in this {mod} image?",
    ),
    "Surgical Workflow Recognition": ("Which surgical phase is {where} in this {mod} image?", ""),
}
for _part in ("Abdomen", "Head and Neck", "Pelvic", "Thorax"):
    _TASK_QUESTIONS[f"Organ Recognition - {_part}"] = (
        "Which organ is {where} in this {mod} image?",
        "Which organs are {where} in this {mod} image?",
    )

# Per granularity: phrases naming the burned-in mark; {color} is the mark's colour in the image.
_WHERE = {
    "Image Level": ("shown", ""),
    "Box Level": ("highlighted by the {color} box", " in the region highlighted by the {color} box"),
    "Contour Level": ("inside the {color} contour", " inside the {color} contour"),
    "Mask Level": ("covered by the {color} mask", " in the region covered by the {color} mask"),
}


def _question(combo: LeafCombo, color: str, multi: bool, quoted: bool) -> str:
    single, multiple = _TASK_QUESTIONS[combo.task]
    where, region = _WHERE[combo.granularity]
    text = (multiple if multi else single).format(
        where=where.format(color=color),
        region=region.format(color=color),
        mod=_MODALITY_PHRASES.get(combo.modality, combo.modality),
    )
    if multi:
        text += " Select all that apply."
    if quoted:
        text += ' Choose the "best" option.'
    return text


# --------------------------------------------------------------------------- rows


def iter_synthetic_rows(
    n_items: int,
    *,
    seed: int = 0,
    image_size: int = 96,
    multi_answer_fraction: float = 0.04,
    with_answer: bool = True,
    image_variants: int | None = None,
) -> Iterator[dict[str, str]]:
    """Yield ``n_items`` rows (column -> cell text) in the released TSV layout, in ``COLUMNS`` order.

    ``with_answer=False`` drops the answer column, like the TEST files. ``image_variants`` (images per
    (granularity, modality), rounded to a multiple of 4 within [4, 64]) overrides
    :func:`default_image_variants`. Text cells do not depend on ``image_size`` or ``image_variants``.
    """
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0, got {n_items}")
    if not 0.0 <= multi_answer_fraction <= 1.0:
        raise ValueError(f"multi_answer_fraction must be within [0, 1], got {multi_answer_fraction}")
    index = tree_index()
    pool = ImagePool(seed, image_size, pool_variants(image_variants or default_image_variants(image_size)))
    combos = _combos(index, seed)
    rng = random.Random(f"gmai-synthetic/items/{seed}")
    multi_due = 0.0  # multi-answer items owed so far; paid on the next eligible item (exact fraction)
    columns = COLUMNS if with_answer else COLUMNS_NO_ANSWER
    for i in range(n_items):
        combo = next(combos)
        multi_due += multi_answer_fraction
        siblings = [
            s
            for s in index.siblings[(combo.task, combo.department, combo.granularity, combo.modality)]
            if s != combo.label
        ]
        multi = multi_due >= 1.0 and combo.task not in _SINGLE_ANSWER_TASKS and bool(siblings)
        if multi:
            multi_due -= 1.0
        correct = [combo.label, rng.choice(siblings)] if multi else [combo.label]
        row = _row(i, combo, correct, rng, index, pool)
        yield {c: row[c] for c in columns}


def _combos(index: TreeIndex, seed: int) -> Iterator[LeafCombo]:
    """One greedy pass covers every combination once; later items cycle through it again (the
    options, letters and images still differ), which keeps huge files cheap to generate."""
    first_pass: list[LeafCombo] = []
    for combo in coverage_order(index, random.Random(f"gmai-synthetic/order/{seed}")):
        first_pass.append(combo)
        yield combo
    yield from itertools.cycle(first_pass)


def _row(
    i: int, combo: LeafCombo, correct: list[str], rng: random.Random, index: TreeIndex, pool: ImagePool
) -> dict[str, str]:
    """Item ``i``: its options around the ``correct`` labels, its question, image and categories."""
    multi = len(correct) > 1
    n_options = rng.choices(list(_OPTION_COUNT_WEIGHTS), weights=list(_OPTION_COUNT_WEIGHTS.values()))[0]
    n_options = max(n_options, 4 if multi else 2)
    distractors = _pick_distractors(index, combo, set(correct), n_options - len(correct), rng)
    # The correct letters' positions are uniform: place them first, then fill the rest in order.
    positions = rng.sample(range(n_options), len(correct))
    options: list[str] = [""] * n_options
    for pos, label in zip(positions, correct, strict=True):
        options[pos] = label
    rest = iter(distractors)
    options = [opt or next(rest) for opt in options]
    filler = "none" if rng.random() < _NONE_FILL_FRACTION else ""
    options += [filler] * (len(LETTERS) - n_options)
    variant = rng.randrange(IMAGE_SLOTS) % pool.variants
    color_name, _ = pool.color(variant)
    quoted = i % _QUOTE_EVERY == _QUOTE_OFFSET
    return {
        "index": str(i),
        "question": _question(combo, color_name, multi, quoted),
        **dict(zip(LETTERS, options, strict=True)),
        "answer": ",".join(LETTERS[p] for p in sorted(positions)),
        "image": pool.get(combo.granularity, combo.modality, variant),
        "category": combo.label,
        TASK_VIEW: combo.task,
        DEPARTMENT_VIEW: "" if combo.department == NO_DEPARTMENT else combo.department,
        GRANULARITY_VIEW: combo.granularity,
        "modality": combo.modality,
    }


def _pick_distractors(index: TreeIndex, combo: LeafCombo, exclude: set[str], k: int, rng: random.Random) -> list[str]:
    """k wrong labels, preferring the same modality and task, then modality, task, and the whole tree."""
    chosen: list[str] = []
    seen = set(exclude)
    tiers: Sequence[Sequence[str]] = (
        index.labels_by_mod_task.get((combo.modality, combo.task), ()),
        index.labels_by_mod.get(combo.modality, ()),
        index.labels_by_task.get(combo.task, ()),
        index.all_labels,
    )
    for tier in tiers:
        pool = [label for label in tier if label not in seen]
        take = min(k - len(chosen), len(pool))
        for label in rng.sample(pool, take):
            chosen.append(label)
            seen.add(label)
        if len(chosen) == k:
            break
    return chosen


def write_tsv(path: str | Path, n_items: int, **kwargs: object) -> Path:
    """Write ``n_items`` synthetic rows to ``path`` as pandas' ``to_csv(sep="\\t", index=False)`` would.

    That is csv.writer with a tab delimiter, minimal quoting and "\\n" line ends (what pandas uses
    underneath; the released files are pandas-written). Keyword arguments go to
    :func:`iter_synthetic_rows`. Returns the path.
    """
    path = Path(path)
    with_answer = bool(kwargs.get("with_answer", True))
    columns = COLUMNS if with_answer else COLUMNS_NO_ANSWER
    image_at = columns.index("image")
    path.parent.mkdir(parents=True, exist_ok=True)
    pieces: list[str] = []
    # csv.writer formats every text cell, but the image cell is spliced in unformatted: base64 never
    # needs quoting, and letting csv scan ~100 kB of it per row would cap large files at ~50 MB/s.
    # The head (index first) and tail (category first) are never a lone empty cell, which csv would
    # write as "" rather than nothing, so the result is byte-for-byte a plain csv.writer row.
    cells = csv.writer(
        SimpleNamespace(write=pieces.append), delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator=""
    )
    with path.open("w", encoding="utf-8", newline="", buffering=1 << 20) as fh:
        cells.writerow(columns)
        fh.write(pieces.pop() + "\n")
        for row in iter_synthetic_rows(n_items, **kwargs):  # type: ignore[arg-type]
            values = [row[c] for c in columns]
            cells.writerow(values[:image_at])
            cells.writerow(values[image_at + 1 :])
            tail, head = pieces.pop(), pieces.pop()
            fh.write(head)
            fh.write("\t")
            fh.write(values[image_at])
            fh.write("\t")
            fh.write(tail)
            fh.write("\n")
    return path

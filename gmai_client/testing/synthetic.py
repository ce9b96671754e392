"""Deterministic, clearly synthetic GMAI-MMBench-format items (the shipped sample, tests, benchmarks).

This module owns the generator of fake benchmark rows: questions, options, answers and PIL-drawn
base64 PNG images in the released TSV layout (VLMEvalKit style, as pandas writes it). Every item is
consistent with the real lexical tree: its leaf label occurs under its modality in its clinical VQA
task, its department and its perceptual granularity. Nothing here is medical data; every image has
"SYNTHETIC" burned into a corner.

Determinism: the same arguments give a byte-identical file in one environment. Text cells come from
seeded ``random.Random`` streams only (string seeds, so PYTHONHASHSEED does not matter) and do not
depend on ``image_size``; pixels come from their own per-image stream. PNG bytes can differ across
zlib/Pillow builds, which is why the sample's regression test compares decoded pixels as a fallback.

Speed: images are drawn lazily into a pool of pre-encoded PNGs keyed by (granularity, modality,
variant) and reused, so writing multi-GB files is dominated by I/O rather than drawing.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

from PIL import Image, ImageChops, ImageDraw

TASK_VIEW = "clinical VQA task"
DEPARTMENT_VIEW = "department"
GRANULARITY_VIEW = "perceptual granularity"
_VIEWS = (TASK_VIEW, DEPARTMENT_VIEW, GRANULARITY_VIEW)

#: The tree's bucket for items of no department; the TSV stores it as an empty cell.
NO_DEPARTMENT = "N/A"

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


# --------------------------------------------------------------------------- the lexical tree index


@dataclass(frozen=True)
class LeafCombo:
    """One consistent (task, department, granularity, modality, label) combination of the tree."""

    task: str
    department: str  # NO_DEPARTMENT for the N/A bucket
    granularity: str
    modality: str
    label: str


@lru_cache(maxsize=1)
def load_lexical_tree() -> dict[str, dict[str, dict[str, list[str]]]]:
    """The package's copy of the lexical tree ``{view: {category: {modality: [labels]}}}``."""
    text = resources.files("gmai_client").joinpath("data/lexical_tree.json").read_text(encoding="utf-8")
    return json.loads(text)


class TreeIndex:
    """Which tasks / departments / granularities each (modality, label) pair appears under.

    An item is consistent when its label sits under its modality in each of its three categories, so
    the valid combinations are, per (modality, label), the product of the three category sets.
    """

    def __init__(self, tree: dict[str, dict[str, dict[str, list[str]]]]) -> None:
        where: dict[tuple[str, str], dict[str, set[str]]] = {}
        for view in _VIEWS:
            for category, modalities in tree[view].items():
                for modality, labels in modalities.items():
                    for label in labels:
                        where.setdefault((modality, label), {v: set() for v in _VIEWS})[view].add(category)
        self.where = where
        # Sorted so that the combination order (and hence every seeded choice) never depends on dict order.
        self.combos: list[LeafCombo] = sorted(
            (
                LeafCombo(task, dept, gran, modality, label)
                for (modality, label), cats in where.items()
                for task in cats[TASK_VIEW]
                for dept in cats[DEPARTMENT_VIEW]
                for gran in cats[GRANULARITY_VIEW]
            ),
            key=lambda c: (c.task, c.department, c.granularity, c.modality, c.label),
        )
        self.tasks = sorted(tree[TASK_VIEW])
        self.departments = sorted(tree[DEPARTMENT_VIEW])
        self.granularities = sorted(tree[GRANULARITY_VIEW])
        self.modalities = sorted({m for m, _ in where})
        self.all_labels = sorted({label for _, label in where})
        by_mod_task: dict[tuple[str, str], set[str]] = {}
        by_mod: dict[str, set[str]] = {}
        by_task: dict[str, set[str]] = {}
        siblings: dict[tuple[str, str, str, str], set[str]] = {}
        for c in self.combos:
            by_mod_task.setdefault((c.modality, c.task), set()).add(c.label)
            by_mod.setdefault(c.modality, set()).add(c.label)
            by_task.setdefault(c.task, set()).add(c.label)
            siblings.setdefault((c.task, c.department, c.granularity, c.modality), set()).add(c.label)
        self.labels_by_mod_task = {k: sorted(v) for k, v in by_mod_task.items()}
        self.labels_by_mod = {k: sorted(v) for k, v in by_mod.items()}
        self.labels_by_task = {k: sorted(v) for k, v in by_task.items()}
        self.siblings = {k: sorted(v) for k, v in siblings.items()}

    def is_consistent(self, task: str, department: str, granularity: str, modality: str, label: str) -> bool:
        cats = self.where.get((modality, label))
        return bool(
            cats
            and task in cats[TASK_VIEW]
            and (department or NO_DEPARTMENT) in cats[DEPARTMENT_VIEW]
            and granularity in cats[GRANULARITY_VIEW]
        )


@lru_cache(maxsize=1)
def tree_index() -> TreeIndex:
    return TreeIndex(load_lexical_tree())


def _coverage_order(index: TreeIndex, rng: random.Random) -> Iterator[LeafCombo]:
    """All combinations, each once, greedily ordered so that every prefix covers the tree evenly.

    Each step first prefers combinations that bring a task, department, granularity or modality not seen
    yet (the more the better), then those whose values have been used least so far (usage scaled by the
    number of values in the view, i.e. distance from a fair share), ties broken at random. Deliberate
    cycling rather than pure sampling is what lets ~30 items already touch all 18 tasks, 19 departments
    and 4 granularities, and ~45 items all 38 modalities.
    """
    dims = (
        ([c.task for c in index.combos], index.tasks),
        ([c.department for c in index.combos], index.departments),
        ([c.granularity for c in index.combos], index.granularities),
        ([c.modality for c in index.combos], index.modalities),
    )
    keys: list[tuple[int, ...]] = []
    for values, universe in dims:
        pos = {v: i for i, v in enumerate(universe)}
        keys.append(tuple(pos[v] for v in values))
    per_combo = list(zip(*keys, strict=True))
    usage = [[0] * len(universe) for _, universe in dims]
    t_u, d_u, g_u, m_u = usage
    # Fair-share weights x4, except modality at x1: balancing 38 modalities at full weight would starve
    # the single-modality tasks (surgical workflow is endoscopy-only, counting histopathology-only).
    t_w, d_w, g_w, m_w = (
        4 * len(index.tasks),
        4 * len(index.departments),
        4 * len(index.granularities),
        len(index.modalities),
    )
    novelty = 1 << 40  # dominates any fair-share score
    remaining = list(range(len(index.combos)))
    while remaining:
        best_score = None
        best: list[int] = []
        for pos, ci in enumerate(remaining):
            t, d, g, m = per_combo[ci]
            tu, du, gu, mu = t_u[t], d_u[d], g_u[g], m_u[m]
            score = tu * t_w + du * d_w + gu * g_w + mu * m_w
            score -= novelty * ((tu == 0) + (du == 0) + (gu == 0) + (mu == 0))
            if best_score is None or score < best_score:
                best_score, best = score, [pos]
            elif score == best_score:
                best.append(pos)
        pos = rng.choice(best)
        ci = remaining.pop(pos)
        for dim, value in enumerate(per_combo[ci]):
            usage[dim][value] += 1
        yield index.combos[ci]


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

_MARK_COLORS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (230, 30, 30)),
    ("green", (30, 210, 60)),
    ("blue", (40, 90, 240)),
    ("yellow", (240, 220, 30)),
)


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


# --------------------------------------------------------------------------- images


def _rgb_or_l(style: str) -> str:
    return "RGB" if style in {"fundus", "endoscopy", "histopathology", "microscopy", "dermoscopy"} else "L"


def _style(modality: str) -> str:
    if modality in {"Fundus Photography"}:
        return "fundus"
    if modality in {"Endoscopy", "Colposcopy"}:
        return "endoscopy"
    if modality == "Histopathology":
        return "histopathology"
    if modality == "Microscopy":
        return "microscopy"
    if modality == "Dermoscopy":
        return "dermoscopy"
    if modality == "UltraSound":
        return "ultrasound"
    if modality == "OCT":
        return "oct"
    if modality in {"Infrared Reflectance (IR) imaging", "Adaptive Optics Ophthalmoscopy"}:
        return "retina-gray"
    return "radiology"  # CT, CTA, X-ray, bone radiographs and every MRI flavour


# (background, tissue, feature) colours per RGB style.
_PALETTES = {
    "fundus": ((8, 4, 2), (190, 80, 30), (250, 210, 120)),
    "endoscopy": ((40, 10, 10), (205, 110, 100), (250, 220, 210)),
    "histopathology": ((245, 225, 235), (225, 150, 190), (90, 40, 130)),
    "microscopy": ((235, 235, 225), (200, 205, 190), (110, 80, 150)),
    "dermoscopy": ((225, 180, 150), (210, 160, 130), (110, 60, 40)),
}

# 3x5 / 4x5 bitmap glyphs: a hand-drawn font keeps the watermark's pixels independent of FreeType.
_GLYPHS = {
    "S": ("111", "100", "111", "001", "111"),
    "Y": ("101", "101", "010", "010", "010"),
    "N": ("1001", "1101", "1011", "1001", "1001"),
    "T": ("111", "010", "010", "010", "010"),
    "H": ("101", "101", "111", "101", "101"),
    "E": ("111", "100", "110", "100", "111"),
    "I": ("111", "010", "010", "010", "111"),
    "C": ("111", "100", "100", "100", "111"),
}


def _draw_watermark(draw: ImageDraw.ImageDraw, size: int, fill: int | tuple[int, int, int]) -> None:
    scale = max(1, size // 128)
    width = sum(len(_GLYPHS[ch][0]) + 1 for ch in "SYNTHETIC") * scale
    x0, y0 = 2 * scale, size - 7 * scale
    # A dark backing strip keeps the word readable on light (histology, skin) backgrounds.
    draw.rectangle((x0 - scale, y0 - scale, x0 + width, y0 + 5 * scale), fill=0 if isinstance(fill, int) else (0, 0, 0))
    x = x0
    for ch in "SYNTHETIC":
        rows = _GLYPHS[ch]
        for r, row in enumerate(rows):
            for c, bit in enumerate(row):
                if bit == "1":
                    px, py = x + c * scale, y0 + r * scale
                    draw.rectangle((px, py, px + scale - 1, py + scale - 1), fill=fill)
        x += (len(rows[0]) + 1) * scale


def _blob(rng: random.Random, cx: float, cy: float, rx: float, ry: float, n: int = 14) -> list[tuple[int, int]]:
    """An irregular closed polygon around (cx, cy): an ellipse with jittered radius, integer vertices."""
    pts = []
    for k in range(n):
        a = 2 * math.pi * k / n
        j = rng.uniform(0.8, 1.15)
        pts.append((round(cx + rx * j * math.cos(a)), round(cy + ry * j * math.sin(a))))
    return pts


def _draw_image(seed_key: str, size: int, granularity: str, modality: str, color: tuple[int, int, int]) -> bytes:
    """Draw and PNG-encode one synthetic image; the pixels depend only on the arguments."""
    rng = random.Random(seed_key)
    style = _style(modality)
    mode = _rgb_or_l(style)
    # A per-modality brightness shift so that, e.g., T1 and T2 MRI do not look identical.
    shift = sum(map(ord, modality)) % 40 - 20
    s = size
    if mode == "L":
        img = Image.new("L", (s, s), 0)
        d = ImageDraw.Draw(img)
        if style == "ultrasound":
            d.pieslice((-s // 2, -s, s + s // 2, s), 50, 130, fill=90 + shift)  # fan from a top apex
        elif style == "oct":
            for k in range(6):
                y = int(s * (0.3 + 0.08 * k + rng.uniform(-0.02, 0.02)))
                d.rectangle((0, y, s, y + max(1, s // 40)), fill=120 + 20 * (k % 3) + shift)
        elif style == "retina-gray":
            d.polygon(_blob(rng, s / 2, s / 2, s * 0.45, s * 0.45, 24), fill=110 + shift)
            d.polygon(_blob(rng, s * 0.62, s / 2, s * 0.08, s * 0.08), fill=200)
        else:
            d.polygon(_blob(rng, s / 2, s / 2, s * 0.42, s * 0.36, 20), fill=100 + shift)
            for _ in range(rng.randint(2, 4)):
                d.polygon(
                    _blob(rng, rng.uniform(0.3, 0.7) * s, rng.uniform(0.3, 0.7) * s, s * 0.08, s * 0.06),
                    fill=rng.randint(150, 230),
                )
        fill_text: int | tuple[int, int, int] = 255
    else:
        bg, tissue, feature = _PALETTES[style]
        img = Image.new("RGB", (s, s), bg)
        d = ImageDraw.Draw(img)
        tissue = tuple(max(0, min(255, v + shift)) for v in tissue)
        if style in {"fundus", "endoscopy"}:
            d.polygon(_blob(rng, s / 2, s / 2, s * 0.46, s * 0.46, 24), fill=tissue)
        else:
            d.rectangle((0, 0, s, s), fill=tissue)
        for _ in range(rng.randint(3, 7)):
            r = s * rng.uniform(0.03, 0.09)
            d.polygon(_blob(rng, rng.uniform(0.15, 0.85) * s, rng.uniform(0.15, 0.85) * s, r, r, 10), fill=feature)
        fill_text = (255, 255, 0)
    # Speckle noise at half resolution: looks like texture, yet PNG still compresses it well.
    half = max(1, s // 2)
    noise = Image.frombytes("L", (half, half), rng.randbytes(half * half)).point(lambda v: v >> 4)
    noise = noise.resize((s, s), Image.Resampling.NEAREST)
    if mode == "RGB":
        noise = Image.merge("RGB", (noise, noise, noise))
    img = ImageChops.add(img, noise, scale=1.0, offset=-8)
    if granularity != "Image Level" and mode == "L":
        img = img.convert("RGB")  # coloured marks on grey images, as in the released benchmark
        fill_text = (255, 255, 0)
    d = ImageDraw.Draw(img)
    w, h = rng.uniform(0.15, 0.4) * s, rng.uniform(0.15, 0.4) * s
    x0, y0 = rng.uniform(0.1, 0.9 - w / s) * s, rng.uniform(0.1, 0.85 - h / s) * s
    line = max(1, s // 64)
    if granularity == "Box Level":
        d.rectangle((round(x0), round(y0), round(x0 + w), round(y0 + h)), outline=color, width=line)
    elif granularity == "Contour Level":
        pts = _blob(rng, x0 + w / 2, y0 + h / 2, w / 2, h / 2, 18)
        d.line([*pts, pts[0]], fill=color, width=line)
    elif granularity == "Mask Level":
        alpha = Image.new("L", (s, s), 0)
        ImageDraw.Draw(alpha).polygon(_blob(rng, x0 + w / 2, y0 + h / 2, w / 2, h / 2, 18), fill=110)
        img.paste(Image.new("RGB", (s, s), color), (0, 0), alpha)  # pasting through an L mask blends
        d = ImageDraw.Draw(img)
    _draw_watermark(d, s, fill_text)
    buf = io.BytesIO()
    # Level 6 is zlib's default; large benchmark images use a faster level (bigger files, same pixels).
    img.save(buf, format="PNG", compress_level=6 if s <= 256 else 1)
    return buf.getvalue()


# Each item draws one of _IMAGE_SLOTS image slots whatever the pool size, so that the random stream (and
# hence every text cell, including the mark colour named in the question) is independent of image_size.
_IMAGE_SLOTS = 64


def default_image_variants(image_size: int) -> int:
    """Pool variants per (granularity, modality): 64 for small images, down to 4 for large ones.

    Bounds the one-off drawing cost (at most ~120 (granularity, modality) pairs x variants images)
    while keeping enough distinct images that a sample does not look copy-pasted.
    """
    return round(64 * (128 / max(1, image_size)) ** 2)


def _pool_variants(requested: int) -> int:
    """A multiple of the 4 mark colours within [4, 64]: then variant % 4 == slot % 4 keeps the colour."""
    n_colors = len(_MARK_COLORS)
    return min(_IMAGE_SLOTS, max(n_colors, -(-requested // n_colors) * n_colors))


class ImagePool:
    """Lazily drawn, base64-encoded PNGs keyed by (granularity, modality, variant), reused across items."""

    def __init__(self, seed: int, image_size: int, variants: int) -> None:
        self.seed, self.size, self.variants = seed, image_size, variants
        self._cache: dict[tuple[str, str, int], str] = {}

    @staticmethod
    def color(variant: int) -> tuple[str, tuple[int, int, int]]:
        return _MARK_COLORS[variant % len(_MARK_COLORS)]

    def get(self, granularity: str, modality: str, variant: int) -> str:
        key = (granularity, modality, variant)
        b64 = self._cache.get(key)
        if b64 is None:
            seed_key = f"gmai-synthetic/image/{self.seed}/{self.size}/{granularity}/{modality}/{variant}"
            png = _draw_image(seed_key, self.size, granularity, modality, self.color(variant)[1])
            b64 = self._cache[key] = base64.b64encode(png).decode("ascii")
        return b64


# --------------------------------------------------------------------------- rows


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
    variants = _pool_variants(image_variants or default_image_variants(image_size))
    pool = ImagePool(seed, image_size, variants)
    order_rng = random.Random(f"gmai-synthetic/order/{seed}")
    rng = random.Random(f"gmai-synthetic/items/{seed}")
    order = _coverage_order(index, order_rng)
    first_pass: list[LeafCombo] = []
    multi_due = 0.0  # multi-answer items owed so far; paid on the next eligible item (exact fraction)
    columns = COLUMNS if with_answer else COLUMNS_NO_ANSWER
    for i in range(n_items):
        # One greedy pass covers every combination once; later items cycle through it again (the
        # options, letters and images still differ), which keeps huge files cheap to generate.
        combo = next(order, None)
        if combo is None:
            combo = first_pass[i % len(first_pass)]
        else:
            first_pass.append(combo)
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
        variant = rng.randrange(_IMAGE_SLOTS) % pool.variants
        color_name, _ = pool.color(variant)
        quoted = i % _QUOTE_EVERY == _QUOTE_OFFSET
        row = {
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
        yield {c: row[c] for c in columns}


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

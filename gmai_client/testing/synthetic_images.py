"""The synthetic items' images: PIL-drawn, "SYNTHETIC"-watermarked PNGs, pooled and reused (see ``synthetic``).

Owns how an image looks for a modality (grey radiology, fan-shaped ultrasound, coloured fundus or
histology...), the burned-in mark a granularity asks for (box, contour, mask, none) in one of four
colours, the watermark, and ``ImagePool``, which draws each (granularity, modality, variant) once.
The pixels depend only on the drawing's arguments: each image has its own seeded random stream.
"""

from __future__ import annotations

import base64
import io
import math
import random

from PIL import Image, ImageChops, ImageDraw

#: The mark colours, named as the questions name them.
MARK_COLORS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (230, 30, 30)),
    ("green", (30, 210, 60)),
    ("blue", (40, 90, 240)),
    ("yellow", (240, 220, 30)),
)


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
    # One random stream per image, drawn from in a fixed order: base, speckle, mark.
    rng = random.Random(seed_key)
    style = _style(modality)
    # A per-modality brightness shift so that, e.g., T1 and T2 MRI do not look identical.
    shift = sum(map(ord, modality)) % 40 - 20
    fill_text: int | tuple[int, int, int] = (255, 255, 0)  # the watermark: white on grey, yellow on colour
    if _rgb_or_l(style) == "L":
        img, fill_text = _grey_base(rng, style, size, shift), 255
    else:
        img = _colour_base(rng, style, size, shift)
    img = _speckle(img, rng, size)
    if granularity != "Image Level" and img.mode == "L":
        img = img.convert("RGB")  # coloured marks on grey images, as in the released benchmark
        fill_text = (255, 255, 0)
    img = _draw_mark(img, rng, granularity, color)
    _draw_watermark(ImageDraw.Draw(img), size, fill_text)
    buf = io.BytesIO()
    # Level 6 is zlib's default; large benchmark images use a faster level (bigger files, same pixels).
    img.save(buf, format="PNG", compress_level=6 if size <= 256 else 1)
    return buf.getvalue()


def _grey_base(rng: random.Random, style: str, s: int, shift: int) -> Image.Image:
    """The anatomy of a grey-scale modality: an ultrasound fan, OCT layers, a retina, or a body section."""
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
    return img


def _colour_base(rng: random.Random, style: str, s: int, shift: int) -> Image.Image:
    """The tissue of a colour modality in its palette: a round field of view or a full slide, and features."""
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
    return img


def _speckle(img: Image.Image, rng: random.Random, s: int) -> Image.Image:
    """Speckle noise at half resolution: looks like texture, yet PNG still compresses it well."""
    half = max(1, s // 2)
    noise = Image.frombytes("L", (half, half), rng.randbytes(half * half)).point(lambda v: v >> 4)
    noise = noise.resize((s, s), Image.Resampling.NEAREST)
    if img.mode == "RGB":
        noise = Image.merge("RGB", (noise, noise, noise))
    return ImageChops.add(img, noise, scale=1.0, offset=-8)


def _draw_mark(img: Image.Image, rng: random.Random, granularity: str, color: tuple[int, int, int]) -> Image.Image:
    """The region a question points at: a box, a contour or a translucent mask (none at image level).
    Its place is drawn even at image level, so every granularity uses the random stream alike."""
    s = img.width
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
    return img


# Each item draws one of IMAGE_SLOTS image slots whatever the pool size, so that the random stream (and
# hence every text cell, including the mark colour named in the question) is independent of image_size.
IMAGE_SLOTS = 64


def default_image_variants(image_size: int) -> int:
    """Pool variants per (granularity, modality): 64 for small images, down to 4 for large ones.

    Bounds the one-off drawing cost (at most ~120 (granularity, modality) pairs x variants images)
    while keeping enough distinct images that a sample does not look copy-pasted.
    """
    return round(64 * (128 / max(1, image_size)) ** 2)


def pool_variants(requested: int) -> int:
    """A multiple of the 4 mark colours within [4, 64]: then variant % 4 == slot % 4 keeps the colour."""
    n_colors = len(MARK_COLORS)
    return min(IMAGE_SLOTS, max(n_colors, -(-requested // n_colors) * n_colors))


class ImagePool:
    """Lazily drawn, base64-encoded PNGs keyed by (granularity, modality, variant), reused across items."""

    def __init__(self, seed: int, image_size: int, variants: int) -> None:
        self.seed, self.size, self.variants = seed, image_size, variants
        self._cache: dict[tuple[str, str, int], str] = {}

    @staticmethod
    def color(variant: int) -> tuple[str, tuple[int, int, int]]:
        return MARK_COLORS[variant % len(MARK_COLORS)]

    def get(self, granularity: str, modality: str, variant: int) -> str:
        key = (granularity, modality, variant)
        b64 = self._cache.get(key)
        if b64 is None:
            seed_key = f"gmai-synthetic/image/{self.seed}/{self.size}/{granularity}/{modality}/{variant}"
            png = _draw_image(seed_key, self.size, granularity, modality, self.color(variant)[1])
            b64 = self._cache[key] = base64.b64encode(png).decode("ascii")
        return b64

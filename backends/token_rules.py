"""Input-token estimates by each provider's documented rule, for budgets, rate limits and ``plan``.

Pure functions, no I/O. The image size is read from the encoded file's header (PNG, JPEG, GIF,
WebP, BMP), never by decoding pixels. The rules, as the providers document them (2026-11):

OpenAI, "tile" models (gpt-4o, gpt-4.1, gpt-5, o1, o3, ...): ``detail=low`` costs the base tokens
only. ``high`` (and ``auto``) first scales the image down to fit a 2048 x 2048 square, then down so
its shortest side is at most 768 px, and counts the 512 px tiles that cover it:
``base + per_tile * tiles`` (85 + 170 per tile for gpt-4o; 2833 + 5667 for gpt-4o-mini).

OpenAI, "patch" models (gpt-4.1-mini, gpt-4.1-nano, o4-mini): 32 px patches,
``ceil(w/32) * ceil(h/32)``; above 1536 patches the image is scaled down to fit 1536 (and then so
its width is a whole number of patches); the count is multiplied by the model's factor.

Anthropic: ``ceil(w * h / 750)`` after the image is scaled down so its long edge is at most
1568 px and its area at most 1092 x 1092 px (about 1,600 tokens).

Text: about four characters per token, a rough rule (tokenizers are not available offline); the
reports put every estimate beside the tokens the provider reported.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

from gmai_client.backend import CHARS_PER_TOKEN, DEFAULT_IMAGE_TOKENS, text_tokens
from gmai_client.types import Request

__all__ = ["CHARS_PER_TOKEN", "DEFAULT_IMAGE_TOKENS", "estimate_tokens", "image_size", "text_tokens"]


@dataclass(frozen=True)
class TileRule:
    base: int
    per_tile: int


@dataclass(frozen=True)
class PatchRule:
    multiplier: float


# Longest prefix wins: "gpt-4o-mini" before "gpt-4o".
_OPENAI_RULES: tuple[tuple[str, TileRule | PatchRule], ...] = (
    ("gpt-4o-mini", TileRule(2833, 5667)),
    ("gpt-4.1-mini", PatchRule(1.62)),
    ("gpt-4.1-nano", PatchRule(2.46)),
    ("o4-mini", PatchRule(1.72)),
    ("gpt-4o", TileRule(85, 170)),
    ("gpt-4.1", TileRule(85, 170)),
    ("gpt-4.5", TileRule(85, 170)),
    ("gpt-5", TileRule(70, 140)),
    ("o1", TileRule(75, 150)),
    ("o3", TileRule(75, 150)),
)
_DEFAULT_OPENAI_RULE = TileRule(85, 170)
_ANTHROPIC_MAX_EDGE = 1568
_ANTHROPIC_MAX_AREA = 1092 * 1092


def estimate_tokens(
    request: Request, per_image: Callable[[int, int], int | None], max_side: int | None = None
) -> int:
    """Input tokens of ``request``: its text by the four-characters rule, each image by
    ``per_image(width, height)`` at the size it is sent (after a downscale to ``max_side``), or
    ``DEFAULT_IMAGE_TOKENS`` when its size or the rule is unknown."""
    total = text_tokens(request.system) + text_tokens(request.text)
    for image in request.images:
        # The header alone (PNG, GIF, BMP, WebP); a JPEG's size may sit further in.
        size = image_size(image.head(64)) or (image_size(image.data) if image.mime == "image/jpeg" else None)
        tokens = None
        if size is not None and min(size) > 0:
            width, height = size
            scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
            tokens = per_image(max(1, round(width * scale)), max(1, round(height * scale)))
        total += DEFAULT_IMAGE_TOKENS if tokens is None else tokens
    return total


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header, or None if the format or header is unknown."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return width, abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        # Start-of-frame markers (not DHT 0xC4, JPG 0xC8, DAC 0xCC) hold height then width.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    return None


def openai_rule(model: str) -> TileRule | PatchRule:
    name = model.lower().rsplit("/", 1)[-1]
    for prefix, rule in _OPENAI_RULES:
        if name.startswith(prefix):
            return rule
    return _DEFAULT_OPENAI_RULE


def openai_image_tokens(width: int, height: int, *, model: str = "gpt-4o", detail: str = "auto") -> int:
    rule = openai_rule(model)
    if isinstance(rule, PatchRule):
        return math.ceil(_patches(width, height) * rule.multiplier)
    if detail == "low":
        return rule.base
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return rule.base + rule.per_tile * math.ceil(width / 512) * math.ceil(height / 512)


def _patches(width: int, height: int, limit: int = 1536) -> int:
    raw = math.ceil(width / 32) * math.ceil(height / 32)
    if raw <= limit:
        return raw
    shrink = math.sqrt(32 * 32 * limit / (width * height))
    scaled_width, scaled_height = width * shrink, height * shrink
    # Then so that the width is a whole number of patches.
    fit = math.floor(scaled_width / 32) / (scaled_width / 32)
    scaled_width, scaled_height = scaled_width * fit, scaled_height * fit
    return math.ceil(scaled_width / 32) * math.ceil(scaled_height / 32)


def anthropic_image_tokens(width: int, height: int) -> int:
    scale = min(1.0, _ANTHROPIC_MAX_EDGE / max(width, height), math.sqrt(_ANTHROPIC_MAX_AREA / (width * height)))
    return math.ceil((width * scale) * (height * scale) / 750)

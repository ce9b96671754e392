"""Tests for gmai_client.backends.token_rules against the providers' documented worked examples."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from gmai_client.backends import token_rules as rules


@pytest.mark.parametrize(
    ("size", "detail", "tokens"),
    [
        ((1024, 1024), "high", 765),  # OpenAI's example: 768 x 768 after scaling, 4 tiles
        ((2048, 4096), "high", 1105),  # 1024 x 2048, then 768 x 1536: 6 tiles
        ((4096, 8192), "low", 85),  # low detail: the base only
        ((512, 512), "high", 255),  # one tile
    ],
)
def test_openai_tile_rule_documented_examples(size: tuple[int, int], detail: str, tokens: int) -> None:
    assert rules.openai_image_tokens(*size, model="gpt-4o", detail=detail) == tokens


def test_openai_mini_has_its_own_tile_costs() -> None:
    assert rules.openai_image_tokens(1024, 1024, model="gpt-4o-mini-2024-07-18") == 2833 + 4 * 5667


@pytest.mark.parametrize(("size", "patches"), [((1024, 1024), 1024), ((1800, 2400), 1452)])
def test_openai_patch_rule_documented_examples(size: tuple[int, int], patches: int) -> None:
    assert rules._patches(*size) == patches
    assert rules.openai_image_tokens(*size, model="gpt-4.1-mini") == pytest.approx(patches * 1.62, abs=1)


@pytest.mark.parametrize(("size", "tokens"), [((200, 200), 54), ((1000, 1000), 1334), ((1092, 1092), 1590)])
def test_anthropic_pixel_rule_documented_examples(size: tuple[int, int], tokens: int) -> None:
    assert rules.anthropic_image_tokens(*size) == tokens


def test_anthropic_downscales_large_images_first() -> None:
    assert rules.anthropic_image_tokens(4000, 4000) == 1590  # to 1092 x 1092
    assert rules.anthropic_image_tokens(784, 3000) <= rules.anthropic_image_tokens(784, 1568) + 1  # long edge 1568


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_image_size_from_the_header_of_every_format(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (321, 123), "white").save(buffer, format=fmt)
    assert rules.image_size(buffer.getvalue()) == (321, 123)


def test_unknown_bytes_have_no_size() -> None:
    assert rules.image_size(b"not an image at all") is None

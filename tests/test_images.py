"""Tests for gmai_client.backends.images: pass-through by default, aspect-keeping downscale, the process pool."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image as PILImage

from gmai_client.backends import images
from gmai_client.backends.images import downscale, prepare_images, shutdown_pool
from gmai_client.types import Image


def encoded(width: int, height: int, mode: str = "RGB", fmt: str = "PNG") -> Image:
    out = io.BytesIO()
    PILImage.new(mode, (width, height), 100 if mode in ("L", "CMYK") else None).save(out, format=fmt)
    return Image(out.getvalue(), mime=f"image/{fmt.lower()}")


def decoded(image: Image) -> PILImage.Image:
    return PILImage.open(io.BytesIO(image.data))


def test_a_downscaled_image_sends_its_own_bytes_not_the_dataset_text() -> None:
    big = encoded(800, 400)
    with_text = Image(big.data, big.mime, encoded=base64.b64encode(big.data).decode())
    small = downscale(with_text, 256)
    assert small.encoded is None
    assert base64.b64decode(small.b64) == small.data != big.data


def test_an_image_that_fits_passes_through_untouched() -> None:
    image = encoded(64, 32)
    assert downscale(image, 64) is image
    assert downscale(image, 1000) is image


@pytest.mark.parametrize(
    ("size", "mode", "fmt", "expected_size", "expected_mode"),
    [
        ((800, 400), "RGB", "PNG", (256, 128), "RGB"),
        ((300, 900), "L", "PNG", (85, 256), "L"),
        ((512, 512), "RGBA", "PNG", (256, 256), "RGBA"),
        ((600, 300), "CMYK", "JPEG", (256, 128), "RGB"),  # PNG cannot hold CMYK
    ],
)
def test_downscale_keeps_aspect_and_writes_png(
    size: tuple[int, int], mode: str, fmt: str, expected_size: tuple[int, int], expected_mode: str
) -> None:
    small = downscale(encoded(*size, mode=mode, fmt=fmt), 256)
    assert small.mime == "image/png" and small.data.startswith(b"\x89PNG")
    assert decoded(small).size == expected_size and decoded(small).mode == expected_mode


def test_prepare_images_without_max_side_never_starts_the_pool() -> None:
    shutdown_pool()
    pictures = (encoded(900, 900), encoded(10, 10))
    assert asyncio.run(prepare_images(pictures, None)) == pictures
    fitting = asyncio.run(prepare_images(pictures[1:], 64))
    assert fitting[0] is pictures[1]
    assert images._pool is None


def test_prepare_images_resizes_in_the_pool_and_keeps_order() -> None:
    big, small, tall = encoded(640, 320), encoded(20, 20), encoded(100, 400, mode="L")
    try:
        prepared = asyncio.run(prepare_images([big, small, tall], 128))
        assert images._pool is not None  # the work went to the worker processes
    finally:
        shutdown_pool()
    assert prepared[1] is small
    assert prepared[0] == downscale(big, 128) and prepared[2] == downscale(tall, 128)  # same bytes as inline
    assert [decoded(p).size for p in prepared] == [(128, 64), (20, 20), (32, 128)]


def test_bad_max_side() -> None:
    with pytest.raises(ValueError):
        downscale(encoded(4, 4), 0)
    with pytest.raises(ValueError):
        asyncio.run(prepare_images([encoded(4, 4)], 0))

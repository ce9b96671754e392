"""Image preparation before sending: optional downscaling, off the event loop.

Owns ``downscale`` (one image, synchronous, PIL) and ``prepare_images`` (a request's images, async).
The dataset already holds PNG bytes that every API backend accepts, so the default is to pass
them through byte-for-byte; re-encoding only happens when a ``max_side`` is asked for and an image
is larger than it. Re-encoding a PNG costs tens of milliseconds of CPU, which would stall every
in-flight request if done on the event loop, so it runs in a process pool shared by the whole
process and created on first use (a process pool keeps the CPU work away from the event loop's
GIL entirely, whatever parts of PIL release it).

Workers start with ``forkserver`` where the platform has it (``spawn`` elsewhere), never plain
``fork``: the client process has threads and open sockets (HTTP keep-alive connections, test
servers), and a forked worker would inherit held locks and keep those sockets open, so a closed
connection would never reach the server. The price is the usual multiprocessing rule: a script
that resizes images must keep its top-level code under ``if __name__ == "__main__":``, because
workers import the main module; ``prepare_images`` says so when a worker dies at start-up.

Only the image header is read on the event loop to decide whether a resize is needed: PIL reads
the size without decoding pixels, which costs microseconds.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from PIL import Image as PILImage

from gmai_client.types import Image

# Modes PNG can store as they are; anything else (CMYK JPEG, YCbCr, ...) is converted first.
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"})

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header only; pixels are not decoded."""
    with PILImage.open(io.BytesIO(data)) as img:
        return img.size


def needs_downscale(image: Image, max_side: int | None) -> bool:
    if max_side is None:
        return False
    return max(image_size(image.data)) > max_side


def _downscale_bytes(data: bytes, max_side: int) -> bytes | None:
    """PNG bytes of ``data`` shrunk to fit ``max_side``, or None when it already fits.

    Module-level (and bytes in, bytes out) so that a process pool can pickle it.
    """
    with PILImage.open(io.BytesIO(data)) as img:
        if max(img.size) <= max_side:
            return None
        img.load()
        if img.mode not in _PNG_MODES:
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        # thumbnail keeps the aspect ratio and never upscales; LANCZOS keeps thin structures
        # (lesion contours, boxes drawn on the image) visible after shrinking.
        img.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
        out = io.BytesIO()
        # Lowest zlib effort: measured on a 1024 px noisy image, 4.4x faster to encode than the
        # default level for 27% more bytes; providers bill images by pixels, not bytes, and the
        # encode runs on the client's few cores for every item.
        img.save(out, format="PNG", compress_level=1)
        return out.getvalue()


def downscale(image: Image, max_side: int) -> Image:
    """``image`` resized so that its longer side is at most ``max_side`` (aspect kept, PNG).

    An image that already fits is returned as is: same object, bytes untouched.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    resized = _downscale_bytes(image.data, max_side)
    return image if resized is None else Image(data=resized, mime="image/png")


def _mp_context() -> multiprocessing.context.BaseContext | None:
    # See the module docstring for why not fork. Platforms without forkserver use their default.
    if "forkserver" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("forkserver")
    return None


def get_pool() -> ProcessPoolExecutor:
    """The process-wide resize pool, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=_mp_context())
        return _pool


def shutdown_pool() -> None:
    """Stop the pool's workers (tests, or a long-lived process done with images)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


async def prepare_images(images: Iterable[Image], max_side: int | None) -> tuple[Image, ...]:
    """``images`` ready to send: those larger than ``max_side`` are downscaled in the process pool.

    With ``max_side=None``, or when every image already fits, nothing is re-encoded and the pool
    is never created.
    """
    images = tuple(images)
    if max_side is None:
        return images
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    todo = [i for i, image in enumerate(images) if needs_downscale(image, max_side)]
    if not todo:
        return images
    loop = asyncio.get_running_loop()
    pool = get_pool()
    try:
        results = await asyncio.gather(
            *(loop.run_in_executor(pool, _downscale_bytes, images[i].data, max_side) for i in todo)
        )
    except BrokenProcessPool as exc:
        shutdown_pool()  # a broken pool stays broken; the next call starts a fresh one
        raise RuntimeError(
            "an image-resizing worker process died; if this runs from a script, put the script's "
            'top-level code under `if __name__ == "__main__":` (workers import the main module)'
        ) from exc
    prepared = list(images)
    for i, data in zip(todo, results, strict=True):
        if data is not None:
            prepared[i] = Image(data=data, mime="image/png")
    return tuple(prepared)

"""The gallery's item data: each shown item's question text and image thumbnail, from the data files.

Records hold neither images nor question text, so ``load_gallery_items`` reads the wanted items
again through the dataset reader (``dataset.find_items``: the run's own parsing rules, only the
wanted rows parsed, the scan stopping once all are found) and returns them as ``GalleryItems``.

Thumbnails are the report's costliest step at real image sizes: a 1400 px PNG takes ~15 ms to
decode, and no PNG decoder can skip pixels. During a run, ``ThumbnailCollector`` makes the ones the
gallery would show so far on a thread of its own (the run's event loop uses one core; the other is
mostly idle), reading each row back by its byte offset, so that the report tail finds them done;
the report makes any other one it needs itself. So they are made in a thread pool while the file is
still being scanned (Pillow releases the GIL while it inflates, resizes and encodes, so threads use
every core without copying megabytes of base64 to worker processes, or starting any; and unlike a
process pool they never import the user's main script), an image shared by several items is decoded
once, and each image is shrunk in its own mode before any conversion, so that colour conversion and
16-bit stretching touch 96 px, not 1400.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image as PILImage

from gmai_client.data.dataset import DatasetFile, find_items, open_dataset, read_at
from gmai_client.types import Record

THUMB_PX = 96


def outcome(record: Record) -> str:
    """How a record ended, as the gallery groups items."""
    if record.status == "error":
        return "errored"
    if record.status in ("unparsed", "refused"):
        return "unparsed"
    if record.correct is True:
        return "correct"
    if record.correct is False:
        return "wrong"
    return "answered"  # no key (TEST): neither right nor wrong


@dataclass(frozen=True)
class GalleryItems:
    """Index -> thumbnail (a JPEG data URI) and index -> question text, for the items found."""

    thumbnails: Mapping[str, str] = field(default_factory=dict)
    questions: Mapping[str, str] = field(default_factory=dict)


def data_files(saved_files: Iterable[str], records: Iterable[Record]) -> list[Path]:
    """The run's data files that still exist: from config.json, else from the records' sources."""
    files = [str(p) for p in saved_files]
    if not files:
        # A record's source reads "<file>, row N, index I": the file is all before ", row ".
        files = sorted({r.source.rsplit(", row ", 1)[0] for r in records if ", row " in r.source})
    return [Path(f) for f in dict.fromkeys(files) if Path(f).is_file()]


def row_places(records: Iterable[Record], wanted: Collection[str]) -> dict[str, tuple[str, int]]:
    """Where the rows of the ``wanted`` items are: (file, byte offset), as the records keep them."""
    places = {}
    for record in records:
        if record.index in wanted and record.source_offset >= 0 and ", row " in record.source:
            places[record.index] = (record.source.rsplit(", row ", 1)[0], record.source_offset)
    return places


def load_gallery_items(
    paths: Sequence[Path],
    wanted: Collection[str],
    *,
    at: Mapping[str, tuple[str, int]] | None = None,
    workers: int | None = None,
) -> GalleryItems:
    """Questions and thumbnails of the ``wanted`` indexes found in ``paths`` (a DataError when a file
    cannot be opened as a dataset). ``at``: where their rows are (read there, no scan of the file).
    An image that cannot be decoded gets no thumbnail."""
    wanted = set(wanted)
    if not wanted:
        return GalleryItems()
    workers = workers or os.cpu_count() or 1
    questions: dict[str, str] = {}
    futures: dict[str, Future[str | None]] = {}
    cache = _ThumbnailCache()
    # Images waiting for a thread are held in memory: at most two per thread, so that a scan
    # faster than the decoding keeps megabytes, not hundreds of them.
    slots = threading.BoundedSemaphore(2 * workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for item in find_items(open_dataset(paths), wanted, at):
            if item.index not in wanted or item.index in questions:
                continue  # a row find_items did not filter, or a second row with the same index
            questions[item.index] = item.question.strip()
            if item.images_b64:
                slots.acquire()
                futures[item.index] = pool.submit(cache.thumbnail, item.images_b64[0])
                futures[item.index].add_done_callback(lambda _: slots.release())
        thumbnails = {index: uri for index, future in futures.items() if (uri := future.result()) is not None}
    return GalleryItems(thumbnails, questions)


class ThumbnailCollector:
    """Gallery thumbnails made while a run goes (see the module docstring).

    ``offer(record)`` is cheap (it keeps the record, which says where the item's row is) and is
    called as records are kept. A worker thread applies the gallery's own choice (``select``) to the
    records so far, every ``REFRESH_S`` at most, and makes the thumbnails of the chosen items it
    has not made yet, reading each row back by its offset: as a run goes the choice settles, so
    the report tail finds nearly all of them made. Nothing but the thumbnails stays in memory.
    ``collected()`` stops the worker (the report makes what it had not reached) and returns them.
    """

    REFRESH_S = 1.0

    def __init__(self, files: Sequence[DatasetFile], select: Callable[[Sequence[Record]], Sequence[str]]):
        self._files = tuple(files)
        self._select = select
        self._records: list[Record] = []
        self._stopping = threading.Event()
        self._questions: dict[str, str] = {}
        self._thumbnails: dict[str, str] = {}
        self._tried: set[str] = set()
        self._cache = _ThumbnailCache()
        self._thread: threading.Thread | None = None

    def offer(self, record: Record) -> None:
        if record.source_offset < 0 or ", row " not in record.source:
            return
        # What the gallery's choice reads, no more: a run's records would otherwise all stay alive,
        # scattered among the requests' short-lived objects, and the process would grow with them.
        self._records.append(
            Record(
                index=record.index, model=record.model, status=record.status, prediction=None,
                correct=record.correct, task=record.task, source=record.source, source_offset=record.source_offset,
            )
        )  # fmt: skip
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="gmai-thumbnails", daemon=True)
            self._thread.start()

    @property
    def made(self) -> int:
        """How many thumbnails are made so far."""
        return len(self._thumbnails)

    def collected(self) -> GalleryItems:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return GalleryItems(dict(self._thumbnails), dict(self._questions))

    def _work(self) -> None:
        while not self._stopping.is_set():
            records = list(self._records)  # appended to by the run: a snapshot
            at = {r.index: (r.source.rsplit(", row ", 1)[0], r.source_offset) for r in records}
            todo = [index for index in self._select(records) if index not in self._tried]
            for index in todo:
                if self._stopping.is_set():
                    return
                self._tried.add(index)
                self._make(index, at[index])
            if not todo:
                self._stopping.wait(self.REFRESH_S)

    def _make(self, index: str, place: tuple[str, int]) -> None:
        try:
            for item in read_at(self._files, {index: place}):
                if item.images_b64 and (uri := self._cache.thumbnail(item.images_b64[0])) is not None:
                    self._thumbnails[index] = uri
                    self._questions[index] = item.question.strip()
        except Exception:  # a file gone or unreadable: the report says what it could not show
            return


class _ThumbnailCache:
    """Thumbnails by image content: an image shared by several items is decoded once. Keyed by a
    digest (computed in the worker thread, without the GIL) so that no image text stays in memory."""

    def __init__(self) -> None:
        self._made: dict[bytes, str | None] = {}
        self._lock = threading.Lock()

    def thumbnail(self, image_b64: str) -> str | None:
        key = hashlib.sha256(image_b64.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            if key in self._made:
                return self._made[key]
        uri = thumbnail(image_b64)  # two threads given the same image at once both make it: harmless
        with self._lock:
            self._made[key] = uri
        return uri


def thumbnail(image_b64: str, size: int = THUMB_PX) -> str | None:
    """A small JPEG data URI of a base64 image, or None when it cannot be decoded."""
    try:
        data = base64.b64decode(image_b64)
        with PILImage.open(io.BytesIO(data)) as img:
            img.draft("RGB", (size, size))  # JPEG sources decode at a reduced scale: much faster
            img.load()
            small = _shrink(img, size)
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=70, optimize=True)
    except Exception:  # any undecodable image: the card shows "no image" instead
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _shrink(img: PILImage.Image, size: int) -> PILImage.Image:
    """``img`` at most ``size`` px, as 8-bit RGB on white: resized first, converted after."""
    if img.mode == "P":  # palette images only resize by nearest neighbour: expand them first
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode.startswith("I;16"):
        img = img.convert("I")
    elif img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        img = img.convert("RGB")  # CMYK, YCbCr, ...
    img.thumbnail((size, size), PILImage.Resampling.LANCZOS)  # never enlarges; reduces by whole factors first
    if img.mode in ("I", "F"):
        # 16-bit and float scans: stretch to 8 bits, or they render black or clipped.
        img = img.convert("F")
        low, high = img.getextrema()
        img = img.point(lambda v: (v - low) * 255.0 / ((high - low) or 1)).convert("L")
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        img = PILImage.new("RGB", rgba.size, "white")
        img.paste(rgba, mask=rgba.getchannel("A"))
    return img.convert("RGB")

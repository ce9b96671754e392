"""gallery_items: the gallery's questions and thumbnails, read back from the data files."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import pytest
from PIL import Image as PILImage

from gmai_client.data import dataset
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.errors import DataError
from gmai_client.results.html import gallery_items
from gmai_client.results.html.gallery_items import THUMB_PX, data_files, load_gallery_items, row_places, thumbnail
from gmai_client.testing.synthetic import write_tsv
from gmai_client.types import Item, Record
from tests.conftest import write_rows


def png_b64(img: PILImage.Image) -> str:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def decoded(uri: str) -> PILImage.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return PILImage.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_thumbnails_of_awkward_images() -> None:
    for img in (
        PILImage.new("I;16", (300, 200), 40000),  # 16-bit scans
        PILImage.new("RGBA", (50, 500), (255, 0, 0, 0)),
        PILImage.new("P", (64, 64)),
        PILImage.new("1", (400, 100), 1),
        PILImage.new("L", (20, 20)),  # smaller than a thumbnail: not enlarged
    ):
        uri = thumbnail(png_b64(img))
        assert uri is not None
        with decoded(uri) as thumb:
            assert thumb.mode == "RGB"
            assert max(thumb.size) <= THUMB_PX and max(thumb.size) == min(THUMB_PX, max(img.size))
    assert thumbnail("not an image") is None


def test_a_16_bit_scan_is_stretched_and_transparency_becomes_white() -> None:
    scan = PILImage.new("I;16", (400, 400), 1000)
    scan.paste(3000, (0, 0, 200, 400))  # a dim scan: left half brighter than the right
    with decoded(thumbnail(png_b64(scan)) or "") as thumb:
        left, right = thumb.getpixel((10, 48)), thumb.getpixel((85, 48))
    assert left[0] > 240 and right[0] < 15  # stretched to the full 8-bit range, not black
    with decoded(thumbnail(png_b64(PILImage.new("RGBA", (200, 200), (255, 0, 0, 0)))) or "") as thumb:
        assert all(channel > 245 for channel in thumb.getpixel((50, 50)))


def test_items_are_found_whatever_the_column_order(tmp_path: Path) -> None:
    one, two = png_b64(PILImage.new("RGB", (300, 150), "red")), png_b64(PILImage.new("L", (40, 40)))
    header = ["question", "index", "A", "B", "image"]
    rows = [["Q one?", "1", "a", "b", one], ["  Q two?", "2", "a", "b", str([two, one])]]
    path = write_rows(tmp_path / "shuffled.tsv", header, rows)
    items = load_gallery_items([path], ["2", "9"])
    assert items.questions == {"2": "Q two?"}
    assert list(items.thumbnails) == ["2"]
    with decoded(items.thumbnails["2"]) as thumb:  # the first image of a multi-image row
        assert thumb.size == (40, 40)


def test_only_wanted_items_come_back(tmp_path: Path) -> None:
    """Rows with a quote are parsed by the reader whether wanted or not; they are still left out."""
    image = png_b64(PILImage.new("RGB", (8, 8)))
    lines = ["index\tquestion\tA\tB\timage", f'1\t"Say ""hi""?"\ta\tb\t{image}', f"2\tPlain?\ta\tb\t{image}"]
    path = tmp_path / "quoted.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = load_gallery_items([path], ["2"])
    assert items.questions == {"2": "Plain?"} and list(items.thumbnails) == ["2"]
    assert load_gallery_items([path], ["1"]).questions == {"1": 'Say "hi"?'}


def test_an_image_shared_by_items_is_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared, other = png_b64(PILImage.new("RGB", (200, 100), "blue")), png_b64(PILImage.new("RGB", (20, 20)))
    rows = [[str(i), f"Q{i}?", "a", "b", shared if i < 3 else other] for i in range(4)]
    path = write_rows(tmp_path / "shared.tsv", ["index", "question", "A", "B", "image"], rows)
    decoded_images: list[str] = []
    real = gallery_items.thumbnail
    monkeypatch.setattr(gallery_items, "thumbnail", lambda b64: decoded_images.append(b64) or real(b64))
    items = load_gallery_items([path], ["0", "1", "2", "3"], workers=1)
    assert sorted(decoded_images) == sorted([shared, other])
    assert items.thumbnails["0"] == items.thumbnails["1"] == items.thumbnails["2"] != items.thumbnails["3"]


def test_real_size_items_of_a_synthetic_file(tmp_path: Path) -> None:
    """Cells far over the csv module's 128 kB field limit (real images are ~2 MB of base64)."""
    path = write_tsv(tmp_path / "big.tsv", 6, image_size=700)
    assert path.stat().st_size > 6 * (128 << 10)
    items = load_gallery_items([path], ["0", "5"], workers=2)
    assert set(items.questions) == set(items.thumbnails) == {"0", "5"}
    with decoded(items.thumbnails["5"]) as thumb:
        assert max(thumb.size) == THUMB_PX


def test_a_file_that_is_not_a_dataset_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.tsv"
    path.write_text("just\ttext\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing required column"):
        load_gallery_items([path], ["1"])


def test_data_files_come_from_the_config_or_the_records(tmp_path: Path) -> None:
    present = tmp_path / "a.tsv"
    present.write_text("x", encoding="utf-8")
    saved = [str(present), str(tmp_path / "moved.tsv"), str(present)]
    assert data_files(saved, []) == [present]  # missing files dropped, duplicates once
    record = Record(index="1", model="m", status="ok", prediction="A", source=f"{present}, row 3, index 1")
    assert data_files((), [record]) == [present]


def test_rows_whose_offsets_the_records_keep_are_read_there_without_a_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_tsv(tmp_path / "d.tsv", 30, seed=2, image_size=32)
    items = [e for e in iter_items(open_dataset([path])) if isinstance(e, Item)]
    records = [
        Record(
            index=i.index, model="m", status="ok", prediction="A", source=str(i.source), source_offset=i.source.offset
        )
        for i in items
    ]
    wanted = {items[3].index, items[17].index}
    places = row_places(records, wanted)
    assert places == {i.index: (str(path), i.source.offset) for i in items if i.index in wanted}

    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was scanned")

    monkeypatch.setattr(dataset, "_iter_file", no_scan)
    found = load_gallery_items([path], wanted, at=places)
    assert set(found.questions) == wanted and set(found.thumbnails) == wanted


def test_the_collector_makes_the_chosen_thumbnails_while_records_come_in(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "d.tsv", 40, seed=4, image_size=32)
    items = [e for e in iter_items(open_dataset([path])) if isinstance(e, Item)]
    records = [
        Record(
            index=i.index, model="m", status="ok", prediction="A", source=str(i.source), source_offset=i.source.offset
        )
        for i in items
    ]
    chosen = [r.index for r in records[::3]]  # the gallery's choice, as a function of the records
    collector = gallery_items.ThumbnailCollector(open_dataset([path]), lambda seen: [r.index for r in seen[::3]])
    for record in records:
        collector.offer(record)
    deadline = time.monotonic() + 30
    while collector.made < len(chosen) and time.monotonic() < deadline:
        time.sleep(0.05)
    made = collector.collected()
    assert set(made.thumbnails) == set(chosen) and set(made.questions) == set(chosen)

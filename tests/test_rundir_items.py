"""A data file edited under the same path: the run folder is reused, but changed items are sent
again and removed rows are no longer counted (``rundir.items``)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import pytest

import gmai_client
from gmai_client.backends.scripted import ScriptedBackend
from gmai_client.config import RunConfig
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.splits import sample_path
from gmai_client.results.records import read_records
from gmai_client.results.rundir.items import SUPERSEDED_FILE, item_digest
from gmai_client.testing.synthetic import write_tsv
from gmai_client.types import Item, Request


def lines_of(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def write_lines(path: Path, rows: list[list[str]]) -> None:
    path.write_text("\n".join("\t".join(row) for row in rows) + "\n", encoding="utf-8")


def run_once(tmp_path: Path, data: Path, sent: list[str]):
    def answer(request: Request) -> str:
        sent.append(request.item_index)
        return "A"

    config = RunConfig.build(["scripted:x"], data=[str(data)], out=tmp_path / "runs", progress=False)
    return asyncio.run(gmai_client.run(config, backends={"scripted:x": ScriptedBackend(answer)}))


def test_an_edited_data_file_resends_changed_items_and_stops_counting_removed_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_tsv(tmp_path / "data.tsv", 10, seed=5, image_size=16)
    sent: list[str] = []
    first = run_once(tmp_path, data, sent)
    assert len(first.records) == 10 and len(sent) == 10

    header, *rows = lines_of(data)
    column = {name: n for n, name in enumerate(header)}
    changed_key, changed_image = rows[2][0], rows[4][0]
    rows[2][column["answer"]] = "B" if rows[2][column["answer"]] != "B" else "A"  # the key was wrong
    rows[4][column["image"]] = rows[5][column["image"]]  # another image under the same index
    removed = [row[0] for row in rows[7:]]
    write_lines(data, [header, *rows[:7]])  # the last three rows removed
    sent.clear()
    with caplog.at_level(logging.WARNING):
        second = run_once(tmp_path, data, sent)

    assert second.run_dir == first.run_dir  # same path, same configuration: the folder is reused
    assert sorted(sent) == sorted([changed_key, changed_image])  # only the changed items are sent again
    by_index = {r.index: r for r in second.records}
    assert sorted(by_index) == sorted(row[0] for row in rows[:7])  # the removed rows are not counted
    assert by_index[changed_key].answer == (rows[2][column["answer"]],)  # scored against the new key
    # ... nor by a later report: the journal holds only what answers the data as it is now.
    journal = {r.index for r in read_records(second.run_dir / "records.jsonl")}
    assert journal == set(by_index)
    aside = read_records(second.run_dir / SUPERSEDED_FILE)
    assert sorted(r.index for r in aside) == sorted(removed)  # kept apart, not deleted: they were paid for
    said = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "changed" in said and changed_key in said and changed_image in said
    assert "no longer in the data" in said and all(index in said for index in removed)
    # The old answers of the changed items are replaced (the journal's last record wins), not counted.
    assert {r.index for r in read_records(second.run_dir / "records.jsonl") if r.item_digest} == journal


def test_a_rerun_of_unchanged_data_sends_nothing_and_moves_nothing(tmp_path: Path) -> None:
    data = write_tsv(tmp_path / "data.tsv", 6, seed=2, image_size=16)
    sent: list[str] = []
    run_once(tmp_path, data, sent)
    sent.clear()
    again = run_once(tmp_path, data, sent)
    assert sent == [] and len(again.records) == 6
    assert not (again.run_dir / SUPERSEDED_FILE).exists()


def test_the_digest_covers_every_cell_and_the_images() -> None:
    item = next(e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item) and e.images_b64)
    same = item_digest(item)
    assert same == item_digest(item) and len(same) == 16
    edited_row = tuple((name, value + " ") if name == "question" else (name, value) for name, value in item.row)
    assert item_digest(replace(item, row=edited_row)) != same
    assert item_digest(replace(item, images_b64=(item.images_b64[0][:-4] + "AAAA",))) != same

"""The records journal: round trip, torn last line, last record wins."""

from __future__ import annotations

from pathlib import Path

from gmai_client.records import RecordWriter, read_records
from gmai_client.types import Record


def make(index: str, status: str = "ok") -> Record:
    return Record(
        index=index,
        model="m",
        status=status,
        prediction="A",
        letters=("A",),
        answer=("A", "C"),
        correct=False,
        options=(("A", "x"), ("B", "y"), ("C", "z")),
    )


def test_round_trip_keeps_tuples(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as writer:
        writer.write(make("1"))
    (record,) = read_records(path)
    assert record == make("1")


def test_torn_last_line_is_dropped_and_truncated_before_append(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as writer:
        writer.write(make("1"))
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"index": "2", "model": "m", "sta')  # a SIGKILL mid-write
    assert [r.index for r in read_records(path)] == ["1"]
    with RecordWriter(path) as writer:
        writer.write(make("3"))
    assert [r.index for r in read_records(path)] == ["1", "3"]
    assert all(line.startswith("{") and line.endswith("}") for line in path.read_text().splitlines())


def test_last_record_for_an_index_wins(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as writer:
        writer.write(make("1", "error"))
        writer.write(make("2"))
        writer.write(make("1", "ok"))
    records = read_records(path)
    assert [(r.index, r.status) for r in records] == [("2", "ok"), ("1", "ok")]

"""The records journal: round trip, torn last line, last record wins, flushed per record, no keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gmai_client.errors import register_secret
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


def test_each_record_is_readable_by_another_reader_as_soon_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    writer = RecordWriter(path, fsync_every=3600.0)  # no fsync in this test: the flush alone must do
    try:
        for number in range(1, 4):
            writer.write(make(str(number)))
            # Another process (a resume, a `report` of a running run) reads the file as it is now.
            assert [r.index for r in read_records(path)] == [str(n) for n in range(1, number + 1)]
    finally:
        writer.close()


def test_a_key_a_server_echoed_never_reaches_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "custom-cred-value-7781"
    monkeypatch.setenv("TEAM_CRED", secret)  # a variable whose name does not look secret
    register_secret(secret)  # as the backend that read it does
    echoed = dataclasses.replace(
        make("1", "error"), prediction=f"A (your key: {secret})", error=f"HTTP 500: bad key {secret}"
    )
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as writer:
        writer.write(echoed)

    assert secret not in path.read_text(encoding="utf-8")
    (record,) = read_records(path)
    assert (record.prediction, record.error) == ("A (your key: [REDACTED])", "HTTP 500: bad key [REDACTED]")

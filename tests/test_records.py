"""The records journal: round trip, torn last line, last record wins, flushed per record, no keys."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from gmai_client.errors import DataError, register_secret
from gmai_client.results.records import RecordWriter, read_records
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


#: Every character ``str.splitlines`` breaks a line at; only "\n" ends a journal line.
LINE_BREAKS = ("\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def test_every_unicode_line_separator_in_an_answer_survives_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    answers = {str(i): f"The answer{sep}is A" for i, sep in enumerate(LINE_BREAKS)}
    with RecordWriter(path) as writer:
        for index, text in answers.items():
            writer.write(dataclasses.replace(make(index), prediction=text))
    assert {r.index: r.prediction for r in read_records(path)} == answers
    with RecordWriter(path) as writer:  # reopening must not take a separator for a torn tail
        writer.write(make("last"))
    assert len(read_records(path)) == len(LINE_BREAKS) + 1


def test_answers_with_line_separators_are_kept_on_resume_and_by_rescore(tmp_path: Path) -> None:
    from gmai_client.cli import main

    script = tmp_path / "script.json"
    script.write_text(json.dumps({str(i): f"It is{sep}A" for i, sep in enumerate(LINE_BREAKS)}), encoding="utf-8")
    run = ["run", "--no-progress", "--out", str(tmp_path), "--run-name", "r", "--limit", str(len(LINE_BREAKS))]
    run += ["-m", f"scripted:{script}", "-B", "label=s"]
    assert main(run) == 0
    run_dir = tmp_path / "r"
    assert len(read_records(run_dir / "records.jsonl")) == len(LINE_BREAKS)

    assert main(run) == 0  # a rerun finds every item done: nothing is sent again
    figures = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["run"]["models"]["s"]
    assert (figures["skipped"], figures["requests_sent"]) == (len(LINE_BREAKS), 0)

    assert main(["report", str(run_dir), "--rescore"]) == 0
    kept = read_records(run_dir / "records.jsonl")
    assert sorted(r.prediction for r in kept) == sorted(f"It is{sep}A" for sep in LINE_BREAKS)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("latency_s", "fast", "a number"),
        ("input_tokens", "many", "a whole number or null"),
        ("row", ["x"], "a list of [text, text] pairs"),
        ("letters", 5, "a list of text"),
        ("correct", "yes", "true, false or null"),
        ("options", "AB", "a list of [text, text] pairs"),
        ("attempts", 1.5, "a whole number"),
        ("prediction", 12, "text or null"),
        ("department", None, "text"),
    ],
)
def test_a_wrong_typed_field_is_named_with_its_file_and_line(
    tmp_path: Path, field: str, value: object, expected: str
) -> None:
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as writer:
        writer.write_all([make("1"), make("2")])
    lines = path.read_text(encoding="utf-8").split("\n")
    data = json.loads(lines[1])
    data[field] = value
    lines[1] = json.dumps(data)
    path.write_text("\n\n".join(lines), encoding="utf-8")  # a blank line first: line numbers are the file's
    with pytest.raises(DataError) as caught:
        read_records(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: line 3, field {field!r}:") and expected in message, message


def test_a_line_torn_in_the_middle_is_left_out_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as writer:
        for index in ("1", "2", "3"):
            writer.write(Record(index, "m", "ok", "A"))
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], lines[1][:20], "garbage", lines[2]]) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        assert [r.index for r in read_records(path)] == ["1", "3"]
    assert f"{path}: line(s) 2, 3 are not JSON records" in caplog.text

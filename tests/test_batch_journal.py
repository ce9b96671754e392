"""batches.jsonl, the run folder's journal of its batches: events fold into states, a torn line is
dropped and cut off before the next append, a file of another shape is named; and the small
pieces the batch runner builds on (custom ids, the progress line)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gmai_client.errors import DataError
from gmai_client.results.batch_journal import JOURNAL_FILE, BatchJournal
from gmai_client.runner.batch.ledger import custom_id
from gmai_client.runner.progress import batch_status


def test_events_fold_into_each_batchs_state(tmp_path: Path) -> None:
    journal = BatchJournal(tmp_path)
    a = journal.intent(key="a", model="gpt", vendor="openai", items={"1": "1", "2": "2"}, requests=2, size=100)
    assert a.state == "intent" and a.open and dict(a.items) == {"1": "1", "2": "2"}
    journal.intent(key="b", model="claude", vendor="anthropic", items={"3": "3"}, requests=1, size=50)
    journal.intent(key="c", model="gpt", vendor="openai", items={"4": "4"}, requests=1, size=50)
    journal.uploaded("a", "file-1")
    journal.submitted("a", "batch_1")
    journal.cancel("a")
    journal.collecting("a")
    journal.submitted("b", "msgbatch_2")
    journal.collecting("b")
    journal.collected("b", "ended", {"answered": 1, "failed": 0})
    journal.void("c", "never created")

    read = BatchJournal(tmp_path).read()
    assert list(read) == ["a", "b", "c"]  # in the order their intents were written
    assert (read["a"].state, read["a"].file_id, read["a"].batch_id, read["a"].cancel_asked) == (
        "collecting", "file-1", "batch_1", True,
    )  # fmt: skip
    assert (read["b"].state, read["b"].status) == ("collected", "ended")
    assert dict(read["b"].counts) == {"answered": 1, "failed": 0}
    assert (read["c"].state, read["c"].status) == ("void", "never created")
    assert [b.key for b in journal.open_batches()] == ["a"]
    assert journal.open_batches("claude") == []


def test_a_torn_last_line_is_dropped_and_cut_off_before_the_next_append(tmp_path: Path) -> None:
    journal = BatchJournal(tmp_path)
    journal.intent(key="a", model="m", vendor="openai", items={"1": "1"}, requests=1, size=10)
    with (tmp_path / JOURNAL_FILE).open("a") as out:
        out.write('{"event": "submitted", "key": "a", "batch')  # a kill in the middle of a write
    assert BatchJournal(tmp_path).read()["a"].state == "intent"
    again = BatchJournal(tmp_path)
    again.submitted("a", "batch_9")
    assert again.read()["a"].batch_id == "batch_9"
    assert (tmp_path / JOURNAL_FILE).read_text().count("\n") == 2  # the torn line is gone


@pytest.mark.parametrize(
    ("content", "message"),
    [("not json\n", "not JSON"), ('{"event": "submitted", "key": "x", "batch_id": "b"}\n', "line 1"),
     ('{"event": "teleported", "key": "x"}\n', "line 1")],
)  # fmt: skip
def test_a_file_that_is_not_a_journal_is_named(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / JOURNAL_FILE).write_text(content)
    with pytest.raises(DataError, match=re.escape(str(tmp_path / JOURNAL_FILE))) as raised:
        BatchJournal(tmp_path).read()
    assert message in str(raised.value)


def test_no_journal_is_no_batch(tmp_path: Path) -> None:
    assert BatchJournal(tmp_path).read() == {} and BatchJournal(tmp_path).open_batches() == []


def test_custom_ids_are_the_index_when_both_vendors_take_it_else_a_stable_hash() -> None:
    assert custom_id("1042") == "1042" and custom_id("val_7-b") == "val_7-b"
    odd = ["a b", "x/y", "é", "1" * 65, "sample.tsv:row3"]
    ids = [custom_id(index) for index in odd]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i) for i in ids)
    assert len(set(ids)) == len(odd) and ids == [custom_id(index) for index in odd]


def test_the_progress_line_of_a_model_in_batch_mode() -> None:
    assert batch_status(5, 2, 3, 240) == "batches: 5 sent, 2 in progress, 3 done; 240 items answered"

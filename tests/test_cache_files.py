"""Examples of the response cache file on disk: a damaged file never costs an answer, and a file that
is not the cache (a TSV, another program's SQLite database) is never written into, moved or deleted.

Each test uses its own files under ``tmp_path``; the requests and answers are those of ``test_cache``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gmai_client.policy.cache import ResponseCache, key_fields
from gmai_client.types import Response
from tests.test_cache import ANSWER, IDENTITY, REQUEST, key_of, store

# -- a broken cache never costs an answer


def filled(path: Path, count: int = 60) -> list[tuple[str, Response]]:
    """A real cache file of ``count`` answers (several pages each), closed; returns (key, answer)."""
    cache = ResponseCache(path)
    entries = []
    for index in range(count):
        request = dataclasses.replace(REQUEST, item_index=str(index), text=f"question {index} " + "x" * 300)
        answer = dataclasses.replace(ANSWER, text=f"answer {index} " + "y" * 1500)
        entries.append((store(cache, IDENTITY, request, answer), answer))
    cache.close()
    return entries


def damage_pages(path: Path) -> bytes:
    """Overwrite the middle third of a real SQLite file with seeded random bytes; return them all."""
    data = bytearray(path.read_bytes())
    start, end = len(data) // 3, 2 * len(data) // 3
    noise = random.Random(0)
    data[start:end] = bytes(noise.getrandbits(8) for _ in range(end - start))
    path.write_bytes(bytes(data))
    return bytes(data)


def garbage(path: Path) -> bytes:
    data = b"this is not an SQLite database\n" * 200
    path.write_bytes(data)
    return data


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gmai_client.policy.cache" and r.levelname == "WARNING"]


def test_a_garbage_file_is_moved_aside_once_and_a_fresh_cache_takes_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "responses.sqlite"
    bad = garbage(path)

    cache = ResponseCache(path)  # opening never raises
    key = key_of(IDENTITY, REQUEST)
    assert cache.lookup(key) is None  # a miss: the request will be sent
    assert cache.store(key, key_fields(IDENTITY, REQUEST), REQUEST.item_index, ANSWER) is True
    assert cache.lookup(key) == ANSWER
    cache.close()

    assert cache.moved_to is not None and cache.moved_to.name.startswith("responses.sqlite.corrupt-")
    assert cache.moved_to.read_bytes() == bad  # kept for a post-mortem, not deleted
    (said,) = warnings_of(caplog)  # said once
    assert str(path) in said and str(cache.moved_to) in said and "not a database" in said
    assert "fresh cache" in said


def test_damaged_pages_make_misses_never_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "responses.sqlite"
    entries = filled(path)
    damage_pages(path)

    cache = ResponseCache(path)
    found = [cache.lookup(key) for key, _ in entries]  # none raises
    # What is returned is the stored answer; the rest are misses, sent again by the dispatcher.
    assert all(got is None or got == answer for got, (_, answer) in zip(found, entries, strict=True))
    assert found.count(None) > 0
    assert cache.store("new", {"identity": dict(IDENTITY)}, "new", ANSWER) is True
    assert cache.lookup("new") == ANSWER
    cache.close()

    (said,) = warnings_of(caplog)
    assert "malformed" in said and str(path) in said
    assert cache.moved_to is not None and cache.moved_to.exists()


@pytest.mark.parametrize("damage", [garbage, damage_pages], ids=["garbage", "damaged pages"])
def test_stats_and_explain_say_the_file_is_corrupt_and_leave_it(tmp_path: Path, damage: Callable) -> None:
    from gmai_client.errors import CacheError

    path = tmp_path / "responses.sqlite"
    filled(path, 30)
    bad = damage(path)

    cache = ResponseCache(path)
    with pytest.raises(CacheError, match="corrupt") as stats_error:
        cache.stats()
    with pytest.raises(CacheError, match="corrupt") if damage is garbage else contextlib.nullcontext():
        cache.explain(key_fields(IDENTITY, REQUEST), "1")  # a damaged page may lie off this query's path
    cache.close()

    assert str(path) in str(stats_error.value) and "cache clear" in str(stats_error.value)
    assert path.read_bytes() == bad  # inspecting moves nothing


def test_clear_deletes_a_damaged_cache_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from gmai_client.errors import CacheError

    path = tmp_path / "responses.sqlite"
    filled(path, 30)
    damage_pages(path)  # the schema page is intact: the file is provably the response cache

    cache = ResponseCache(path)
    with pytest.raises(CacheError, match="without --only-model"):
        cache.clear(model="gpt-4o")  # one model's entries cannot be told apart in a damaged file
    assert cache.clear() == 0
    assert cache.stats().entries == 0  # a fresh, healthy file
    cache.close()

    assert [p.name for p in tmp_path.iterdir() if "corrupt" in p.name] == []  # deleted, not moved
    (said,) = warnings_of(caplog)
    assert "deleted it" in said and str(path) in said


def a_tsv(path: Path) -> bytes:
    data = b"index\tquestion\tA\tB\tanswer\n1\tWhich organ?\tliver\tlung\tA\n" * 50
    path.write_bytes(data)
    return data


def another_database(path: Path) -> bytes:
    """An SQLite database of something else: same file format, none of the cache's tables."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO patients (name) VALUES (?)", [(f"patient {n}",) for n in range(100)])
    db.commit()
    db.close()
    return path.read_bytes()


def table_named_responses(path: Path) -> bytes:
    """Another program's table that happens to be called ``responses``."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE responses (survey TEXT, answer TEXT)")
    db.execute("INSERT INTO responses VALUES ('q1', 'yes')")
    db.commit()
    db.close()
    return path.read_bytes()


NOT_OURS = [garbage, a_tsv, another_database, table_named_responses]


@pytest.mark.parametrize("make", NOT_OURS, ids=["garbage", "tsv", "other database", "other responses table"])
def test_cache_clear_refuses_a_file_that_is_not_the_response_cache(
    tmp_path: Path, make: Callable[[Path], bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    from gmai_client.cli import main

    path = tmp_path / "data.tsv"
    before = make(path)

    assert main(["cache", "clear", "--cache-path", str(path)]) == 2
    assert main(["cache", "clear", "--cache-path", str(path), "--only-model", "gpt-4o"]) == 2

    assert path.read_bytes() == before  # not deleted, not emptied, no table added
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.tsv"]  # nothing moved or left beside it
    said = capsys.readouterr().err
    assert str(path) in " ".join(said.split()) and "not deleted" in said


@pytest.mark.parametrize("make", [another_database, table_named_responses], ids=["other database", "responses table"])
def test_a_run_never_writes_into_another_programs_database(
    tmp_path: Path, make: Callable[[Path], bytes], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "app.sqlite"
    before = make(path)

    cache = ResponseCache(path)
    key = key_of(IDENTITY, REQUEST)
    assert cache.lookup(key) is None
    assert cache.store(key, key_fields(IDENTITY, REQUEST), REQUEST.item_index, ANSWER) is False
    cache.close()

    assert path.read_bytes() == before
    (said,) = warnings_of(caplog)
    assert "without a cache" in said and str(path) in said and "not a response cache" in said


def test_an_unusable_cache_folder_means_running_without_a_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = ResponseCache(blocker / "responses.sqlite")

    assert cache.lookup(key_of(IDENTITY, REQUEST)) is None
    assert cache.store("k", {"identity": dict(IDENTITY)}, "1", ANSWER) is False
    assert cache.lookup("k") is None
    assert cache.disabled
    cache.close()
    (said,) = warnings_of(caplog)
    assert "without a cache" in said and str(blocker) in said


def test_a_store_that_meets_a_lock_is_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "responses.sqlite"
    cache = ResponseCache(path, busy_timeout=0.05)
    key = store(cache, IDENTITY, REQUEST, ANSWER)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
    try:
        assert cache.store("k2", {"identity": dict(IDENTITY)}, "2", ANSWER) is False
        assert cache.store("k3", {"identity": dict(IDENTITY)}, "3", ANSWER) is False
        assert cache.lookup(key) == ANSWER  # WAL readers are not blocked: the file is healthy
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert cache.store("k4", {"identity": dict(IDENTITY)}, "4", ANSWER) is True
    cache.close()
    (said,) = warnings_of(caplog)
    assert "locked" in said and "the request is sent" in said
    assert cache.moved_to is None  # a lock is not corruption


def test_an_unreadable_entry_is_a_miss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "responses.sqlite"
    cache = ResponseCache(path)
    key = store(cache, IDENTITY, REQUEST, ANSWER)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("UPDATE responses SET response = '{\"text\": tor'")
    other.close()

    assert cache.lookup(key) is None
    cache.close()
    (said,) = warnings_of(caplog)
    assert "unreadable entry" in said

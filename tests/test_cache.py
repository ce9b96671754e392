"""Examples of the response cache: what makes a hit, what makes a miss, and what is kept on disk.

Each test uses its own SQLite file under ``tmp_path``. The two-process test starts two Python
interpreters that write one fresh file at the same moment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gmai_client.config import parse_model_spec
from gmai_client.policy.cache import ResponseCache, cache_key, key_fields
from gmai_client.types import Image, Request, Response, SamplingParams, Usage

IDENTITY: Mapping[str, str] = {"backend": "openai", "model": "gpt-4o", "endpoint": "https://api.openai.com/v1"}
PIXELS = bytes(range(64)) * 4  # stands in for PNG bytes

REQUEST = Request(
    item_index="1042",
    text="Which modality is shown?\nA. CT\nB. MRI\nAnswer with the letter.",
    images=(Image(PIXELS),),
    params=SamplingParams(temperature=0.0, max_tokens=64, seed=7, repeat=0),
    system="You are a radiologist.",
)
ANSWER = Response(text="B. MRI", finish_reason="stop", usage=Usage(input_tokens=880, output_tokens=4), model="gpt-4o")

Change = Callable[[Mapping[str, str], Request], tuple[Mapping[str, str], Request]]


def with_params(**changes: Any) -> Change:
    return lambda identity, request: (
        identity,
        dataclasses.replace(request, params=dataclasses.replace(request.params, **changes)),
    )


def with_request(**changes: Any) -> Change:
    return lambda identity, request: (identity, dataclasses.replace(request, **changes))


def with_identity(**changes: str) -> Change:
    return lambda identity, request: ({**identity, **changes}, request)


#: One change to the request or backend -> the key field(s) ``explain`` must name for it.
CHANGES: dict[str, tuple[Change, tuple[str, ...]]] = {
    "model": (with_identity(model="gpt-4o-mini"), ("identity.model",)),
    "endpoint": (with_identity(endpoint="http://127.0.0.1:8000/v1"), ("identity.endpoint",)),
    "image detail": (with_identity(detail="low"), ("identity.detail",)),
    "prompt": (with_request(text=REQUEST.text.replace("modality", "organ")), ("text",)),
    "system": (with_request(system="You are a pathologist."), ("system",)),
    "image bytes": (with_request(images=(Image(PIXELS[:-1] + b"\xff"),)), ("images",)),
    "image count": (with_request(images=(Image(PIXELS), Image(PIXELS))), ("images",)),
    "temperature": (with_params(temperature=0.7), ("temperature",)),
    "seed": (with_params(seed=8), ("seed",)),
    "repeat": (with_params(repeat=1), ("repeat",)),
    "max_tokens": (with_params(max_tokens=65), ("max_tokens",)),
    "model and seed": (
        lambda i, r: with_params(seed=None)(*with_identity(model="o1")(i, r)),
        ("identity.model", "seed"),
    ),
}


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResponseCache]:
    cache = ResponseCache(tmp_path / "responses.sqlite")
    yield cache
    cache.close()


def store(cache: ResponseCache, identity: Mapping[str, str], request: Request, response: Response) -> str:
    fields = key_fields(identity, request)
    key = cache_key(fields)
    cache.store(key, fields, request.item_index, response)
    return key


def key_of(identity: Mapping[str, str], request: Request) -> str:
    return cache_key(key_fields(identity, request))


def test_identical_request_is_a_hit(cache: ResponseCache) -> None:
    store(cache, IDENTITY, REQUEST, ANSWER)

    # Built anew from equal values, as a later run would.
    again = Request(
        item_index="1042",
        text="Which modality is shown?\nA. CT\nB. MRI\nAnswer with the letter.",
        images=(Image(bytes(PIXELS)),),
        params=SamplingParams(temperature=0.0, max_tokens=64, seed=7, repeat=0),
        system="You are a radiologist.",
    )
    identity = {"endpoint": "https://api.openai.com/v1", "model": "gpt-4o", "backend": "openai"}  # order is no matter

    assert cache.lookup(key_of(identity, again)) == ANSWER


def test_options_and_item_index_are_not_part_of_the_key() -> None:
    relabelled = dataclasses.replace(REQUEST, item_index="other", options=(("A", "CT"), ("B", "MRI")))

    assert key_of(IDENTITY, relabelled) == key_of(IDENTITY, REQUEST)


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_a_change_that_decides_the_answer_is_a_miss(cache: ResponseCache, change: str) -> None:
    store(cache, IDENTITY, REQUEST, ANSWER)
    identity, request = CHANGES[change][0](IDENTITY, REQUEST)

    assert key_of(identity, request) != key_of(IDENTITY, REQUEST)
    assert cache.lookup(key_of(identity, request)) is None


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_explain_names_the_differing_fields(cache: ResponseCache, change: str) -> None:
    store(cache, IDENTITY, REQUEST, ANSWER)
    make, expected = CHANGES[change]
    identity, request = make(IDENTITY, REQUEST)

    hit, differences = cache.explain(key_fields(identity, request), request.item_index)

    assert hit is False
    assert [d.fields for d in differences] == [expected]


def test_explain_on_a_hit_lists_the_other_entries_of_the_item_only(cache: ResponseCache) -> None:
    store(cache, IDENTITY, REQUEST, ANSWER)
    store(cache, IDENTITY, dataclasses.replace(REQUEST, params=SamplingParams(temperature=1.0, seed=7)), ANSWER)
    store(cache, IDENTITY, dataclasses.replace(REQUEST, item_index="7", text="another item"), ANSWER)

    hit, differences = cache.explain(key_fields(IDENTITY, REQUEST), "1042")

    assert hit is True
    assert [d.fields for d in differences] == [("max_tokens", "temperature")]
    assert differences[0].created == pytest.approx(time.time(), abs=60)


@pytest.mark.parametrize(
    "response",
    [
        ANSWER,
        Response(text="", finish_reason="refused", usage=None, model=""),
        Response(text="Ответ: «B» — 磁共振", finish_reason="length", usage=Usage(0, 512), model="m@2024-08-06"),
    ],
    ids=["usage", "no usage", "unicode"],
)
def test_stored_response_round_trips(cache: ResponseCache, response: Response) -> None:
    key = store(cache, IDENTITY, REQUEST, response)

    assert cache.lookup(key) == response


def test_async_get_and_put_count_hits_misses_and_stores(cache: ResponseCache) -> None:
    fields = key_fields(IDENTITY, REQUEST)
    key = cache_key(fields)

    async def main() -> tuple[Response | None, Response | None]:
        before = await cache.get(key)
        await cache.put(key, fields, REQUEST.item_index, ANSWER)
        return before, await cache.get(key)

    assert asyncio.run(main()) == (None, ANSWER)
    assert (cache.hits, cache.misses, cache.stores) == (1, 1, 1)


def test_storing_the_same_key_twice_keeps_one_entry(cache: ResponseCache) -> None:
    store(cache, IDENTITY, REQUEST, ANSWER)
    key = store(cache, IDENTITY, REQUEST, dataclasses.replace(ANSWER, text="B"))

    assert cache.stats().entries == 1
    assert cache.lookup(key) == dataclasses.replace(ANSWER, text="B")


def fill(cache: ResponseCache) -> dict[str, list[str]]:
    """3 answers of gpt-4o, 2 of claude, 1 of a local model; returns the keys by model."""
    keys: dict[str, list[str]] = {}
    for backend, model, count in (("openai", "gpt-4o", 3), ("anthropic", "claude", 2), ("triton", "local", 1)):
        identity = {"backend": backend, "model": model, "endpoint": "e"}
        for index in range(count):
            request = dataclasses.replace(REQUEST, item_index=str(index), text=f"question {index}")
            keys.setdefault(model, []).append(store(cache, identity, request, ANSWER))
    return keys


def test_stats_count_entries_per_model(cache: ResponseCache) -> None:
    fill(cache)

    stats = cache.stats()

    assert stats.path == str(cache.path)
    assert stats.entries == 6
    assert stats.by_model == (("openai", "gpt-4o", 3), ("anthropic", "claude", 2), ("triton", "local", 1))
    assert stats.bytes >= cache.path.stat().st_size > 0


def test_clear_one_model_then_everything(cache: ResponseCache) -> None:
    keys = fill(cache)

    assert cache.clear(model="claude") == 2
    assert [cache.lookup(k) for k in keys["claude"]] == [None, None]
    assert cache.lookup(keys["gpt-4o"][0]) == ANSWER
    assert cache.stats().by_model == (("openai", "gpt-4o", 3), ("triton", "local", 1))

    assert cache.clear(model="no-such-model") == 0
    assert cache.clear() == 4
    assert cache.stats().entries == 0
    assert cache.lookup(keys["local"][0]) is None


def test_database_is_in_wal_mode(cache: ResponseCache) -> None:
    store(cache, IDENTITY, REQUEST, ANSWER)

    other = sqlite3.connect(cache.path)  # a second connection sees the file's mode
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # and reads while the cache's connection stays open
        assert other.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 1
    finally:
        other.close()


# One writer process: waits for the start signal, opens the cache, stores its own entries and
# the shared ones interleaved, reading each shared one back at once.
WRITER = """
import sys, time
from pathlib import Path
from gmai_client.policy.cache import ResponseCache
from gmai_client.types import Response, Usage

path, name, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
(go.parent / f"ready-{name}").touch()
while not go.exists():
    time.sleep(0.001)
started = time.time()
for fresh in range(20):  # both open new files at the same moment: the WAL switch races
    ResponseCache(path.with_name(f"fresh-{fresh}.sqlite")).close()
cache = ResponseCache(path)
for n in range(200):
    fields = {"identity": {"backend": "test", "model": name}, "n": n}
    cache.store(f"{name}-{n}", fields, str(n), Response(f"{name} {n}", usage=Usage(n, 1), model=name))
    if n % 4 == 0:
        shared = f"shared-{n // 4}"
        answer = Response(shared, usage=Usage(n // 4, 1), model="shared")
        cache.store(shared, {"identity": {"backend": "test", "model": "shared"}}, shared, answer)
        assert cache.lookup(shared) == answer, shared
cache.close()
print(name, started, time.time())
"""


def test_two_processes_write_one_cache_file_at_once(tmp_path: Path) -> None:
    path, go = tmp_path / "shared.sqlite", tmp_path / "go"
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("alpha", "beta")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{name}").exists() for name in ("alpha", "beta")):
        assert time.monotonic() < deadline, "the writers did not start"
        time.sleep(0.005)
    go.touch()  # both open the fresh file and write at the same moment
    outputs = [writer.communicate(timeout=60) for writer in writers]

    for writer, (_, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
        assert "database is locked" not in err
    (a_name, a_start, a_end), (b_name, b_start, b_end) = (out.split() for out, _ in outputs)
    assert (a_name, b_name) == ("alpha", "beta")
    assert float(a_start) < float(b_end) and float(b_start) < float(a_end)  # they did overlap

    cache = ResponseCache(path)
    try:
        stats = cache.stats()
        assert stats.entries == 2 * 200 + 50
        assert dict(((b, m), n) for b, m, n in stats.by_model) == {
            ("test", "alpha"): 200,
            ("test", "beta"): 200,
            ("test", "shared"): 50,
        }
        for name in ("alpha", "beta"):
            for n in range(200):
                assert cache.lookup(f"{name}-{n}") == Response(f"{name} {n}", usage=Usage(n, 1), model=name)
        for s in range(50):
            assert cache.lookup(f"shared-{s}") == Response(f"shared-{s}", usage=Usage(s, 1), model="shared")
    finally:
        cache.close()


def test_a_cache_entry_never_contains_the_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openai")
    from gmai_client.backends.openai import OpenAIBackend

    secret = "sk-test-CacheMustNotKeepThis0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    backend = OpenAIBackend.from_spec(parse_model_spec("openai:gpt-4o@http://127.0.0.1:9/v1"), seed=0)
    path = tmp_path / "responses.sqlite"
    cache = ResponseCache(path)

    async def main() -> None:
        await backend.start()  # the client now holds the key
        fields = key_fields(backend.identity(), REQUEST)
        await cache.put(cache_key(fields), fields, REQUEST.item_index, ANSWER)
        await backend.close()

    asyncio.run(main())
    cache.close()

    raw = b"".join(p.read_bytes() for p in tmp_path.glob(path.name + "*"))
    assert b"127.0.0.1:9" in raw and b"radiologist" in raw  # the entry is in the bytes read
    assert secret.encode() not in raw
    assert b"CacheMustNotKeepThis" not in raw

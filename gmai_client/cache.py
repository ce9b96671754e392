"""The persistent response cache: nothing answered once is paid for twice.

An embedded SQLite database in WAL mode (readers never block the writer; several processes may
share one file; each write is one short transaction with a busy timeout). The key is a sha256
over a canonical JSON of everything that decides the answer:

* the backend's ``identity()`` (backend, model, endpoint, and options that change what the model
  sees, such as image detail or downscaling); never a key or token;
* the rendered prompt text and system prompt, the sha256 of every image's bytes in order;
* every output-changing sampling parameter (temperature, max_tokens, seed, and the repeat index
  that keeps repeated samples at temperature > 0 apart).

The fields themselves are stored next to the answer, so ``explain`` can say which field differs
between an item's request and what the cache holds for it. Only successful answers are stored;
an error is never cached. The default file lives in the user's cache dir (``GMAI_CLIENT_CACHE_DIR``
overrides it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gmai_client.types import Request, Response, Usage

CACHE_FILE = "responses.sqlite"
_SCHEMA_VERSION = 1


def default_cache_path() -> Path:
    folder = os.environ.get("GMAI_CLIENT_CACHE_DIR")
    if folder:
        return Path(folder) / CACHE_FILE
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gmai-client")) / CACHE_FILE


def key_fields(identity: Mapping[str, str], request: Request) -> dict[str, Any]:
    """The fields the cache key is made of (also what ``explain`` compares)."""
    params = request.params
    return {
        "v": _SCHEMA_VERSION,
        "identity": dict(sorted(identity.items())),
        "system": request.system,
        "text": request.text,
        "images": [hashlib.sha256(image.data).hexdigest() for image in request.images],
        "temperature": params.temperature,
        "max_tokens": params.max_tokens,
        "seed": params.seed,
        "repeat": params.repeat,
    }


def cache_key(fields: Mapping[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    path: str
    entries: int
    bytes: int
    by_model: tuple[tuple[str, str, int], ...]  # (backend, model, entries)


@dataclass(frozen=True)
class Difference:
    """How a stored entry for the same item differs from the request being explained."""

    created: float
    fields: tuple[str, ...]  # names of differing key fields ("identity.model", "temperature", ...)


class ResponseCache:
    """Thread-safe; ``get``/``put`` run SQLite off the event loop."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._use_wal(timeout=30.0)
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS responses (
                key TEXT PRIMARY KEY,
                backend TEXT NOT NULL,
                model TEXT NOT NULL,
                item_index TEXT NOT NULL,
                fields TEXT NOT NULL,
                response TEXT NOT NULL,
                created REAL NOT NULL
            )"""
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS responses_item ON responses (item_index)")
        self.hits = 0
        self.misses = 0
        self.stores = 0

    def _use_wal(self, timeout: float) -> None:
        # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is
        # locked" at once, without the busy timeout, while another process opens the same file.
        give_up = time.monotonic() + timeout
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > give_up:
                    raise
                time.sleep(0.01)

    # -- async API used by the dispatcher

    async def get(self, key: str) -> Response | None:
        response = await asyncio.to_thread(self.lookup, key)
        if response is None:
            self.misses += 1
        else:
            self.hits += 1
        return response

    async def put(self, key: str, fields: Mapping[str, Any], item_index: str, response: Response) -> None:
        await asyncio.to_thread(self.store, key, fields, item_index, response)
        self.stores += 1

    # -- sync API

    def lookup(self, key: str) -> Response | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return _response_from_json(row[0]) if row else None

    def store(self, key: str, fields: Mapping[str, Any], item_index: str, response: Response) -> None:
        identity = fields.get("identity", {})
        with self._lock:
            # INSERT OR REPLACE: two processes answering the same request store the same thing.
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    identity.get("backend", ""),
                    identity.get("model", ""),
                    item_index,
                    json.dumps(fields, sort_keys=True, ensure_ascii=False),
                    json.dumps(asdict(response), ensure_ascii=False),
                    time.time(),
                ),
            )

    def explain(self, fields: Mapping[str, Any], item_index: str) -> tuple[bool, list[Difference]]:
        """(hit, differences of every stored entry for the same item index) for one request."""
        key = cache_key(fields)
        with self._lock:
            hit = self._db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None
            rows = self._db.execute(
                "SELECT fields, created FROM responses WHERE item_index = ? AND key != ? ORDER BY created DESC",
                (item_index, key),
            ).fetchall()
        return hit, [Difference(created, _differing(fields, json.loads(stored))) for stored, created in rows]

    def stats(self) -> CacheStats:
        with self._lock:
            entries = self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            by_model = self._db.execute(
                "SELECT backend, model, COUNT(*) FROM responses GROUP BY backend, model ORDER BY 3 DESC"
            ).fetchall()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return CacheStats(str(self.path), entries, size, tuple((b, m, n) for b, m, n in by_model))

    def clear(self, *, model: str | None = None) -> int:
        """Delete every entry (or one model's); returns how many were deleted."""
        with self._lock:
            if model is None:
                deleted = self._db.execute("DELETE FROM responses").rowcount
            else:
                deleted = self._db.execute("DELETE FROM responses WHERE model = ?", (model,)).rowcount
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _differing(wanted: Mapping[str, Any], stored: Mapping[str, Any], prefix: str = "") -> tuple[str, ...]:
    names: list[str] = []
    for name in sorted(set(wanted) | set(stored)):
        a, b = wanted.get(name), stored.get(name)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            names.extend(_differing(a, b, f"{prefix}{name}."))
        elif a != b:
            names.append(prefix + name)
    return tuple(names)


def _response_from_json(text: str) -> Response:
    data = json.loads(text)
    usage = data.get("usage")
    return Response(
        text=data["text"],
        finish_reason=data.get("finish_reason", "stop"),
        usage=Usage(**usage) if usage else None,
        model=data.get("model", ""),
    )

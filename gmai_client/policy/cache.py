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

The cache is an optimisation, so a broken cache never costs an answer. A file SQLite calls corrupt
(whole-file garbage, damaged pages) is moved aside as ``<name>.corrupt-<time>`` with one warning
naming both files, and the run goes on with a fresh cache; a file that cannot be used for another
reason (an unwritable folder) means running without a cache, also said once. A lookup that fails
is a miss (the request is sent); a store that fails is skipped. The commands that inspect the file
(``stats``, ``explain``) say that it is corrupt instead (``CacheError``), and ``clear`` deletes a
damaged cache file outright, so it always works on the cache.

Nothing is ever written into, or deleted from, a file that is not provably this cache: before
anything else the file's schema is read, and an SQLite database holding other tables (another
program's) is left as it is (a run goes on without a cache, the commands refuse it). ``clear``
deletes a damaged file only when its schema shows the cache's table; a file that is not SQLite at
all (a TSV given as ``--cache-path`` by mistake) is refused, not deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gmai_client.errors import CacheError, redact, redact_url
from gmai_client.types import Request, Response, Usage

CACHE_FILE = "responses.sqlite"
_SCHEMA_VERSION = 1
# SQLite's primary result codes for a damaged file (extended codes share the low byte).
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_COLUMNS = frozenset({"key", "backend", "model", "item_index", "fields", "response", "created"})

log = logging.getLogger(__name__)


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
        # Stored beside the answer: a URL's credentials (``user:password@``, ``?api-key=``) never are.
        "identity": {k: redact_url(v) if isinstance(v, str) else v for k, v in sorted(identity.items())},
        "system": request.system,
        "text": request.text,
        "images": [image.sha256 for image in request.images],  # of the base64 text: no decode
        "temperature": params.temperature,
        "max_tokens": params.max_tokens,
        "seed": params.seed,
        "repeat": params.repeat,
    }


def _shown_fields(fields: Mapping[str, Any]) -> str:
    """The key fields as the cache keeps them beside an answer: a prompt holding something shaped
    like a key (``--system-prompt``, a template) has it redacted, as config.json has."""
    return redact(json.dumps(fields, sort_keys=True, ensure_ascii=False))


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
    """Thread-safe; ``get``/``put`` run SQLite off the event loop. Never raises for a broken file
    on the run's path (``get``/``put``/``lookup``/``store``); see the module docstring."""

    def __init__(self, path: Path | str | None = None, *, busy_timeout: float = 30.0):
        self.path = Path(path) if path is not None else default_cache_path()
        self.busy_timeout = busy_timeout  # seconds a write waits for another process's write
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._failure: Exception | None = None  # why the file could not be opened, if it could not
        self.disabled = False  # True: running without a cache from now on (said once)
        self.moved_to: Path | None = None  # where a corrupt file was moved, if one was
        self._ours = False  # the file's schema was read and is this cache's (or the file is new)
        self._warned: set[str] = set()
        try:
            self._db = self._open()
        except (sqlite3.Error, OSError, CacheError) as exc:
            self._failure = exc
        self.hits = 0
        self.misses = 0
        self.stores = 0

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False, isolation_level=None)
        try:
            # Read before anything is written: switching to WAL or creating the table would change
            # another program's database. A file that is not SQLite at all raises here (NOTADB).
            foreign = _foreign_schema(db)
            if foreign:
                raise NotTheCache(f"{self.path} {foreign}: not a response cache")
            self._ours = True
            _use_wal(db, timeout=self.busy_timeout)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            db.execute(
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
            db.execute("CREATE INDEX IF NOT EXISTS responses_item ON responses (item_index)")
        except BaseException:
            db.close()
            raise
        return db

    # -- async API used by the dispatcher

    async def get(self, key: str) -> Response | None:
        response = await asyncio.to_thread(self.lookup, key)
        if response is None:
            self.misses += 1
        else:
            self.hits += 1
        return response

    async def put(self, key: str, fields: Mapping[str, Any], item_index: str, response: Response) -> None:
        if await asyncio.to_thread(self.store, key, fields, item_index, response):
            self.stores += 1

    # -- sync API of the run's path: a failure is a miss, or a store skipped

    def lookup(self, key: str) -> Response | None:
        with self._lock:
            db = self._usable()
            if db is None:
                return None
            try:
                row = db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._failed(exc, "a lookup")
                return None
        if row is None:
            return None
        try:
            return _response_from_json(row[0])
        except (ValueError, KeyError, TypeError) as exc:  # a damaged entry SQLite did not notice
            self._warn_once("entry", "cache %s: an unreadable entry was ignored (%s); sending the request", exc)
            return None

    def store(self, key: str, fields: Mapping[str, Any], item_index: str, response: Response) -> bool:
        """Store one answer; False when the cache could not take it (the answer itself is not lost)."""
        identity = fields.get("identity", {})
        row = (
            key,
            identity.get("backend", ""),
            identity.get("model", ""),
            item_index,
            _shown_fields(fields),  # kept for ``explain``; the key above is made from them unredacted
            json.dumps(asdict(response), ensure_ascii=False),
            time.time(),
        )
        with self._lock:
            db = self._usable()
            if db is None:
                return False
            try:
                # INSERT OR REPLACE: two processes answering the same request store the same thing.
                db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            except sqlite3.Error as exc:
                self._failed(exc, "a store")
                return False
        return True

    def output_tokens(self, identity: Mapping[str, str], limit: int = 5000) -> list[int]:
        """The output tokens of the answers stored for ``identity`` (the most recent ``limit``),
        reasoning included: what ``plan`` expects such a model to answer with. [] when unknown."""
        wanted = dict(sorted(identity.items()))
        with self._lock:
            db = self._usable()
            if db is None:
                return []
            try:
                rows = db.execute(
                    "SELECT fields, response FROM responses WHERE backend = ? AND model = ? "
                    "ORDER BY created DESC LIMIT ?",
                    (identity.get("backend", ""), identity.get("model", ""), limit),
                ).fetchall()
            except sqlite3.Error as exc:
                self._failed(exc, "a lookup")
                return []
        counts = []
        for fields, response in rows:
            try:
                if json.loads(fields).get("identity") != wanted:
                    continue  # another endpoint or other options: other answers
                usage = json.loads(response).get("usage") or {}
            except (ValueError, AttributeError):
                continue
            if isinstance(usage.get("output_tokens"), int) and usage["output_tokens"] > 0:
                counts.append(usage["output_tokens"])
        return counts

    # -- sync API of the ``cache`` command: a broken file is said, not repaired

    def explain(self, fields: Mapping[str, Any], item_index: str) -> tuple[bool, list[Difference]]:
        """(hit, differences of every stored entry for the same item index) for one request."""
        key = cache_key(fields)
        with self._lock:
            db = self._inspectable()
            try:
                hit = db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None
                rows = db.execute(
                    "SELECT fields, created FROM responses WHERE item_index = ? AND key != ? ORDER BY created DESC",
                    (item_index, key),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._broken(exc) from None
        shown = json.loads(_shown_fields(fields))  # as stored: key-shaped text in a prompt redacted
        return hit, [Difference(created, _differing(shown, json.loads(stored))) for stored, created in rows]

    def stats(self) -> CacheStats:
        """Entries per model; a ``CacheError`` saying so when the file is corrupt or unreadable."""
        with self._lock:
            db = self._inspectable()
            try:
                # quick_check reads every page: COUNT(*) alone can miss a damaged page it never visits.
                problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
                if problems != ["ok"]:
                    raise _Damaged(problems[0])
                entries = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
                by_model = db.execute(
                    "SELECT backend, model, COUNT(*) FROM responses GROUP BY backend, model ORDER BY 3 DESC"
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._broken(exc) from None
        size = sum(p.stat().st_size for p in self._files() if p.is_file())
        return CacheStats(str(self.path), entries, size, tuple((b, m, n) for b, m, n in by_model))

    def clear(self, *, model: str | None = None) -> int:
        """Delete every entry (or one model's); returns how many were deleted. A damaged cache file
        is deleted whole, with a warning, and 0 is returned. A file that is not provably this cache
        (not SQLite, another program's database, a schema that cannot be read) is a ``CacheError``
        and stays as it is."""
        with self._lock:
            failure = self._failure
            if isinstance(failure, CacheError):
                raise CacheError(f"{failure}; not deleted") from None
            if self._db is not None:
                try:
                    # A damaged file may take a DELETE without complaint and stay damaged.
                    problems = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
                    if problems != ["ok"]:
                        raise _Damaged(problems[0])
                    if model is None:
                        deleted = self._db.execute("DELETE FROM responses").rowcount
                    else:
                        deleted = self._db.execute("DELETE FROM responses WHERE model = ?", (model,)).rowcount
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    return deleted
                except sqlite3.Error as exc:
                    if not _is_corrupt(exc):
                        raise CacheError(f"cannot clear the cache file {self.path}: {exc}") from None
                    failure = exc
            if not self._ours:
                raise CacheError(
                    f"{self.path} cannot be read ({_describe(failure)}), so nothing shows that it is a response "
                    "cache: not deleted (delete it yourself if it is one)"
                )
            if model is not None:
                raise CacheError(
                    f"{self._corrupt_message(_describe(failure))}; its entries of one model cannot be told "
                    "apart: clear it whole (without --only-model)"
                )
            self._close_db()
            try:
                for path in self._files():
                    path.unlink(missing_ok=True)
            except OSError as exc:
                raise CacheError(f"cannot delete the cache file {self.path}: {exc}") from None
            log.warning("cache file %s was unreadable (%s): deleted it", self.path, _describe(failure))
            self._failure = None
            try:
                self._db = self._open()
            except (sqlite3.Error, OSError, CacheError) as exc:
                self._failure = exc
            return 0

    def close(self) -> None:
        with self._lock:
            self._close_db()

    # -- failure handling (called with the lock held)

    def _usable(self) -> sqlite3.Connection | None:
        """The connection for the run's path; after a failure to open, one recovery attempt."""
        if self._db is None and not self.disabled and self._failure is not None:
            self._recover(self._failure)
        return self._db

    def _inspectable(self) -> sqlite3.Connection:
        if isinstance(self._failure, CacheError):
            raise self._failure
        if self._db is None:
            raise self._broken(self._failure or sqlite3.Error("closed"))
        return self._db

    def _failed(self, exc: sqlite3.Error, doing: str) -> None:
        if _is_corrupt(exc):
            self._recover(exc)
        else:  # locked past the busy timeout, an I/O error, a full disk: this call only
            self._warn_once(doing, "cache %s: %s failed (%s); the answer is not lost: the request is sent", doing, exc)

    def _recover(self, exc: Exception) -> None:
        """Move a corrupt file aside and start a fresh one (once); otherwise go on without a cache."""
        self._close_db()
        self._failure = None
        reason = _describe(exc)
        if _is_corrupt(exc) and self.moved_to is None:
            try:
                self.moved_to = self._move_aside()
                self._db = self._open()
            except (sqlite3.Error, OSError) as again:
                self.disabled = True
                log.warning(
                    "cache file %s is corrupt (%s) and could not be replaced (%s): continuing without a cache",
                    self.path, reason, _describe(again),
                )  # fmt: skip
                return
            log.warning(
                "cache file %s is corrupt (%s): moved it to %s; continuing with a fresh cache",
                self.path, reason, self.moved_to,
            )  # fmt: skip
            return
        self.disabled = True
        log.warning("cache file %s cannot be used (%s): continuing without a cache", self.path, reason)

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        number = 1
        while target.exists():
            number += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{number}")
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists():  # the log belongs to the damaged file: left beside a fresh one it would be replayed
            wal.rename(target.with_name(target.name + "-wal"))
        self.path.with_name(self.path.name + "-shm").unlink(missing_ok=True)  # an index of the log only
        if self.path.exists():
            self.path.rename(target)
        return target

    def _files(self) -> list[Path]:
        return [self.path.with_name(self.path.name + suffix) for suffix in ("", "-wal", "-shm")]

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):  # closing a damaged file may fail; nothing is lost
                db.close()

    def _broken(self, exc: Exception) -> CacheError:
        if _is_corrupt(exc):
            return CacheError(self._corrupt_message(_describe(exc)))
        return CacheError(f"cannot read the cache file {self.path}: {_describe(exc)}")

    def _corrupt_message(self, reason: str) -> str:
        return (
            f"the cache file {self.path} is corrupt ({reason}); `python -m gmai_client cache clear` deletes it "
            "(runs move it aside by themselves)"
        )

    def _warn_once(self, topic: str, message: str, *args: object) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            log.warning(message, self.path, *args)


def _use_wal(db: sqlite3.Connection, timeout: float) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite answers "database is
    # locked" at once, without the busy timeout, while another process opens the same file.
    give_up = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > give_up:
                raise
            time.sleep(0.01)


class _Damaged(sqlite3.DatabaseError):
    """What ``PRAGMA quick_check`` found wrong with a file that still opens."""


class NotTheCache(CacheError):
    """The file is an SQLite database of something else: never written into, never deleted."""


def _foreign_schema(db: sqlite3.Connection) -> str:
    """Why the open file is not this cache ("" when it is, or when it holds no table yet: new)."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return ""
    if tables != {"responses"}:
        return f"is an SQLite database with other tables ({', '.join(sorted(tables)[:5])})"
    columns = {row[1] for row in db.execute("PRAGMA table_info(responses)")}
    if columns != _COLUMNS:
        return f"has a table 'responses' with other columns ({', '.join(sorted(columns)[:7])})"
    return ""


def _is_corrupt(exc: BaseException | None) -> bool:
    """True when SQLite says the file itself is damaged (not locked, not an I/O or permission error)."""
    if isinstance(exc, _Damaged):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def _describe(exc: BaseException | None) -> str:
    return redact(str(exc) or type(exc).__name__) if exc is not None else "unknown error"


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
        thinking=data.get("thinking", ""),
    )

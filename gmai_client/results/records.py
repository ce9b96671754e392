"""records.jsonl: the append-only journal of a run, one Record per line.

Records are appended and flushed as items finish, so a crash loses only what was in flight. A
SIGKILL can tear the last line: ``read_records`` detects and drops it (and ``RecordWriter``
truncates it away before appending, so the journal stays readable). When an index appears twice
for a model (``--retry-errors`` re-sent it), the last record wins.

``RecordWriter`` is the last gate before disk for what a server said: the text fields of every
record (the answer, the thinking, the error, the rule) go through ``errors.redact``, so an API key a server
echoed never lands in the journal, nor in what is derived from it (predictions files, reports).
"""

from __future__ import annotations

import json
import logging
import os
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Literal, TextIO

from gmai_client.errors import DataError, redact
from gmai_client.results.atomic import written_whole
from gmai_client.types import Record

RECORDS_FILE = "records.jsonl"
_TUPLE_FIELDS = {"letters", "answer", "retries", "lenient_letters"}
_RECORD_FIELDS = tuple(f.name for f in fields(Record))
#: Record fields that may hold text a server sent (or an error message built from it).
_SERVER_TEXT_FIELDS = ("prediction", "thinking", "error", "rule")

log = logging.getLogger(__name__)


def record_to_json(record: Record) -> str:
    # Records are flat (strings, numbers, tuples of them): a field-by-field dict is what
    # ``dataclasses.asdict`` builds, without its recursive deep copy (several times slower).
    values = {name: getattr(record, name) for name in _RECORD_FIELDS}
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def record_from_dict(data: dict[str, Any]) -> Record:
    known = {f.name for f in fields(Record)}
    values = {key: value for key, value in data.items() if key in known}
    for key in _TUPLE_FIELDS:
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    for key in ("options", "row"):
        if key in values:
            values[key] = tuple(tuple(pair) for pair in values[key])
    return Record(**values)


def _parse_record(path: Path, line: int, data: Any) -> Record:
    """One journal line as a Record, or a DataError naming the file, the line and the field (a file
    of another shape is not a run's journal: say so rather than guess)."""
    if not isinstance(data, dict):
        raise DataError(f"line {line} is a JSON {type(data).__name__}, not a record", file=str(path))
    missing = [name for name in ("index", "model", "status") if not isinstance(data.get(name), str)]
    if missing:
        raise DataError(f"line {line} has no {', '.join(missing)}: not a gmai_client record", file=str(path))
    for name, value in data.items():
        check = _FIELD_CHECKS.get(name)
        if check is not None and not check(value):
            shown = json.dumps(value, ensure_ascii=False)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            expected = _described(_FIELD_TYPES[name])
            raise DataError(f"line {line}, field {name!r}: {shown} is not {expected} (edited by hand?)", file=str(path))
    try:
        return record_from_dict(data)
    except (TypeError, ValueError) as exc:
        raise DataError(f"line {line} is not a gmai_client record ({exc})", file=str(path)) from None


def _checker(expected: Any) -> Callable[[Any], bool]:
    """Whether a JSON value can be the Record field annotated ``expected`` (built once per field:
    it runs on every field of every record read)."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        parts = [_checker(arg) for arg in args]
        return lambda value: any(part(value) for part in parts)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a JSON list
        item = _checker(args[0])
        return lambda value: type(value) is list and all(item(x) for x in value)
    if origin is tuple:  # a fixed tuple such as tuple[str, str]
        parts = [_checker(arg) for arg in args]
        return lambda value: type(value) is list and len(value) == len(parts) and all(map(_call, parts, value))
    if origin is Literal or expected is str:
        return lambda value: type(value) is str  # a status this version does not know is read, not refused
    simple: dict[Any, Callable[[Any], bool]] = {
        type(None): lambda value: value is None,
        bool: lambda value: type(value) is bool,
        int: lambda value: type(value) is int,
        float: lambda value: type(value) in (int, float),
    }
    return simple.get(expected, lambda value: True)


def _call(check: Callable[[Any], bool], value: Any) -> bool:
    return check(value)


#: What each field of a record holds, as JSON reads it, checked field by field when a journal is
#: read: a value of the wrong type would otherwise fail deep inside the metrics, with a traceback.
_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Record)
_FIELD_CHECKS = {name: _checker(expected) for name, expected in _FIELD_TYPES.items()}


def _described(expected: Any) -> str:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_described(arg) for arg in args).replace("true or false or null", "true, false or null")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _described(args[0])
            return f"a list of {item} pairs" if item.startswith("[") else f"a list of {item.removeprefix('a ')}"
        return "[" + ", ".join(_described(arg) for arg in args) + "]"
    names = {str: "text", bool: "true or false", int: "a whole number", float: "a number", type(None): "null"}
    return names.get(expected, "text" if origin is Literal else str(expected))


def without_secrets(record: Record) -> Record:
    """The record with every known API key removed from its server-given text."""
    changed = {}
    for name in _SERVER_TEXT_FIELDS:
        value = getattr(record, name)
        if value:
            clean = redact(value)
            if clean != value:
                changed[name] = clean
    return replace(record, **changed) if changed else record


def _complete_lines(path: Path) -> tuple[list[tuple[int, str]], int, list[int]]:
    """The file's complete lines (with their line numbers), the byte length they cover (a torn
    tail is excluded), and the numbers of the lines that are not JSON."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    # Split at "\n" only: ``str.splitlines`` also breaks at U+2028, U+2029, U+0085, \x1c-\x1e...,
    # which ``json.dumps(ensure_ascii=False)`` leaves raw inside an answer's text.
    lines = data[:end].decode("utf-8", errors="replace").split("\n")
    good: list[tuple[int, str]] = []
    torn: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError:
            torn.append(number)  # a line torn and then overwritten mid-way: unreadable, left out
            continue
        good.append((number, line))
    return good, end, torn


def _say_dropped(path: Path, dropped: list[int]) -> None:
    """A warning naming the lines that are not JSON (torn by a crash, or edited): they are left out,
    so their items count as not recorded (a resume sends them again), never silently."""
    if dropped:
        shown = ", ".join(map(str, dropped[:5])) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
        log.warning(
            "%s: line(s) %s are not JSON records (torn by a crash, or edited): left out; their items count as not "
            "recorded, and a resume sends them again",
            path,
            shown,
        )


def read_records(path: Path) -> list[Record]:
    """All readable records, the last one winning for each (model, index)."""
    if not path.exists():
        return []
    lines, _, torn = _complete_lines(path)
    _say_dropped(path, torn)
    latest: dict[tuple[str, str], Record] = {}
    for number, line in lines:
        record = _parse_record(path, number, json.loads(line))
        key = (record.model, record.index)
        latest.pop(key, None)  # keep file order of the latest occurrence
        latest[key] = record
    return list(latest.values())


class RecordWriter:
    """Appends records with a flush per line and an fsync at most every ``fsync_every`` seconds."""

    def __init__(self, path: Path, *, fsync_every: float = 1.0):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            _, end, _ = _complete_lines(path)
            if end != path.stat().st_size:
                with path.open("r+b") as handle:
                    handle.truncate(end)  # drop a torn last line before appending after it
        self._handle: TextIO = path.open("a", encoding="utf-8")
        self._fsync_every = fsync_every
        self._last_sync = time.monotonic()

    def write(self, record: Record) -> None:
        self._handle.write(record_to_json(without_secrets(record)) + "\n")
        self._handle.flush()
        now = time.monotonic()
        if now - self._last_sync >= self._fsync_every:
            os.fsync(self._handle.fileno())
            self._last_sync = now

    def write_all(self, records: Iterable[Record]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rewrite_records(path: Path, records: Iterable[Record]) -> None:
    """Replace the journal at ``path`` with ``records``, whole or not at all: a failure (a full disk)
    leaves the old journal as it was, and no ``.tmp`` beside it. The caller holds the folder's lock."""
    with written_whole(path) as tmp:
        tmp.unlink(missing_ok=True)  # left by a process killed mid-way: the writer appends
        with RecordWriter(tmp) as writer:
            writer.write_all(records)


def iter_record_dicts(path: Path) -> Iterator[dict[str, Any]]:
    lines, _, _ = _complete_lines(path)
    for _, line in lines:
        yield json.loads(line)

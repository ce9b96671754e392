"""batches.jsonl: the run folder's journal of the batches it sent, written before each step is taken.

One JSON object per line, appended and fsynced, never rewritten. Every line names a batch by the
``key`` the client made for it (a uuid) and its model's label; the lines of one key, read in
order, give that batch's state::

    {"event": "intent", "key", "model", "vendor", "created", "requests", "bytes", "items": {custom_id: index}}
    {"event": "uploaded", "key", "file_id"}          OpenAI: the input file exists
    {"event": "submitted", "key", "batch_id"}        the vendor's id, written as soon as it is known
                      (with "proven": false when found by its size and time, its results unread yet)
    {"event": "rejected", "key", "batch_id", "reason"}   that batch's results are another run's: back to
                                                     an intent, never to be taken for this one again
    {"event": "ended", "key", "status"}              the vendor says it ended: its results can be read
    {"event": "cancel", "key"}                       a cancel was asked for
    {"event": "collecting", "key"}                   its records are being written
    {"event": "collected", "key", "status", "counts"}   every result recorded
    {"event": "void", "key", "reason"}               it never existed, or failed having processed nothing

Why the order is safe: ``intent`` (with the requests' custom_ids) is on disk before anything is
uploaded or created, so a process killed at any moment leaves either no batch or a batch the
journal knows about: by its id, or (when the kill or a lost answer came between create and id) by
its key, which the next run looks for at the vendor before sending anything (``submitted`` if
found, ``void`` if not). ``collected`` follows the records; a batch killed while ``collecting``
is read again, and the items it already recorded are not recorded twice. A batch found by its size
and creation time only (Anthropic keeps no metadata) is followed, but recorded only once its results
prove it is this run's; one that proves another run's is ``rejected``.

A torn last line (a kill mid-write) is dropped when read and cut off before the next append.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from gmai_client.errors import DataError

JOURNAL_FILE = "batches.jsonl"

State = Literal["intent", "submitted", "collecting", "collected", "void"]
#: States of a batch that may still hold answers to collect (or, for "intent", may exist unknown).
OPEN_STATES: frozenset[str] = frozenset({"intent", "submitted", "collecting"})


@dataclass(frozen=True)
class JournalBatch:
    """One batch as the journal tells it."""

    key: str
    model: str  # the model's label
    vendor: str  # "openai", "anthropic"
    created: float  # Unix time the intent was written (before the create call)
    requests: int
    bytes: int
    items: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # custom_id -> item index
    state: State = "intent"
    file_id: str = ""
    batch_id: str = ""
    cancel_asked: bool = False
    status: str = ""  # collected: the vendor's final status; void: why
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    proven: bool = True  # False: found by its size and creation time, its results not yet read
    rejected: tuple[str, ...] = ()  # batch ids found for it that hold another run's requests or answers
    ended: bool = False  # the vendor said it ended (its results may not have been read yet)

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES


class BatchJournal:
    """``RUN_DIR/batches.jsonl``: read it whole, append one event at a time (flushed and fsynced)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / JOURNAL_FILE
        self._checked_tail = False

    def read(self) -> dict[str, JournalBatch]:
        """Every batch by key, in the order their intents were written."""
        batches: dict[str, JournalBatch] = {}
        for number, event in enumerate(self._events(), start=1):
            try:
                _apply(batches, event)
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"line {number} is not a batch journal event ({exc})", file=str(self.path)) from None
        return batches

    def open_batches(self, model: str | None = None) -> list[JournalBatch]:
        """The batches (of ``model``, else of every model) that may still hold answers to collect."""
        return [b for b in self.read().values() if b.open and (model is None or b.model == model)]

    # ---------------------------------------------------------------- appending

    def intent(
        self, *, key: str, model: str, vendor: str, items: Mapping[str, str], requests: int, size: int
    ) -> JournalBatch:
        event = {
            "event": "intent", "key": key, "model": model, "vendor": vendor, "created": time.time(),
            "requests": requests, "bytes": size, "items": dict(items),
        }  # fmt: skip
        self._append(event)
        batches: dict[str, JournalBatch] = {}
        _apply(batches, event)
        return batches[key]

    def uploaded(self, key: str, file_id: str) -> None:
        self._append({"event": "uploaded", "key": key, "file_id": file_id})

    def submitted(self, key: str, batch_id: str, *, proven: bool = True) -> None:
        self._append({"event": "submitted", "key": key, "batch_id": batch_id, **({} if proven else {"proven": False})})

    def rejected(self, key: str, batch_id: str, reason: str) -> None:
        self._append({"event": "rejected", "key": key, "batch_id": batch_id, "reason": reason})

    def ended(self, key: str, status: str) -> None:
        self._append({"event": "ended", "key": key, "status": status})

    def cancel(self, key: str) -> None:
        self._append({"event": "cancel", "key": key})

    def collecting(self, key: str) -> None:
        self._append({"event": "collecting", "key": key})

    def collected(self, key: str, status: str, counts: Mapping[str, int]) -> None:
        self._append({"event": "collected", "key": key, "status": status, "counts": dict(counts)})

    def void(self, key: str, reason: str) -> None:
        self._append({"event": "void", "key": key, "reason": reason})

    def _append(self, event: Mapping[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._cut_torn_tail()
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())  # on disk before the step it announces is taken

    def _cut_torn_tail(self) -> None:
        """Before this object's first append: a line torn by a kill is cut off (lines after it would
        be glued to it)."""
        if self._checked_tail or not self.path.exists():
            self._checked_tail = True
            return
        self._checked_tail = True
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(end)

    def _events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        events = []
        for raw in data[: data.rfind(b"\n") + 1].splitlines():  # a torn last line is not read
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                raise DataError("a line is not JSON: not a batch journal", file=str(self.path)) from None
            events.append(event)
        return events


def _apply(batches: dict[str, JournalBatch], event: Mapping[str, Any]) -> None:
    kind, key = event["event"], str(event["key"])
    if kind == "intent":
        batches[key] = JournalBatch(
            key=key,
            model=str(event["model"]),
            vendor=str(event["vendor"]),
            created=float(event["created"]),
            requests=int(event["requests"]),
            bytes=int(event["bytes"]),
            items=MappingProxyType({str(k): str(v) for k, v in dict(event["items"]).items()}),
        )
        return
    batch = batches[key]
    if kind == "uploaded":
        batches[key] = replace(batch, file_id=str(event["file_id"]))
    elif kind == "submitted":
        proven = bool(event.get("proven", True))
        batches[key] = replace(batch, state="submitted", batch_id=str(event["batch_id"]), proven=proven)
    elif kind == "rejected":
        rejected = (*batch.rejected, str(event["batch_id"]))
        batches[key] = replace(batch, state="intent", batch_id="", proven=True, ended=False, rejected=rejected)
    elif kind == "ended":
        batches[key] = replace(batch, ended=True)
    elif kind == "cancel":
        batches[key] = replace(batch, cancel_asked=True)
    elif kind == "collecting":
        batches[key] = replace(batch, state="collecting")
    elif kind == "collected":
        counts = MappingProxyType({str(k): int(v) for k, v in dict(event.get("counts") or {}).items()})
        batches[key] = replace(batch, state="collected", status=str(event.get("status", "")), counts=counts)
    elif kind == "void":
        batches[key] = replace(batch, state="void", status=str(event.get("reason", "")))
    else:
        raise ValueError(f"unknown event {kind!r}")

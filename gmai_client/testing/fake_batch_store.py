"""The fake batch APIs' state on disk: files, batches, their items and results, and the call log.

Owns the state directory's layout and every read and write of it::

    files/<id>.json, files/<id>.data       a File object and its bytes (uploads and result files)
    batches/<id>.json                      a ``Batch``
    batches/<id>.items.jsonl               its requests, answered when it was created
    batches/<id>.results.jsonl             an ended Message Batch's results
    calls.jsonl                            every ``BatchCall``

Each file is written whole and renamed into place, so a server killed mid-write leaves the old
state, never half a file. A new store on the same directory (a restart in the middle) reloads it
all, and the counts derived from it: submissions and delivered results per (api, model, custom_id),
and batches sent twice with the same requests. ``fake_batches.FakeBatches`` serves it; the store
has no lock of its own, its owner calls it holding one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FILE_LIFETIME_S = 30 * 24 * 3600  # purpose=batch files expire after 30 days


@dataclass(frozen=True)
class BatchCall:
    """One call to a file or batch endpoint, as recorded (and kept in the state directory)."""

    endpoint: str  # "files.create", "batches.retrieve", "messages.batches.results", ...
    status: int  # the HTTP status answered
    batch_id: str = ""
    file_id: str = ""
    requests: int = 0  # requests in the uploaded file or the created batch
    timestamp: float = 0.0
    fault: str = ""  # the injected fault ("status", "reset", "lost"), if any


@dataclass
class Batch:
    """A batch's persisted state (``batches/<id>.json``); its answered items are in ``<id>.items.jsonl``."""

    id: str
    api: str  # "openai" or "anthropic"
    ordinal: int  # 1 for the first batch created in this state directory, 2 for the next, ...
    created_at: float
    total: int
    fates: str  # one letter per request, in input order: s(ucceeds), e(rrors), x (expires)
    processing_s: float | None  # the schedule in force when the batch was created
    processing_polls: int | None
    cancel_polls: int
    expire_whole: bool
    signature: str  # sha256 over its (model, custom_id, item key) set: the same batch sent twice
    status: str
    tokens: int = 0  # input tokens of its requests (the enqueued-token limit)
    model: str = ""
    input_file_id: str = ""
    endpoint: str = ""
    metadata: dict[str, str] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # OpenAI validation errors: it fails
    stamps: dict[str, float] = field(default_factory=dict)  # "in_progress_at", "cancelling_at", ... -> time
    polls: int = 0
    last_poll: float = 0.0
    processed: int = 0  # requests processed so far, in input order
    cancel_processed: int | None = None  # requests processed when the cancel arrived
    cancel_poll: int = 0  # ``polls`` when the cancel arrived
    final: str = ""  # once ended, one letter per request: s, e, x, or c (canceled)
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: dict[str, Any] | None = None


@dataclass
class CallNote:
    """What a handler tells the call record: the vendor, and the batch / file / request count it saw."""

    api: str
    batch_id: str = ""
    file_id: str = ""
    requests: int = 0


def signature(items: list[dict[str, Any]]) -> str:
    """What makes two batches the same batch sent twice: their (model, custom_id, item key) set."""
    if not items:
        return ""
    digest = hashlib.sha256()
    for line in sorted(f"{item['model']}\t{item['custom_id']}\t{item['key']}" for item in items):
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


class BatchStore:
    """The state in ``state_dir`` (a private temporary directory, removed with the store, when None)."""

    def __init__(self, state_dir: str | os.PathLike[str] | None):
        if state_dir is None:
            state_dir = tempfile.mkdtemp(prefix="fake-batches-")
            weakref.finalize(self, shutil.rmtree, state_dir, ignore_errors=True)
        self.dir = Path(state_dir)
        self._files_dir = self.dir / "files"
        self._batches_dir = self.dir / "batches"
        self._files_dir.mkdir(parents=True, exist_ok=True)
        self._batches_dir.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, Batch] = {}
        self.calls: list[BatchCall] = []
        self.submissions: Counter[tuple[str, str, str]] = Counter()  # (api, model, custom_id)
        self.answers: Counter[tuple[str, str, str]] = Counter()  # results delivered (succeeded, errored)
        self.signatures: Counter[str] = Counter()
        self._load()

    def _load(self) -> None:
        files = [json.loads(path.read_text(encoding="utf-8")) for path in self._files_dir.glob("*.json")]
        for file in sorted(files, key=lambda f: f["created_at"]):  # in creation order, as they were stored
            self.files[file["id"]] = file
        for path in sorted(self._batches_dir.glob("*.json")):
            batch = Batch(**json.loads(path.read_text(encoding="utf-8")))
            self.batches[batch.id] = batch
            for i, item in enumerate(self.items(batch)):
                who = (batch.api, item["model"], item["custom_id"])
                self.submissions[who] += 1
                if batch.final and batch.final[i] in "se":
                    self.answers[who] += 1
            if batch.signature:
                self.signatures[batch.signature] += 1
        calls = self.dir / "calls.jsonl"
        if calls.exists():
            self.calls = [BatchCall(**line) for line in _read_lines(calls)]

    # ---------------------------------------------------------------- files

    @staticmethod
    def new_file_id() -> str:
        return f"file-{uuid.uuid4().hex[:24]}"

    def file_path(self, file_id: str) -> Path:
        """Where file ``file_id``'s bytes are (or are about to be written)."""
        return self._files_dir / f"{file_id}.data"

    def add_file(self, file_id: str, filename: str, purpose: str, now: float) -> dict[str, Any]:
        """Store the File object for the bytes already at ``file_path(file_id)``, made at ``now`` by
        the vendor's clock, and return it."""
        now = int(now)
        file = {
            "id": file_id, "object": "file", "bytes": self.file_path(file_id).stat().st_size, "created_at": now,
            "filename": filename, "purpose": purpose, "status": "processed", "expires_at": now + FILE_LIFETIME_S,
            "status_details": None,
        }  # fmt: skip
        _write_json(self._files_dir / f"{file_id}.json", file)
        self.files[file_id] = file
        return file

    def add_result_file(self, batch: Batch, kind: str, lines: list[dict[str, Any]], now: float) -> str:
        """Store ``batch``'s output or error file (``kind``); its id."""
        file_id = self.new_file_id()
        _write_lines(self.file_path(file_id), lines)
        self.add_file(file_id, f"{batch.id}_{kind}.jsonl", "batch_output", now)
        return file_id

    def delete_file(self, file_id: str) -> None:
        self.files.pop(file_id, None)
        (self._files_dir / f"{file_id}.json").unlink(missing_ok=True)
        self.file_path(file_id).unlink(missing_ok=True)

    # ---------------------------------------------------------------- batches

    def next_ordinal(self) -> int:
        return 1 + max((b.ordinal for b in self.batches.values()), default=0)

    def add_batch(self, batch: Batch, items: list[dict[str, Any]]) -> None:
        """Store a new batch and its answered items (first, so a batch file always has them)."""
        _write_lines(self._batches_dir / f"{batch.id}.items.jsonl", items)
        self.save_batch(batch)
        self.batches[batch.id] = batch
        for item in items:
            self.submissions[(batch.api, item["model"], item["custom_id"])] += 1
        if batch.signature:
            self.signatures[batch.signature] += 1

    def save_batch(self, batch: Batch) -> None:
        _write_json(self._batches_dir / f"{batch.id}.json", asdict(batch))

    def items(self, batch: Batch) -> list[dict[str, Any]]:
        return _read_lines(self._batches_dir / f"{batch.id}.items.jsonl")

    def results_path(self, batch: Batch) -> Path:
        return self._batches_dir / f"{batch.id}.results.jsonl"

    def deliver(self, batch: Batch, items: list[dict[str, Any]], results: list[dict[str, Any]] | None = None) -> None:
        """Count the results an ended ``batch`` delivers (and write a Message Batch's ``results``)."""
        if results is not None:
            _write_lines(self.results_path(batch), results)
        for item, result in zip(items, batch.final, strict=True):
            if result in "se":
                self.answers[(batch.api, item["model"], item["custom_id"])] += 1

    # ---------------------------------------------------------------- calls and sums

    def record(self, call: BatchCall) -> None:
        self.calls.append(call)
        with (self.dir / "calls.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps(asdict(call)) + "\n")

    def clear_calls(self) -> None:
        self.calls.clear()
        (self.dir / "calls.jsonl").unlink(missing_ok=True)

    def stats(self) -> dict[str, Any]:
        """What was called and refused, and what was stored, submitted, sent twice and answered."""
        calls, batches, submitted, answered = self.calls, self.batches.values(), self.submissions, self.answers
        return {
            "calls": dict(Counter(c.endpoint for c in calls)),
            "refused": dict(Counter(f"{c.endpoint}:{c.status}" for c in calls if c.status >= 400)),
            "faults": dict(Counter(f"{c.endpoint}:{c.fault}" for c in calls if c.fault)),
            "early_polls": sum(1 for c in calls if c.endpoint.endswith("retrieve") and c.status == 429),
            "files": len(self.files),
            "created": dict(Counter(b.api for b in batches)),
            "status": dict(Counter(f"{b.api}:{b.status}" for b in batches)),
            "items_submitted": sum(submitted.values()),
            "max_submissions_per_item": max(submitted.values(), default=0),
            "resubmitted_items": sum(1 for n in submitted.values() if n > 1),
            "duplicate_batches": sum(n - 1 for n in self.signatures.values()),
            "answered": sum(answered.values()),
            "max_answers_per_item": max(answered.values(), default=0),
        }


def _write_json(path: Path, document: Any) -> None:
    # Write then rename: a server killed mid-write leaves the old state, never half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document), encoding="utf-8")
    os.replace(partial, path)


def _write_lines(path: Path, lines: Iterable[Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    os.replace(partial, path)


def _read_lines(path: Path) -> list[Any]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]

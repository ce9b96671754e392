"""The run folder's records against the items they answer: a changed or removed row is found, not counted.

A folder's identity names its data files by path, not by content (hashing a 9 GB file before the
first request would cost a full pass): editing the file under the same path reopens the same
folder. So each record keeps ``item_digest``, a hash of what was read for its item (every cell as
written, images included), taken while the row is read anyway:

- on resume, an item whose digest differs from its record's was changed since it was answered: it
  is sent again (``changed``), never skipped with the old answer and the old key;
- when the run ends, the selection as read now (``Census``: each item's index and digest, from the
  pass that counts the selection) decides which records still answer an item of the data. Records
  of rows no longer in the data, or of items changed since, are moved out of ``records.jsonl`` into
  ``records.superseded.jsonl`` (kept, not deleted: they were paid for), so that neither this run
  nor a later ``report`` counts them, and a warning names them.

Records written before digests existed carry none; their items are never judged changed (nothing
to compare), only removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gmai_client.results.records import RECORDS_FILE, RecordWriter, read_records, rewrite_records
from gmai_client.types import BadRow, Item, Record

SUPERSEDED_FILE = "records.superseded.jsonl"
_PIECE = 1 << 16  # characters of an image hashed at a time

log = logging.getLogger(__name__)


def item_digest(entry: Item | BadRow) -> str:
    """A short hash of everything read for an item (its cells as written and its images' text);
    "" for a row that could not be read (nothing to compare)."""
    if not isinstance(entry, Item):
        return ""
    digest = hashlib.sha256(json.dumps(entry.row or _fallback(entry), ensure_ascii=False).encode("utf-8"))
    for image in entry.images_b64:
        digest.update(b"\0")
        # In pieces: a whole image's bytes would be a second copy of ~2 MB per item being read.
        for start in range(0, len(image), _PIECE):
            digest.update(image[start : start + _PIECE].encode("ascii", "replace"))
    return digest.hexdigest()[:16]


def _fallback(item: Item) -> list[object]:
    # An item built without its row (from code, not a TSV): the fields that make the question.
    return [item.index, item.question, item.hint, item.options, item.answer_cell, item.category]


def index_of(entry: Item | BadRow) -> str:
    return entry.index if isinstance(entry, Item) else entry.record_index


@dataclass(frozen=True)
class Census:
    """The selection as read now: how many entries, and each one's digest by index."""

    count: int
    digests: Mapping[str, str]


def take_census(entries: Iterable[Item | BadRow]) -> Census:
    count, digests = 0, {}
    for entry in entries:
        count += 1
        digests[index_of(entry)] = item_digest(entry)
    return Census(count, digests)


def why_stale(record: Record, census: Census) -> str:
    """Why ``record`` no longer answers an item of the data ("" when it still does)."""
    if record.index not in census.digests:
        return "no longer in the data"
    now = census.digests[record.index]
    if record.item_digest and now and record.item_digest != now:
        return "changed since it was answered"
    return ""


def set_aside_stale(run_dir: Path, census: Census, labels: Sequence[str]) -> list[Record]:
    """Move the records of ``labels``' models that answer no item of ``census`` out of the journal
    (see the module docstring); return the journal's records of those models, as kept.

    Called by the run when its writer is closed and the folder lock is still held."""
    path = run_dir / RECORDS_FILE
    records = read_records(path)
    wanted = set(labels)
    stale = [(record, why) for record in records if record.model in wanted and (why := why_stale(record, census))]
    if not stale:
        return [record for record in records if record.model in wanted]
    aside = {id(record) for record, _ in stale}
    with RecordWriter(run_dir / SUPERSEDED_FILE) as superseded:
        superseded.write_all(record for record, _ in stale)
    rewrite_records(path, (record for record in records if id(record) not in aside))
    for why in dict.fromkeys(why for _, why in stale):
        indexes = list(dict.fromkeys(record.index for record, reason in stale if reason == why))
        shown = ", ".join(indexes[:8]) + (f" and {len(indexes) - 8} more" if len(indexes) > 8 else "")
        log.warning(
            "%s: %d record(s) of item(s) %s (index %s) are not counted: moved to %s",
            run_dir, sum(1 for _, reason in stale if reason == why), why, shown, SUPERSEDED_FILE,
        )  # fmt: skip
    return [record for record in records if record.model in wanted and id(record) not in aside]


def say_changed(label: str, indexes: Sequence[str]) -> None:
    """One warning per model for the items sent again because they changed since their answer."""
    if indexes:
        shown = ", ".join(indexes[:8]) + (f" and {len(indexes) - 8} more" if len(indexes) > 8 else "")
        log.warning(
            "%s: %d item(s) changed in the data since they were answered (index %s): sent again",
            label, len(indexes), shown,
        )  # fmt: skip

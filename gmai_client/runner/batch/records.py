"""The results of an ended batch as records: exactly what a live answer or a live failure records.

``BatchRecords`` keeps, per item sent (or found in a batch of an earlier run), what recording it
needs once its batch ends: the item without its images, its cache key and key fields (``Stub``).
An answer is recorded by ``score_answer``, cached under the live request's key (so a later live
run is answered by it, and the other way round) and charged to the token budget; a request the
vendor failed is recorded by ``score_error`` with its error, and one its batch holds no result for
with ``BatchExpired``, ``BatchCanceled`` (nothing billed: ``--retry-errors`` sends it again) or a
server error. Every record goes through the loop's ``finish`` (the judge, the journal, the counts).

Exactly once: an item that already has an answer is not recorded again, and neither is an error
when the journal says an earlier collect of this very batch was cut short (it wrote it then).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from gmai_client.batch_api import BatchCanceled, BatchExpired, BatchResult, BatchStatus, counts_of
from gmai_client.errors import BackendError, ServerError, redact
from gmai_client.policy.cache import ResponseCache, cache_key, key_fields
from gmai_client.policy.dispatch import TokenBudget
from gmai_client.protocol.scoring import score_answer, score_error
from gmai_client.results.batch_journal import BatchJournal, JournalBatch
from gmai_client.results.rundir.items import item_digest
from gmai_client.types import BadRow, Item, Record, Request, Response

#: The loop's way of keeping one record (judge, write, count).
Finish = Callable[[Item | BadRow, Record], Awaitable[None]]


@dataclass(frozen=True)
class Stub:
    """What recording one item needs: the item without its images, its cache key and key fields."""

    item: Item
    key: str
    fields: dict[str, Any]
    estimate: int | None = None  # the input tokens the backend expects (beside what the vendor reports)
    digest: str = ""  # the item's ``item_digest`` as read, images included (the stub holds none)

    def record(self, record: Record) -> Record:
        """``record`` of this item, with the digest of the item as read (not of this image-less stub)."""
        return replace(record, item_digest=self.digest)


class BatchRecords:
    """One model's items in batches, and the records their results become."""

    def __init__(
        self,
        *,
        label: str,
        previous: list[Record],
        journal: BatchJournal,
        cache: ResponseCache | None,
        budget: TokenBudget | None,
        finish: Finish,
    ):
        self.label, self.journal, self.cache, self.budget, self._finish = label, journal, cache, budget, finish
        self.stubs: dict[str, Stub] = {}
        self.latest = {r.index: r for r in previous}  # this model's last record per item
        self.answered = 0  # items recorded from batch results

    def stub(self, item: Item, request: Request, identity: Mapping[str, str], estimate: int | None = None) -> Stub:
        fields = key_fields(identity, request)
        return Stub(replace(item, images_b64=()), cache_key(fields), fields, estimate, item_digest(item))

    def knows(self, entry: JournalBatch) -> bool:
        """Whether every item of ``entry`` has been read (a batch of an earlier run: not before the
        data has been read through)."""
        return all(index in self.stubs for index in entry.items.values())

    async def cached(self, stub: Stub) -> Response | None:
        return await self.cache.get(stub.key) if self.cache is not None else None

    async def finish(self, entry: Item | BadRow, record: Record) -> None:
        await self._finish(entry, record)
        self.latest[record.index] = record

    async def record_batch(self, entry: JournalBatch, status: BatchStatus, results: list[BatchResult]) -> None:
        """Record every item of an ended batch: its answer, or the error that stands for it."""
        self.journal.collecting(entry.key)
        by_id = {result.custom_id: result for result in results}
        took = max(time.time() - entry.created, 0.0)
        for cid, index in entry.items.items():
            stub = self.stubs.get(index)
            if stub is None or self._recorded(index, entry):
                continue  # no longer selected, or recorded already
            result = by_id.get(cid) or BatchResult(cid, error=status.failure or unanswered(status, entry))
            await self._record(stub, result, took)
        self.journal.collected(entry.key, status.vendor_status, counts_of(results))

    async def record_errors(self, indexes: list[str], error: BackendError) -> None:
        """Items of a batch that could not be created: each an error record (nothing was sent)."""
        for index in indexes:
            stub = self.stubs.get(index)
            if stub is not None:
                await self.finish(stub.item, stub.record(score_error(stub.item, self.label, error, attempts=0)))

    def _recorded(self, index: str, entry: JournalBatch) -> bool:
        latest = self.latest.get(index)
        if latest is None:
            return False
        return latest.status != "error" or entry.state == "collecting"

    async def _record(self, stub: Stub, result: BatchResult, took: float) -> None:
        if result.response is not None:
            response = without_secrets(result.response)
            if self.cache is not None:
                await self.cache.put(stub.key, stub.fields, stub.item.index, response)
            if self.budget is not None and response.usage is not None:
                self.budget.spend(response.usage.input_tokens + response.usage.output_tokens)
            record = score_answer(
                stub.item, self.label, response, latency_s=took, attempts=1, estimated_input_tokens=stub.estimate
            )
        else:
            error = result.error or ServerError(f"{self.label}: no result")
            record = score_error(stub.item, self.label, error, latency_s=took, attempts=1)
        self.answered += 1
        await self.finish(stub.item, stub.record(record))


def unanswered(status: BatchStatus, entry: JournalBatch) -> BackendError:
    """The error of a request an ended batch holds no result for."""
    where = f"{entry.vendor}: batch {status.batch_id}"
    if status.vendor_status == "expired":
        return BatchExpired(f"{where} expired before this request ran")
    if entry.cancel_asked or status.vendor_status in ("cancelled", "cancelling"):
        return BatchCanceled(f"{where} was canceled before this request ran")
    return ServerError(f"{where} ({status.vendor_status}) holds no result for this request")


def without_secrets(response: Response) -> Response:
    """The answer without any API key a server echoed into it."""
    text, model = redact(response.text), redact(response.model)
    return response if (text, model) == (response.text, response.model) else replace(response, text=text, model=model)

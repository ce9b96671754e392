"""Anthropic's Message Batches for ``AnthropicBackend`` (the vendor's ``BatchApi`` half).

A Message Batch is created in one call holding every request, ``{"custom_id", "params"}`` with
``params`` the body a live ``/v1/messages`` call sends (at most 100,000 requests and 256 MB per
create). Anthropic keeps no metadata on a batch, so the batches a create whose answer was lost may
have made are found by what the client knows of them: created after the journal entry (allowing
for clock skew), holding that many requests, and not already in the journal, nearest first; which
one is this run's, their results tell (``batch_api.not_this_runs``: another run on the same
account may have made a batch of the same size at the same moment).

Statuses: in_progress -> ended; canceling -> ended. Results (JSONL, any order) say per request
succeeded (a Message, read as a live answer), errored (the vendor's error type, read as a live
error of the matching status), canceled (``BatchCanceled``) or expired (``BatchExpired``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from anthropic.types.messages import MessageBatch

from gmai_client.backends._batches import CLOCK_SLACK_S, MIB, VendorBatches
from gmai_client.batch_api import BatchCanceled, BatchExpired, BatchResult, BatchStatus
from gmai_client.errors import BackendError, ServerError

#: The HTTP status a live call gets with each error type (Anthropic's errors page); an errored
#: batch result carries only the type.
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicBatches(VendorBatches):
    """The Message Batches half of ``AnthropicBackend`` (its ``read_reply`` and ``vendor_error`` read the results)."""

    vendor_max_requests = 100_000
    vendor_max_bytes = 256 * MIB

    if TYPE_CHECKING:  # what AnthropicBackend provides

        def read_reply(self, reply: Any) -> Any: ...
        def vendor_error(self, exc: Any) -> Any: ...

    def wrap_request(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": body}

    async def create_batch(self, spool: Path | None, file_id: str, key: str, count: int) -> BatchStatus:
        if spool is None:
            raise ValueError("a Message Batch is created from its requests")
        requests = await asyncio.to_thread(_read_lines, spool)
        batch = await self.vendor_call(
            "create a Message Batch", lambda: self._client.messages.batches.create(requests=requests)
        )
        return _status(batch)

    async def find_batch(self, key: str, count: int, since: float, known: frozenset[str]) -> list[BatchStatus]:
        async def look() -> list[MessageBatch]:
            candidates = []
            async for batch in self._client.messages.batches.list(limit=100):  # newest first
                created = batch.created_at.timestamp()
                if created < since - CLOCK_SLACK_S:
                    break
                if batch.id not in known and _total(batch) == count:
                    candidates.append(batch)
            # Created right after the entry was written: the nearest ones at or after it first.
            return sorted(candidates, key=lambda b: _distance(b, since))

        return [_status(batch) for batch in await self.vendor_call("list Message Batches", look)]

    async def poll_batch(self, batch_id: str) -> BatchStatus:
        batch = await self.vendor_call(
            f"poll Message Batch {batch_id}", lambda: self._client.messages.batches.retrieve(batch_id)
        )
        return _status(batch)

    async def cancel_batch(self, batch_id: str) -> BatchStatus:
        batch = await self.vendor_call(
            f"cancel Message Batch {batch_id}", lambda: self._client.messages.batches.cancel(batch_id)
        )
        return _status(batch)

    async def batch_results(self, status: BatchStatus) -> list[BatchResult]:
        async def read() -> list[BatchResult]:
            decoder = await self._client.messages.batches.results(status.batch_id)
            return [self._result(status.batch_id, line) async for line in decoder]

        return await self.vendor_call(f"read the results of Message Batch {status.batch_id}", read)

    def _result(self, batch_id: str, line: Any) -> BatchResult:
        custom_id, result = str(line.custom_id), line.result
        where = f"Message Batch {batch_id}"
        if result.type == "succeeded":
            try:
                return BatchResult(custom_id, response=self.read_reply(result.message))
            except BackendError as exc:
                return BatchResult(custom_id, error=exc)
            except (AttributeError, IndexError, TypeError, ValueError) as exc:
                malformed = ServerError(f"anthropic: {where}: a malformed message ({type(exc).__name__})")
                return BatchResult(custom_id, error=malformed)
        if result.type == "errored":
            detail = getattr(result.error, "error", None)
            error_type = str(getattr(detail, "type", "") or "api_error")
            message = str(getattr(detail, "message", "") or "")
            status = _STATUS_OF_TYPE.get(error_type, 500)
            body = {"type": "error", "error": {"type": error_type, "message": message}}
            said = self.vendor_error(
                SimpleNamespace(api_message=message, body=body, error_code=None, status_code=status, type=error_type)
            )
            return BatchResult(custom_id, error=self.answered_error(where, status, said))
        if result.type == "expired":
            return BatchResult(custom_id, error=BatchExpired(f"anthropic: {where} expired before this request ran"))
        return BatchResult(custom_id, error=BatchCanceled(f"anthropic: {where} was canceled before this request ran"))


def _read_lines(spool: Path) -> list[dict[str, Any]]:
    with spool.open("rb") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _total(batch: MessageBatch) -> int:
    counts = batch.request_counts
    return counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired


def _distance(batch: MessageBatch, since: float) -> tuple[bool, float]:
    delta = batch.created_at.timestamp() - since
    return (delta < -1.0, abs(delta))


def _status(batch: MessageBatch) -> BatchStatus:
    counts = batch.request_counts
    return BatchStatus(
        batch_id=batch.id,
        vendor_status=batch.processing_status,
        ended=batch.processing_status == "ended",
        total=_total(batch),
        processed=counts.succeeded + counts.errored + counts.canceled + counts.expired,
        created_at=batch.created_at.timestamp(),
    )

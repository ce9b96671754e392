"""OpenAI's Batch API for ``OpenAIBackend``: Files upload + ``/v1/batches`` (the vendor's ``BatchApi`` half).

A batch is a JSONL file of ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``
lines (at most 50,000 requests and 200 MB), uploaded with purpose "batch"; the batch is created
from it with ``completion_window`` "24h" and the client's journal key in ``metadata``, which is how
a batch whose create answer was lost is found again: ``find_batch`` pages ``batches.list`` newest
first and stops at batches older than the journal entry.

Statuses: validating -> in_progress -> finalizing -> completed; cancelling -> cancelled; expired;
failed when the input is refused (every ``errors.data`` line says why; ``token_limit_exceeded`` is
the organisation's enqueued-token limit: the same file may be created again once other batches
end, so that failure is ``queue_full``).

Results: the output file holds the answers (a Chat Completion body each), the error file the
failures (an HTTP status and the vendor's error body, read as a live error of that status is; or a
code: ``batch_expired``, ``batch_cancelled``, ``request_timeout``); a request in neither file was
not processed (a cancel). Lines come in any order. Once recorded, the result files are deleted, and
so is the input file with any upload of it whose answer never came (found by its name, the key).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from openai.types import Batch
from openai.types.chat import ChatCompletion

from gmai_client.backends._batches import CLOCK_SLACK_S, KEY_METADATA, MIB, VendorBatches
from gmai_client.batch_api import BatchCanceled, BatchExpired, BatchResult, BatchStatus
from gmai_client.errors import BackendError, BadRequest, RateLimited, RequestTimeout, ServerError

#: The one endpoint batched here; also each line's ``url``.
BATCH_URL = "/v1/chat/completions"
_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


class OpenAIBatches(VendorBatches):
    """The Batch API half of ``OpenAIBackend`` (its ``read_reply`` and ``vendor_error`` read the results)."""

    vendor_max_requests = 50_000
    vendor_max_bytes = 200 * MIB

    if TYPE_CHECKING:  # what OpenAIBackend provides

        def read_reply(self, reply: Any) -> Any: ...
        def vendor_error(self, exc: Any) -> Any: ...

    def wrap_request(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": BATCH_URL, "body": body}

    async def upload_input(self, spool: Path) -> str:
        upload = await self.vendor_call(
            "upload a batch input file", lambda: self._client.files.create(file=spool, purpose="batch")
        )
        return str(upload.id)

    async def create_batch(self, spool: Path | None, file_id: str, key: str, count: int) -> BatchStatus:
        batch = await self.vendor_call(
            "create a batch",
            lambda: self._client.batches.create(
                input_file_id=file_id, endpoint=BATCH_URL, completion_window="24h", metadata={KEY_METADATA: key}
            ),
        )
        return self._status(batch)

    async def find_batch(self, key: str, count: int, since: float, known: frozenset[str]) -> list[BatchStatus]:
        async def look() -> Batch | None:
            async for batch in self._client.batches.list(limit=100):  # newest first
                if (batch.metadata or {}).get(KEY_METADATA) == key:
                    return batch
                if batch.created_at < since - CLOCK_SLACK_S:
                    return None
            return None

        found = await self.vendor_call("list batches", look)
        return [self._status(found)] if found is not None else []

    async def poll_batch(self, batch_id: str) -> BatchStatus:
        return self._status(
            await self.vendor_call(f"poll batch {batch_id}", lambda: self._client.batches.retrieve(batch_id))
        )

    async def cancel_batch(self, batch_id: str) -> BatchStatus:
        return self._status(
            await self.vendor_call(f"cancel batch {batch_id}", lambda: self._client.batches.cancel(batch_id))
        )

    async def delete_input(self, key: str, file_id: str, since: float) -> None:
        # An upload whose answer never came (a kill, a lost answer) is known by its name: the spool
        # file's, the batch's key (uploads are listed newest first).
        async def orphans() -> list[str]:
            found = []
            async for upload in self._client.files.list(purpose="batch"):
                if upload.created_at < since - CLOCK_SLACK_S:
                    break
                if upload.filename == f"{key}.jsonl" and upload.id != file_id:
                    found.append(upload.id)
            return found

        for upload_id in [file_id, *await self.vendor_call("list files", orphans)]:
            if upload_id:
                await self._delete_file(upload_id)

    async def delete_results(self, status: BatchStatus) -> None:
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id:
                await self._delete_file(file_id)

    async def _delete_file(self, file_id: str) -> None:
        await self.vendor_call(f"delete file {file_id}", lambda: self._client.files.delete(file_id))

    async def batch_results(self, status: BatchStatus) -> list[BatchResult]:
        results = []
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id:
                lines = await self.vendor_call(
                    f"download {file_id} of batch {status.batch_id}", lambda f=file_id: self._lines(f)
                )
                results.extend(self._result(status.batch_id, line) for line in lines)
        return results

    # ---------------------------------------------------------------- reading

    async def _lines(self, file_id: str) -> list[dict[str, Any]]:
        content = await self._client.files.content(file_id)
        lines = [json.loads(raw) for raw in content.content.splitlines() if raw.strip()]
        if not all(isinstance(line, dict) for line in lines):
            raise ValueError(f"a line of {file_id} is not a JSON object")
        return lines

    def _status(self, batch: Batch) -> BatchStatus:
        counts = batch.request_counts
        failure: BackendError | None = None
        queue_full = False
        if batch.status == "failed":
            errors = list(batch.errors.data or []) if batch.errors is not None else []
            queue_full = any(error.code == "token_limit_exceeded" for error in errors)
            said = "; ".join(
                f"{error.code or 'error'}" + (f" (line {error.line})" if error.line else "") + f": {error.message}"
                for error in errors[:3]
            )
            what = f"openai: batch {batch.id} failed: {said or 'no reason given'}"
            failure = RateLimited(what) if queue_full else BadRequest(what)
        return BatchStatus(
            batch_id=batch.id,
            vendor_status=batch.status,
            ended=batch.status in _ENDED,
            total=counts.total if counts is not None else 0,
            processed=(counts.completed + counts.failed) if counts is not None else 0,
            created_at=float(batch.created_at),
            failure=failure,
            queue_full=queue_full,
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            key=str((batch.metadata or {}).get(KEY_METADATA, "")),
        )

    def _result(self, batch_id: str, line: dict[str, Any]) -> BatchResult:
        custom_id = str(line.get("custom_id"))
        response, error = line.get("response"), line.get("error")
        where = f"batch {batch_id}"
        if isinstance(response, dict) and response.get("status_code") == 200:
            try:
                return BatchResult(
                    custom_id, response=self.read_reply(ChatCompletion.model_validate(response.get("body")))
                )
            except BackendError as exc:
                return BatchResult(custom_id, error=exc)
            except (AttributeError, IndexError, TypeError, ValueError) as exc:
                return BatchResult(
                    custom_id, error=ServerError(f"openai: {where}: a malformed completion ({type(exc).__name__})")
                )
        if isinstance(response, dict):  # the vendor's error status and body, as a live call would get them
            body = response.get("body")
            detail = body.get("error") if isinstance(body, dict) else None
            detail = detail if isinstance(detail, dict) else {}
            said = self.vendor_error(
                SimpleNamespace(body=detail or body, type=detail.get("type"), code=detail.get("code"))
            )
            return BatchResult(
                custom_id, error=self.answered_error(where, int(response.get("status_code") or 500), said)
            )
        detail = error if isinstance(error, dict) else {}
        message = str(detail.get("message") or "no answer")
        code = detail.get("code")
        if code == "batch_expired":
            return BatchResult(custom_id, error=BatchExpired(f"openai: {where}: {message}"))
        if code == "batch_cancelled":
            return BatchResult(custom_id, error=BatchCanceled(f"openai: {where}: {message}"))
        if code == "request_timeout":
            return BatchResult(custom_id, error=RequestTimeout(f"openai: {where}: {message}"))
        return BatchResult(custom_id, error=ServerError(f"openai: {where}: {detail.get('code') or 'error'}: {message}"))

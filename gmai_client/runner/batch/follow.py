"""Following a model's batches to their end: polling, a batch refused for a full queue created
again, and an ended batch's results read and recorded (``Following``, a part of ``batch.BatchRun``).

Each batch is followed by its own task: polled after ``poll_intervals`` (``-B batch_poll=`` seconds,
then 1.5x longer each time, to 2 minutes, whether or not its counts move; every vendor call goes
through ``retry``, so a 429's Retry-After is honoured). Once the vendor says it ended, the journal
says so (a run that then cannot read its results says they are unread, not "in progress"), its
results are read and become records (``batch.records``), and the vendor's copies (result files,
the input uploaded for it) are deleted. A batch found for a lost create by its size and time only
is recorded only once its results prove it this run's (``batch_api.not_this_runs``); one that
proves another run's is rejected: nothing of it recorded, the user told, and the next run looks
for this run's batch again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from gmai_client.batch_api import BatchApi, BatchResult, BatchSettings, BatchStatus, not_this_runs
from gmai_client.errors import BackendError, GmaiError, RetryableError
from gmai_client.policy.retry import RetryPolicy
from gmai_client.results.batch_journal import BatchJournal, JournalBatch
from gmai_client.runner.batch.ledger import Found, Ledger
from gmai_client.runner.batch.records import BatchRecords

T = TypeVar("T")

#: A batch's poll interval grows to this (or stays at ``batch_poll`` if that is longer).
MAX_POLL_S = 120.0


def poll_intervals(poll_s: float) -> Iterator[float]:
    """Seconds to wait before each poll of a batch: ``poll_s``, then 1.5x longer each time, to
    ``MAX_POLL_S`` (or ``poll_s`` if longer). It grows whether or not the vendor's counts move: a
    batch answers within hours, and moving counts say nothing about when it ends."""
    interval, cap = poll_s, max(MAX_POLL_S, poll_s)
    while True:
        yield interval
        interval = min(cap, interval * 1.5)


class Following:
    """The following half of ``batch.BatchRun`` (a mixin: its state is the run's)."""

    if TYPE_CHECKING:  # what BatchRun provides
        backend: BatchApi | None
        settings: BatchSettings | None
        journal: BatchJournal
        ledger: Ledger
        records: BatchRecords
        retry: RetryPolicy
        wait: bool
        scanned: asyncio.Event
        ended: asyncio.Condition
        ended_count: int
        tasks: set[asyncio.Task[None]]
        counts: dict[str, int]
        not_ours: list[str]
        label: str

        async def _release_slot(self) -> None: ...
        async def _create(self, entry: JournalBatch, spool: None) -> Found: ...
        async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T: ...
        def _note(self, message: str) -> None: ...

    def _follow(self, entry: JournalBatch, status: BatchStatus | None) -> None:
        task = asyncio.create_task(self._watch(entry, status))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _watch(self, entry: JournalBatch, status: BatchStatus | None) -> None:
        assert self.backend is not None and self.settings is not None
        poll_s = self.settings.poll_s
        try:
            if status is None:
                status = await self._poll(entry, None)
            await self._follow_to_end(entry, status, poll_s)
        except BackendError as exc:
            if exc.stops_model:
                raise
            self._note(f"batch {entry.batch_id} cannot be followed now ({exc}); it stays in the journal")
            self.counts["running_left"] += 1  # said when the run ends; batches collect follows it later
        finally:
            await self._release_slot()

    async def _follow_to_end(self, entry: JournalBatch, status: BatchStatus, poll_s: float) -> None:
        """Poll until the batch ends (or, without waiting, once), then collect it."""
        intervals, recreated = poll_intervals(poll_s), 0
        while True:
            if status.ended and status.queue_full and entry.file_id and recreated < self.retry.max_attempts:
                recreated += 1
                entry, status = await self._recreate(entry, status)
                intervals = poll_intervals(poll_s)
                continue
            if status.ended:
                break
            if not self.wait:
                self.counts["running_left"] += 1
                return
            await asyncio.sleep(next(intervals))
            status = await self._poll(entry, status)
        if not entry.ended:  # so that a run that cannot read its results says "ended", not "in progress"
            self.journal.ended(entry.key, status.vendor_status)
        try:
            await self._collect(entry, status)
        except BackendError as exc:
            if exc.stops_model:
                raise
            self._note(f"batch {entry.batch_id} has ended but its results cannot be read now ({exc}); "
                       "it stays in the journal")  # fmt: skip
            self.counts["unread_left"] += 1

    async def _poll(self, entry: JournalBatch, last: BatchStatus | None) -> BatchStatus:
        """The batch's status; when the vendor keeps failing to say, the last one known (tried later)."""
        assert self.backend is not None
        backend, batch_id = self.backend, entry.batch_id
        try:
            return await self._retrying(f"poll batch {batch_id}", lambda: backend.poll_batch(batch_id))
        except RetryableError as exc:
            if last is None:
                raise
            self._note(f"cannot poll batch {batch_id} for now ({exc}); trying again later")
            return last

    async def _recreate(self, entry: JournalBatch, status: BatchStatus) -> tuple[JournalBatch, BatchStatus]:
        """The vendor refused the batch for a full queue, having processed nothing: once another of
        the model's batches ends (or after a backoff), the same input is created again, as a new batch."""
        self.journal.void(entry.key, f"failed, nothing processed: {status.failure}")
        self._note(f"batch {entry.batch_id}: the vendor's queue is full; sending it again when there is room")
        await self._until_one_ends(self.retry.max_delay)
        again = self.journal.intent(
            key=uuid.uuid4().hex, model=self.label, vendor=entry.vendor, items=entry.items,
            requests=entry.requests, size=entry.bytes,
        )  # fmt: skip
        self.journal.uploaded(again.key, entry.file_id)
        again = replace(again, file_id=entry.file_id)
        created = await self._create(again, None)
        return self.ledger.adopt(again, created.status.batch_id, proven=created.proven), created.status

    async def _until_one_ends(self, timeout: float) -> None:
        async with self.ended:
            seen = self.ended_count
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.ended.wait_for(lambda: self.ended_count > seen), timeout)

    # ---------------------------------------------------------------- collecting

    async def _collect(self, entry: JournalBatch, status: BatchStatus) -> None:
        """Read an ended batch's results and record every one of its items."""
        assert self.backend is not None
        backend = self.backend
        if not self.records.knows(entry):
            await self.scanned.wait()  # a batch of an earlier run: its items are known once read
        results: list[BatchResult] = []
        if status.failure is None:
            results = await self._retrying(
                f"read the results of batch {status.batch_id}", lambda: backend.batch_results(status)
            )
        if not entry.proven and (why := not_this_runs(results, entry.items, backend)):
            self._reject(entry, why)
            return
        await self.records.record_batch(entry, status, results)
        self.counts["done"] += 1
        with contextlib.suppress(GmaiError):  # recorded: the vendor's copies are of no use now
            await backend.delete_results(status)
        with contextlib.suppress(GmaiError):
            await backend.delete_input(entry.key, entry.file_id, entry.created)

    def _reject(self, entry: JournalBatch, why: str) -> None:
        """A batch found by its size and time for a lost create holds another run's requests or
        answers: nothing of it is recorded; the next run looks for this run's batch again."""
        self.ledger.reject(entry, why)
        self.not_ours.append(
            f"batch {entry.batch_id}, found at the vendor for a create of this run whose answer never came, is "
            f"another run's: {why}; none of its answers was recorded (rerun to look for this run's batch again)"
        )

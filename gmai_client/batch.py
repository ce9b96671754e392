"""Batch mode: a model's items sent through its vendor's batch API, answered into the same records.

``run --batch`` (or ``-B batch=true``) hands a model whose backend has a batch API
(``batch_api.BatchApi``: OpenAI, Anthropic) to a ``BatchRun`` instead of the live workers. It reads
the items once, as they do: an item finished in the run folder is skipped, one the response cache
answers is recorded at once, every other one becomes a line of a batch (the body a live call
sends). Batches are cut by the vendor's limits (or ``-B batch_size= batch_mb=``), at most
``-B batch_queue=`` of a model in progress at once; each is followed by its own poller
(``-B batch_poll=`` seconds, growing 1.5x while nothing changes, to 2 minutes; every vendor call
goes through ``retry``, so a 429's Retry-After is honoured). An ended batch's results become records
exactly as live answers do (``batch_records``).

Crash safety is the journal's (``batch_journal``): each step is written before it is taken. A rerun
of the same command (or ``batches collect RUN_DIR``) follows the batches journaled with an id and
never sends them again; one whose create answer never came (a kill, a lost answer) is looked for
at the vendor and adopted if there, forgotten if not (``batch_ledger``). A create that fails
without an answer is looked for the same way before it is tried again: no batch is paid twice.

Modes: "batch" (the above), "beside" (a model run live whose folder still has batches in progress:
they are collected beside the live workers, which leave their items alone), "collect"
(``batches collect``: nothing is sent; items never sent are counted and said).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Literal, TypeVar

from gmai_client.batch_api import (
    BatchApi,
    BatchResult,
    BatchStatus,
)
from gmai_client.batch_journal import JournalBatch
from gmai_client.batch_ledger import SPOOL_FOLDER, Chunk, Ledger, Unresolved, custom_id, retrying
from gmai_client.batch_records import BatchRecords, without_secrets
from gmai_client.cache import ResponseCache
from gmai_client.dispatch import TokenBudget
from gmai_client.errors import (
    BackendError,
    DataError,
    GmaiError,
    Overloaded,
    RateLimited,
    RetryableError,
    UnsupportedInput,
)
from gmai_client.progress import ModelTrack, ProgressReporter, batch_status
from gmai_client.retry import RetryPolicy
from gmai_client.scoring import score_answer, score_error
from gmai_client.types import BadRow, Item, Record, Request

T = TypeVar("T")

_READ_BATCH = 16
#: A batch's poll interval grows to this while nothing changes (or to ``batch_poll`` if longer).
MAX_POLL_S = 120.0

Mode = Literal["batch", "collect", "beside"]


@dataclass(frozen=True)
class Collect:
    """A ``batches collect`` run: the journaled batches are collected and nothing new is sent."""

    wait: bool = True  # False: collect the batches that have ended, leave the others running


@dataclass(frozen=True)
class Hooks:
    """What the loop lends a model's batch run."""

    finish: Callable[[Item | BadRow, Record], Awaitable[None]]  # judge, write and count one record
    skip: Callable[[], None]  # one item finished in an earlier run
    halt: Callable[[str], None]  # stop this model, saying why
    stop: asyncio.Event  # set once the model is stopped
    track: ModelTrack


class BatchRun:
    """One model's items through its vendor's batch API (see the module docstring)."""

    def __init__(
        self,
        *,
        label: str,
        backend: BatchApi | None,
        mode: Mode,
        wait: bool,
        ledger: Ledger,
        run_dir: Path,
        entries: Callable[[], Iterator[Item | BadRow]],
        ask: Callable[[Item], Request],
        identity: Callable[[], dict[str, str]],
        previous: list[Record],
        finished: set[str],
        cache: ResponseCache | None,
        budget: TokenBudget | None,
        retry: RetryPolicy,
        progress: ProgressReporter,
    ):
        self.label, self.backend, self.mode, self.wait = label, backend, mode, wait
        self.ledger, self.journal = ledger, ledger.journal
        self.settings = backend.batch_settings() if backend is not None else None
        self.spool = run_dir / SPOOL_FOLDER
        self.entries, self.ask, self.identity = entries, ask, identity
        self.finished = finished
        self.budget, self.retry, self.progress = budget, retry, progress
        # A model that cannot batch (any more) has nothing to follow: its batches stay journaled.
        self.open = self.journal.open_batches(label) if backend is not None else []
        # Items in batches sent earlier: collected, never sent again (a live loop beside leaves them).
        self.pending_indexes = {index for b in self.open for index in b.items.values()}
        self.records = BatchRecords(
            label=label, previous=previous, journal=self.journal, cache=cache, budget=budget, finish=self._kept
        )
        self.scanned = asyncio.Event()
        self.ended = asyncio.Condition()  # notified whenever one of this model's batches ends
        self.in_flight = self.ended_count = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.counts = {"submitted": 0, "done": 0, "cached": 0, "unsent": 0, "running_left": 0}
        self.hooks: Hooks | None = None

    # ---------------------------------------------------------------- the whole run

    async def run(self, hooks: Hooks) -> None:
        self.hooks = hooks
        try:
            for batch in self.open:
                if batch.state == "intent":
                    batch = await self._resolve(batch)
                if batch.open:
                    self.counts["submitted"] += 1
                    await self._take_slot(force=True)
                    self._follow(batch, None)
            await self._scan()
            self.scanned.set()
            while self.tasks:
                await asyncio.gather(*list(self.tasks))
        except BackendError as exc:
            if not exc.stops_model:
                raise
            hooks.halt(str(exc))
        finally:
            self.scanned.set()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self._say_what_is_left()

    def _say_what_is_left(self) -> None:
        """What this run leaves undone stops the model, so the exit status is never 0 for it."""
        assert self.hooks is not None
        left = []
        if self.counts["running_left"]:
            left.append(f"{self.counts['running_left']} batch(es) are still in progress at the vendor (collect them "
                        "later with python -m gmai_client batches collect RUN_DIR)")  # fmt: skip
        if self.counts["unsent"] and self.mode == "collect":
            left.append(f"{self.counts['unsent']} item(s) were never sent (the run command sends them)")
        if left:
            self.hooks.halt("; ".join(left))

    def _show(self) -> None:
        if self.hooks is not None:
            counts, answered = self.counts, self.records.answered
            self.hooks.track.status(batch_status(counts["submitted"], self.in_flight, counts["done"], answered))

    # ---------------------------------------------------------------- reading the items

    async def _scan(self) -> None:
        assert self.hooks is not None
        entries = self.entries()
        chunk: Chunk | None = None
        total = 0
        try:
            while not self.hooks.stop.is_set():
                read = await asyncio.to_thread(lambda: list(islice(entries, _READ_BATCH)))
                if not read:
                    break
                for entry in read:
                    if self.hooks.stop.is_set():
                        break
                    total += 1
                    chunk = await self._take(entry, chunk)
            if chunk is not None and chunk.items and not self.hooks.stop.is_set():
                submitting, chunk = chunk, None
                await self._submit(submitting)
        finally:
            if chunk is not None:
                chunk.drop()
            with contextlib.suppress(OSError):
                self.spool.rmdir()  # gone once empty: nothing is spooled between runs
        if self.mode != "beside":  # beside, the live loop counts the items
            self.hooks.track.set_total(total)

    def _estimate(self, request: Request) -> int | None:
        return self.backend.estimate_input_tokens(request) if self.backend is not None else None

    async def _take(self, entry: Item | BadRow, chunk: Chunk | None) -> Chunk | None:
        """Deal with one item; the chunk being gathered afterwards (a full one is submitted)."""
        assert self.hooks is not None
        index = entry.index if isinstance(entry, Item) else entry.record_index
        if index in self.pending_indexes:  # in a batch sent earlier: collected, never sent again
            if isinstance(entry, Item):
                with contextlib.suppress(DataError):
                    request = self.ask(entry)
                    self.records.stubs[index] = self.records.stub(
                        entry, request, self.identity(), self._estimate(request)
                    )
            return chunk
        if self.mode == "beside":
            return chunk  # the live loop's item
        if index in self.finished:
            self.hooks.skip()
            return chunk
        if isinstance(entry, BadRow):
            await self.records.finish(entry, score_error(entry, self.label, DataError(entry.message)))
            return chunk
        try:
            request = self.ask(entry)
        except DataError as exc:
            await self.records.finish(entry, score_error(entry, self.label, exc))
            return chunk
        stub = self.records.stub(entry, request, self.identity(), self._estimate(request))
        hit = await self.records.cached(stub)
        if hit is not None:
            self.counts["cached"] += 1
            await self.records.finish(
                entry, score_answer(entry, self.label, without_secrets(hit), attempts=0, cached=True)
            )
            return chunk
        if self.mode == "collect" or self.backend is None or self.settings is None:
            self.counts["unsent"] += 1
            return chunk
        cid = custom_id(index)
        try:
            line = await self.backend.batch_line(cid, request)
        except BackendError as exc:  # an image the vendor cannot take: this item's error, as live
            await self.records.finish(entry, score_error(entry, self.label, exc))
            return chunk
        if len(line) > self.settings.max_bytes:
            too_big = UnsupportedInput(
                f"{self.label}: this request is {len(line) / 2**20:.1f} MiB; a batch takes at most "
                f"{self.settings.max_bytes / 2**20:.1f} MiB (send it live with --no-batch, or raise -B batch_mb)"
            )
            await self.records.finish(entry, score_error(entry, self.label, too_big))
            return chunk
        if chunk is not None and not chunk.fits(line, self.settings):
            submitting, chunk = chunk, None
            await self._submit(submitting)
        if chunk is None:
            chunk = Chunk(self.spool)
        chunk.add(cid, index, line)
        self.records.stubs[index] = stub
        return chunk

    # ---------------------------------------------------------------- submitting

    async def _take_slot(self, *, force: bool = False) -> None:
        """One of the model's ``batch_queue`` places for a batch in progress (waits for one to end)."""
        async with self.ended:
            if not force and self.settings is not None:
                await self.ended.wait_for(lambda: self.in_flight < self.settings.queue)  # type: ignore[union-attr]
            self.in_flight += 1
        self._show()

    async def _release_slot(self) -> None:
        async with self.ended:
            self.in_flight -= 1
            self.ended_count += 1
            self.ended.notify_all()
        self._show()

    async def _submit(self, chunk: Chunk) -> None:
        """Journal, upload and create one batch, then follow it. A batch that cannot be created
        leaves error records for its items (``--retry-errors`` sends them again)."""
        assert self.backend is not None and self.settings is not None
        chunk.close()
        try:
            await self._take_slot()
        except BaseException:  # Ctrl-C while waiting for room: nothing was sent
            chunk.drop()
            raise
        key, entry = chunk.key, None  # entry: once journaled
        try:
            if self.budget is not None:
                self.budget.check()
            entry = self.journal.intent(
                key=key, model=self.label, vendor=self.settings.vendor, items=chunk.items,
                requests=len(chunk.items), size=chunk.size,
            )  # fmt: skip
            file_id = await self._retrying(f"upload batch {key[:8]}", lambda: self.backend.upload_input(chunk.path))
            if file_id:
                self.journal.uploaded(key, file_id)
                entry = replace(entry, file_id=file_id)
            status = await self._create(entry, chunk.path)
        except BackendError as exc:
            if entry is not None and not isinstance(exc, Unresolved):
                self.journal.void(key, f"not created: {exc}")
                with contextlib.suppress(GmaiError):  # the input uploaded for it is of no use now
                    await self.backend.delete_input(entry.file_id)
            await self._release_slot()
            if exc.stops_model:
                raise
            await self.records.record_errors(list(chunk.items.values()), exc)
            return
        except BaseException:
            await self._release_slot()
            raise
        finally:
            chunk.drop()
        self.counts["submitted"] += 1
        self._follow(self.ledger.adopt(entry, status.batch_id), status)

    async def _create(self, entry: JournalBatch, spool: Path | None) -> BatchStatus:
        """Create the batch. A try that failed without saying the batch was refused (no answer, a
        5xx) is looked for at the vendor before the next try: no batch is created twice."""
        assert self.backend is not None
        backend = self.backend
        attempt = 0
        while True:
            found = None
            async with self.ledger.create_lock(backend.name):
                try:
                    return await backend.create_batch(spool, entry.file_id, entry.key, entry.requests)
                except RetryableError as exc:
                    failure = exc
                if not isinstance(failure, (RateLimited, Overloaded)):  # those are refusals: nothing was made
                    try:
                        found = await self._find(entry)
                    except BackendError as exc:  # whatever it is, the batch may exist: never forget it
                        raise Unresolved(
                            f"{self.label}: creating batch {entry.key} failed without an answer ({failure}) and "
                            f"the vendor cannot be asked whether it exists ({exc}); rerun to look for it again"
                        ) from None
            if found is not None:
                self._note(f"creating batch {found.batch_id} lost its answer ({failure}); found it at the vendor")
                return found
            if isinstance(failure, RateLimited) and self.in_flight > 1:
                await self._until_one_ends(self.retry.max_delay)  # the vendor's queue is full: wait for room
                continue  # not a failed try: a wait for room
            attempt += 1
            if attempt >= self.retry.max_attempts:
                raise failure
            await asyncio.sleep(self.retry.wait_after(failure, attempt))

    async def _find(self, entry: JournalBatch) -> BatchStatus | None:
        assert self.backend is not None
        return await self.ledger.find(entry, self.backend, self.retry, self._waiting(f"look for batch {entry.key}"))

    async def _resolve(self, entry: JournalBatch) -> JournalBatch:
        """A batch journaled but never heard of (a kill or a lost answer during its create)."""
        assert self.backend is not None
        resolved = await self.ledger.resolve(entry, self.backend, self.retry, self._waiting("look for a batch"))
        if resolved.batch_id:
            self._note(f"found batch {resolved.batch_id}, created before the last run heard back: following it")
        return resolved

    # ---------------------------------------------------------------- following a batch

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
        interval, recreated = poll_s, 0
        while True:
            if status.ended and status.queue_full and entry.file_id and recreated < self.retry.max_attempts:
                recreated += 1
                entry, status = await self._recreate(entry, status)
                interval = poll_s
                continue
            if status.ended:
                break
            if not self.wait:
                self.counts["running_left"] += 1
                return
            await asyncio.sleep(interval)
            before = status.processed
            status = await self._poll(entry, status)
            interval = poll_s if status.processed != before else min(max(MAX_POLL_S, poll_s), interval * 1.5)
        await self._collect(entry, status)

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
        return self.ledger.adopt(again, created.batch_id), created

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
        await self.records.record_batch(entry, status, results)
        self.counts["done"] += 1
        if entry.file_id:
            with contextlib.suppress(GmaiError):
                await backend.delete_input(entry.file_id)

    async def _kept(self, entry: Item | BadRow, record: Record) -> None:
        assert self.hooks is not None  # the loop's finish, then the progress line
        await self.hooks.finish(entry, record)
        self._show()

    # ---------------------------------------------------------------- helpers

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One vendor call under the run's retry policy, its waits shown on the progress line."""
        result = await retrying(self.retry, call, self._waiting(what))
        self._show()
        return result

    def _waiting(self, what: str) -> Callable[[float, BaseException], None]:
        def waiting(seconds: float, error: BaseException) -> None:
            if self.hooks is not None:
                self.hooks.track.status(f"{what}: retry in {seconds:.1f} s after {getattr(error, 'kind', 'an error')}")

        return waiting

    def _note(self, message: str) -> None:
        self.progress.note(self.label, message)

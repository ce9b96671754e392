"""Batch mode: a model's items sent through its vendor's batch API, answered into the same records.

``run --batch`` (or ``-B batch=true``) hands a model whose backend has a batch API
(``batch_api.BatchApi``: OpenAI, Anthropic) to a ``BatchRun`` instead of the live workers. It reads
the items once, as they do: an item finished in the run folder is skipped, one the response cache
answers is recorded at once, every other one becomes a line of a batch (the body a live call
sends). Batches are cut by the vendor's limits (or ``-B batch_size= batch_mb=``), at most
``-B batch_queue=`` of a model in progress at once (a create refused for the vendor's full queue
waits for one to end, and never less than its Retry-After); each is followed by its own poller
(``batch.follow``). An ended batch's results become records exactly as live answers do
(``batch.records``).

Crash safety is the journal's (``batch_journal``): each step is written before it is taken. A rerun
of the same command (or ``batches collect RUN_DIR``) follows the batches journaled with an id and
never sends them again; one whose create answer never came (a kill, a lost answer) is looked for
at the vendor first (``settle``, before anything reads the items) and adopted if there, forgotten
if not, its items then sent (``batch.ledger``). A create that fails without an answer is looked
for the same way before it is tried again: no batch is paid twice. Items of batches sent earlier
are read (to record their answers) even once the model has stopped or the live loop beside has
ended: those answers are paid for.

Modes: "batch" (the above), "beside" (a model run live whose folder still has batches in progress:
they are collected beside the live workers, which leave their items alone), "collect"
(``batches collect``: nothing is sent; items never sent are counted and said).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Literal, TypeVar

from gmai_client.batch_api import BatchApi
from gmai_client.errors import BackendError, DataError, GmaiError, RateLimited, UnsupportedInput
from gmai_client.policy.cache import ResponseCache
from gmai_client.policy.dispatch import TokenBudget
from gmai_client.policy.retry import RetryPolicy
from gmai_client.protocol.scoring import score_answer, score_error
from gmai_client.results.batch_journal import JournalBatch
from gmai_client.runner.batch.follow import Following
from gmai_client.runner.batch.ledger import SPOOL_FOLDER, Chunk, Found, Ledger, Unresolved, custom_id, retrying
from gmai_client.runner.batch.records import BatchRecords, without_secrets
from gmai_client.runner.progress import ModelTrack, ProgressReporter, batch_status
from gmai_client.types import BadRow, Item, Record, Request

T = TypeVar("T")

_READ_BATCH = 16

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


class BatchRun(Following):
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
        # Until ``settle`` has asked the vendor about the batches journaled as intents only, their
        # items count too: such a batch may exist.
        self.pending_indexes = _items_of(self.open)
        self.settled = False
        self.records = BatchRecords(
            label=label, previous=previous, journal=self.journal, cache=cache, budget=budget, finish=self._kept
        )
        self.scanned = asyncio.Event()
        self.ended = asyncio.Condition()  # notified whenever one of this model's batches ends
        self.in_flight = self.ended_count = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.counts = {"submitted": 0, "done": 0, "cached": 0, "unsent": 0, "running_left": 0, "unread_left": 0}
        self.not_ours: list[str] = []  # batches found for a lost create that turned out another run's
        self.hooks: Hooks | None = None

    # ---------------------------------------------------------------- the whole run

    async def settle(self, hooks: Hooks) -> bool:
        """Ask the vendor about the batches journaled as intents only (a kill or a lost answer cut
        their create short): each is adopted if the vendor has it, else voided, and its items are
        then this run's to send. Done before anything else reads the items (a live loop beside
        too: it must not send what such a batch holds, nor skip what it does not). False when the
        model stopped: the vendor could not say."""
        self.hooks = hooks
        if self.settled:
            return True
        try:
            self.open = [await self._resolve(b) if b.state == "intent" else b for b in self.open]
        except BackendError as exc:
            if not exc.stops_model:
                raise
            hooks.halt(str(exc))
            return False
        self.open = [b for b in self.open if b.open]
        self.pending_indexes = _items_of(self.open)
        self.settled = True
        return True

    async def run(self, hooks: Hooks) -> None:
        if not await self.settle(hooks):
            return
        try:
            for batch in self.open:
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
        later = "python -m gmai_client batches collect RUN_DIR (or rerun the same command)"
        if self.counts["running_left"]:
            left.append(f"{self.counts['running_left']} batch(es) are still in progress at the vendor (collect them "
                        f"later with {later})")  # fmt: skip
        if self.counts["unread_left"]:
            left.append(f"{self.counts['unread_left']} batch(es) have ended but their results could not be read "
                        f"now (read them later with {later})")  # fmt: skip
        left.extend(self.not_ours)
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
        unread = set(self.pending_indexes)  # items of batches sent earlier not read yet: read on for them
        try:
            while self._sending() or unread:
                read = await asyncio.to_thread(lambda: list(islice(entries, _READ_BATCH)))
                if not read:
                    break
                for entry in read:
                    total += 1
                    unread.discard(entry.index if isinstance(entry, Item) else entry.record_index)
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

    def _sending(self) -> bool:
        """Whether items are still this side's to send. Reading goes on past that while batches
        sent earlier hold items not yet read: their answers are paid for, and recorded whatever
        stopped the model or ended the live loop beside."""
        assert self.hooks is not None
        return self.mode != "beside" and not self.hooks.stop.is_set()

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
        if not self._sending():
            return chunk  # the live loop's item, or the model has stopped: nothing more is sent
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
            found = await self._create(entry, chunk.path)
        except BackendError as exc:
            if entry is not None and not isinstance(exc, Unresolved):
                self.journal.void(key, f"not created: {exc}")
                with contextlib.suppress(GmaiError):  # the input uploaded for it is of no use now
                    await self.backend.delete_input(key, entry.file_id, entry.created)
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
        self._follow(self.ledger.adopt(entry, found.status.batch_id, proven=found.proven), found.status)

    async def _create(self, entry: JournalBatch, spool: Path | None) -> Found:
        assert self.backend is not None
        on_wait = self._waiting(f"create or look for batch {entry.key}")
        found = await self.ledger.create(entry, self.backend, spool, self.retry, room=self._room, on_wait=on_wait)
        if found.lost:
            self._note(f"creating batch {found.status.batch_id} lost its answer ({found.lost}); found it at the vendor")
        return found

    async def _room(self, refused: RateLimited) -> bool:
        """The vendor refused a create for its full queue: while another of the model's batches is in
        progress, wait until one ends, and never less than the vendor said (Retry-After); False when
        there is nothing to wait for."""
        if self.in_flight <= 1:
            return False
        not_before = time.monotonic() + (refused.retry_after or 0.0)
        await self._until_one_ends(self.retry.max_delay)
        await asyncio.sleep(max(0.0, not_before - time.monotonic()))
        return True

    async def _resolve(self, entry: JournalBatch) -> JournalBatch:
        """A batch journaled but never heard of (a kill or a lost answer during its create)."""
        assert self.backend is not None
        resolved = await self.ledger.resolve(entry, self.backend, self.retry, self._waiting("look for a batch"))
        if resolved.batch_id:
            self._note(f"found batch {resolved.batch_id}, created before the last run heard back: following it")
        return resolved

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


def _items_of(batches: list[JournalBatch]) -> set[str]:
    return {index for batch in batches for index in batch.items.values()}

"""The loop: streams the items of a wired run (``wiring``) to every model, and returns a result.

It is the only module that knows about concurrency. Per model, one producer reads the dataset
lazily (in a worker thread, a small batch at a time, so parsing a 9 GB file never blocks the event
loop), skips what an earlier run finished (resume), and feeds a bounded queue; ``concurrency``
workers take items from it. Nothing is created per item up front, so memory stays flat whatever
the split size.

Each model streams the file on its own rather than sharing one pass: a rate-limited API model
and a local model run at very different speeds, and one shared pass would hold the fast one to
the slow one's pace (or buffer the difference in memory). Reading is cheap next to inference.

Each model's requests go through its ``dispatch.Dispatcher`` (cache, rate limits, adaptive
concurrency, retries), made by the wiring; the cache, the endpoint limiters and the token budget
are shared by every model of the run.

Every finished item is appended to records.jsonl at once (the resume journal). A failure is
isolated to its item; an error that means the whole model cannot work (bad key, exhausted quota,
unknown model, spent budget) stops that model's run, leaving that item and the unsent ones
unrecorded for a later resume; so does ``max_errors`` when too many items fail.
Anything else that fails (a record that cannot be written on a full disk, a data file that
breaks mid-way, a bug) ends the whole run at once, not just a worker: every model is cancelled, the
reason is in ``RunResult.failure`` and everything recorded stays. Ctrl-C cancels in-flight
requests, and the run returns (``interrupted=True``) with everything finished so far on disk.

A model in batch mode (``ModelPlan.batch``) is handed to ``batch.BatchRun`` instead of the workers,
with this loop's ways of recording (judge, write, count, stop); a model run live whose run folder
still has batches in progress has them collected beside its workers, which leave their items
alone; ``collect`` (``batches collect``) sends nothing and only collects the journaled batches.

The loop writes records, never reports: its caller does (``api.run``, the CLI through it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import traceback
from collections.abc import Awaitable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from gmai_client.backend import Backend
from gmai_client.batch_api import batch_api
from gmai_client.config import ModelSpec, PolicySection
from gmai_client.errors import GmaiError
from gmai_client.policy.dispatch import Dispatcher
from gmai_client.protocol.rulesets import DEFAULT_RULES
from gmai_client.protocol.scoring import rescore
from gmai_client.results.records import RECORDS_FILE, read_records
from gmai_client.results.rundir.items import Census, item_digest, say_changed, set_aside_stale, take_census
from gmai_client.runner.asking import ModelStopped, answer, index_of
from gmai_client.runner.batch.mode import BatchRun, Collect, Hooks, Ledger
from gmai_client.runner.judge import Judge, JudgeCounts
from gmai_client.runner.progress import ModelTrack
from gmai_client.runner.wiring import ModelPlan, Wired
from gmai_client.types import BadRow, Item, Record

_READ_BATCH = 8  # items read per trip to the reader thread
_READ_AHEAD = 16  # items waiting for a worker, at most
# A fractional --max-errors is judged only after this many items: 2 errors in the first 3 items
# of a long run are noise, not a failing run.
_MIN_ITEMS_FOR_ERROR_RATE = 20


@dataclass
class ModelOutcome:
    """Mutable per-model run state, owned by the runner."""

    spec: ModelSpec
    done: int = 0
    errors: int = 0
    skipped: int = 0  # finished in an earlier run (resume)
    stopped: str = ""  # why the model's run ended early, if it did
    sent: int = 0  # requests sent (retries included; cache hits excluded)
    cache_hits: int = 0
    throttled: int = 0  # 429 / overload replies met
    placement: tuple[dict[str, Any], ...] = ()  # where requests went: per endpoint or per Ray actor


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    records: tuple[Record, ...]
    outcomes: tuple[ModelOutcome, ...]
    interrupted: bool = False
    elapsed_s: float = 0.0
    files: tuple[str, ...] = field(default=())  # the reports written (by the caller: ``api.run``)
    judge: JudgeCounts | None = None
    failure: str = ""  # why the whole run ended early (a full disk, unreadable data), if it did
    selected: int | None = None  # items the run selected, asked of every model (None: not counted)


class RunFailed(GmaiError):
    """Something the run cannot go on without failed (a record could not be written, the data
    could not be read): the run ends at once, keeping what is recorded."""


async def stream(wired: Wired, policy: PolicySection, collect: Collect | None = None) -> RunResult:
    """Stream every model of a wired run over its items; record each answer; return the result.
    With ``collect``, nothing is sent: the batches the run folder's journal holds are collected.

    A failure after the start (a full disk, a data file that breaks mid-way) ends the run at once:
    everything recorded stays, and the result says why in ``failure``. Ctrl-C (a cancellation)
    ends it the same way with ``interrupted``.
    """
    outcomes = {plan.spec.label: ModelOutcome(plan.spec) for plan in wired.models}
    interrupted, failure = False, ""
    ledger = Ledger.of(wired.run_dir)
    # What the records are counted against (a model that stops early leaves the rest unread), and
    # what they must still answer (an edited file: ``rundir.items``): a parse beside the work.
    counting = asyncio.create_task(asyncio.to_thread(lambda: take_census(wired.items.entries())))
    try:
        with wired.progress:
            tasks = [
                asyncio.create_task(_run_model(wired, plan, outcomes[plan.spec.label], policy, ledger, collect))
                for plan in wired.models
            ]
            try:
                await asyncio.gather(*tasks)
            except asyncio.CancelledError:
                interrupted = True
            except Exception as exc:  # one model's failure ends the whole run: say why, keep what is done
                failure = _describe_failure(exc)
                wired.progress.note("run", f"stopped: {failure}")
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if failure:
                for plan, task in zip(wired.models, tasks, strict=True):
                    outcome = outcomes[plan.spec.label]
                    if (task.cancelled() or task.exception() is not None) and not outcome.stopped:
                        outcome.stopped = f"run stopped: {failure}"
    finally:
        try:
            wired.writer.close()
        except OSError as exc:  # the last lines may be lost; read_records drops a torn one
            failure = failure or f"cannot finish writing {wired.writer.path}: {exc}"
        for plan in wired.models:
            outcomes[plan.spec.label].placement = _placement(plan.backend)
    labels = [plan.spec.label for plan in wired.models]
    census = await _census_of(counting)
    records = _current_records(wired.run_dir, census, labels)
    selected = census.count if census is not None else None
    return RunResult(
        wired.run_dir,
        records,
        tuple(outcomes.values()),
        interrupted,
        time.monotonic() - wired.started,
        judge=wired.judge.counts if wired.judge else None,
        failure=failure,
        selected=selected,
    )


async def _census_of(counting: asyncio.Task[Census]) -> Census | None:
    """The selection as read, or None when the data could not be read to the end (the run says why)."""
    try:
        return await counting
    except Exception:  # a count is for the report: never fail a finished run over it
        return None


def _current_records(run_dir: Path, census: Census | None, labels: list[str]) -> tuple[Record, ...]:
    """The models' records that answer an item of the data as it is now: those of removed or
    changed rows are set aside (``rundir.items``); all of them when the data could not be read."""
    if census is not None:
        with contextlib.suppress(OSError):  # a full disk: the journal stays as it is, counted whole
            return tuple(set_aside_stale(run_dir, census, labels))
    return tuple(r for r in read_records(run_dir / RECORDS_FILE) if r.model in labels)


def _describe_failure(exc: BaseException) -> str:
    """One line for the user: the message of an expected failure, where an unexpected one arose."""
    if isinstance(exc, (GmaiError, OSError)):
        return str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"unexpected {type(exc).__name__}{where}: {exc} (a bug: please report it)"


def _placement(backend: Backend) -> tuple[dict[str, Any], ...]:
    """Per-endpoint (balancer) or per-actor (Ray) figures of a backend that spreads its requests."""
    with contextlib.suppress(Exception):  # figures for the report must never fail a finished run
        return tuple(backend.placement())
    return ()


def _too_many_errors(max_errors: float | None, outcome: ModelOutcome) -> bool:
    if max_errors is None:
        return False
    if max_errors >= 1:
        return outcome.errors >= max_errors
    return outcome.done >= _MIN_ITEMS_FOR_ERROR_RATE and outcome.errors / outcome.done > max_errors


async def _run_model(
    wired: Wired, plan: ModelPlan, outcome: ModelOutcome, policy: PolicySection, ledger: Ledger, collect: Collect | None
) -> None:
    track = wired.progress.add_model(plan.spec.label)
    live = _ModelRun(wired, plan, outcome, policy, track)
    mode = "collect" if collect is not None else "batch" if plan.batch is not None else "beside"
    if mode != "collect":
        await live.judge_again()
    batches = _batch_run(wired, plan, live, ledger, mode, wait=collect.wait if collect is not None else True)
    if mode == "beside" and not batches.pending_indexes:
        await live.run()  # starts the backend at the first item left to send: none when all are done
        return
    # Collecting starts a backend only when it has batches to follow (``BatchRun``).
    if mode != "collect" and not await live.start():
        return
    # Batches journaled as intents only are asked about first: their items are then sent, or followed.
    if not await batches.settle(live.hooks()):
        return
    if mode == "beside":  # batches of an earlier run still in progress: collected beside the live loop
        live.elsewhere = batches.pending_indexes
        await _together(live.run(), batches.run(live.hooks()))
    else:
        await batches.run(live.hooks())


def _batch_run(wired: Wired, plan: ModelPlan, live: _ModelRun, ledger: Ledger, mode: str, wait: bool) -> BatchRun:
    shared = plan.shared
    return BatchRun(
        label=plan.spec.label,
        backend=batch_api(plan.backend),
        mode=mode,  # type: ignore[arg-type]
        wait=wait,
        ledger=ledger,
        run_dir=wired.run_dir,
        entries=wired.items.entries,
        ask=live.ask,
        identity=lambda: dict(plan.backend.identity()),
        previous=[r for r in wired.previous if r.model == plan.spec.label],
        finished=live.finished,
        cache=shared.cache,
        budget=shared.budget,
        retry=shared.retry,
        progress=wired.progress,
    )


async def _together(*runs: Awaitable[None]) -> None:
    """Run side by side; the first failure cancels the others."""
    tasks = [asyncio.ensure_future(run) for run in runs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _ModelRun:
    """One model's stream: a producer feeding a bounded queue, ``concurrency`` workers answering."""

    def __init__(self, wired: Wired, plan: ModelPlan, outcome: ModelOutcome, policy: PolicySection, track: ModelTrack):
        self.wired, self.outcome, self.policy, self.track = wired, outcome, policy, track
        self.label = plan.spec.label
        self.shows_gallery = plan is wired.models[0]  # one model's stream offers the report's items
        self.finished = {
            r.index
            for r in wired.previous
            if r.model == self.label and not (policy.retry_errors and r.status == "error")
        }
        # Answers an earlier invocation's judge never judged (it failed, stopped, or the run ended
        # first): judged from their records (``judge_again``), the model not asked again.
        self.unjudged = {
            r.index: r for r in wired.previous if r.model == self.label and wired.judge is not None and r.never_judged
        }
        self.elsewhere: set[str] = set()  # items a batch run beside records (and counts)
        # What each item was when it was answered, and what it is as read now: a changed item is sent again.
        self.answered = {r.index: r.item_digest for r in wired.previous if r.model == self.label and r.item_digest}
        self.digests: dict[str, str] = {}
        self.changed: list[str] = []
        self.plan = plan
        self.ask = plan.ask(wired.ask)  # with its sample's ``repeat`` (``samples``)
        self._dispatcher: Dispatcher | None = None
        self._started: asyncio.Future[bool] | None = None
        # Items read ahead of the workers: each holds its image (~2 MB of base64 in the released
        # files), and reading one takes ~3 ms against a request's 50 ms and more: a short queue
        # keeps the workers fed and the memory flat.
        # (A semaphore, not the queue's own bound: the end marks must always fit, see ``run``.)
        self.queue: asyncio.Queue[Item | BadRow | None] = asyncio.Queue()
        self.ahead = asyncio.Semaphore(_READ_AHEAD)
        self.stop = asyncio.Event()

    @property
    def dispatcher(self) -> Dispatcher:
        """The model's dispatcher, made on first use, once its backend has started (the limiter
        scope reads the started backend's identity)."""
        if self._dispatcher is None:
            self._dispatcher = self.plan.dispatcher(self.track.status)
        return self._dispatcher

    async def start(self) -> bool:
        """Start the backend, once (False: it could not start, and the model is stopped saying so).
        A live run calls it for the first item left to send, so reopening a finished run starts
        nothing (Ray actors took 34 s to start and then had nothing to do)."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                failure = await self.plan.shared.start_once(self.plan.backend)
            except BaseException:
                self._started.cancel()
                raise
            if failure:
                self.outcome.stopped = f"could not start: {failure}"
                self.wired.progress.note(self.label, self.outcome.stopped)
                self.stop.set()
            self._started.set_result(not failure)
        return await asyncio.shield(self._started)

    async def run(self) -> None:
        # The total only feeds the progress bar's ETA; counting is a second full parse of the files.
        counter = asyncio.create_task(self._count() if self.wired.count_total else asyncio.sleep(0))
        producer = asyncio.create_task(self._produce())
        workers = [asyncio.create_task(self._work()) for _ in range(self.policy.concurrency)]
        try:
            # The first failure of any task (gather raises it at once) ends them all.
            await asyncio.gather(producer, *workers)
        finally:
            self.stop.set()
            counter.cancel()
            for task in (producer, *workers):
                task.cancel()
            # A cancellation can be lost (Python 3.11's wait_for drops one that meets an answer), and a
            # worker that lost its own would wait on the queue for ever: an end mark for every worker.
            while not self.queue.empty():
                self.queue.get_nowait()
            for _ in workers:
                self.queue.put_nowait(None)
            await asyncio.gather(producer, *workers, counter, return_exceptions=True)
            say_changed(self.label, self.changed)

    async def _produce(self) -> None:
        entries = self.wired.items.entries()
        # One thread of its own, not the loop's pool: a row's megabytes are then always allocated
        # (and freed) in the same malloc arena, rather than spread over as many as the pool has
        # threads, where freed blocks pile up and the process grows with the items read.
        loop, reader = asyncio.get_running_loop(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="gmai-reader")
        try:
            await self._read(entries, loop, reader)
        finally:
            reader.shutdown(wait=False)

    async def _read(self, entries: Iterator[Item | BadRow], loop: asyncio.AbstractEventLoop, reader: Executor) -> None:
        while not self.stop.is_set():
            try:
                # Each row hashed as it is read, in the reader's thread (``rundir.items``).
                batch = await loop.run_in_executor(reader, lambda: _read_hashed(entries, self.digests))
            except (GmaiError, OSError) as exc:
                raise RunFailed(f"reading the data failed: {exc}") from exc
            if not batch:
                break
            for entry in batch:
                if index_of(entry) in self.elsewhere:
                    continue
                if index_of(entry) in self.finished and not self._changed(entry):
                    self.outcome.skipped += 1
                    self.track.advance(skipped=True)
                    continue
                if not await self.start():
                    break  # stopped: the end marks below let the workers go
                await self.ahead.acquire()
                self.queue.put_nowait(entry)
        # One end mark per worker, sent only when the producer ends normally: after a failure or a
        # cancellation nothing may wait on the queue (its workers may be gone: a full queue would
        # block this task for ever); ``run`` cancels the workers instead.
        for _ in range(self.policy.concurrency):
            await self.queue.put(None)

    async def _work(self) -> None:
        # One call per item: a worker waiting for its next item holds nothing of the last. (Its
        # loop variable did: at --concurrency 256, 256 idle workers held ~500 MB of images.)
        while await self._work_one():
            pass

    async def _work_one(self) -> bool:
        """Answer and record the next item; False at the end mark."""
        entry = await self.queue.get()
        if entry is None:
            return False
        self.ahead.release()
        if self.stop.is_set():
            return True  # drain: the model has stopped, leave the rest for a resume
        try:
            record = await answer(entry, self.label, self.dispatcher.send, self.ask)
        except ModelStopped as stopped:  # unrecorded: a resume sends the item again
            self._halt(stopped.reason)
            return True
        await self.finish(entry, record)
        return True

    async def finish(self, entry: Item | BadRow, record: Record, *, answered: bool = True) -> None:
        """The judge's look at an answer no rule could read, then the record kept. ``answered``: the
        model answered it in this invocation (False: an earlier one's answer judged again)."""
        if self.wired.rules is not DEFAULT_RULES:
            record = rescore(record, self.wired.rules)  # answers are scored under the default set
        digest = record.item_digest or self.digests.get(record.index) or item_digest(entry)  # a batch's is set
        record = dataclasses.replace(record, item_digest=digest)
        judge: Judge | None = self.wired.judge
        if judge is not None and isinstance(entry, Item) and judge.wants(entry, record):
            # The answer is kept before the judge is asked (a paid answer must not be lost to a kill
            # while the judge thinks), marked as never judged: a rerun judges it (``judge_again``).
            self._write(dataclasses.replace(record, rule=f"judge {judge.label}: stopped (the run ended first)"))
            record = await judge.rescue(entry, record)
        self._keep(record, answered=answered)

    async def judge_again(self) -> None:
        """Judge the answers an earlier invocation's judge never judged, from their records: the items
        are read again for their questions, the model is not asked. An item changed since is left to
        the stream, which sends it again."""
        if not self.unjudged:
            return
        wanted, entries = dict(self.unjudged), self.wired.items.entries()
        gate = asyncio.Semaphore(self.policy.concurrency)
        items = await asyncio.to_thread(lambda: [e for e in entries if isinstance(e, Item) and e.index in wanted])

        async def judged(item: Item) -> None:
            async with gate:
                await self.finish(item, dataclasses.replace(wanted[item.index], rule=""), answered=False)

        same = [item for item in items if wanted[item.index].item_digest in ("", item_digest(item))]
        await asyncio.gather(*(judged(item) for item in same))

    def hooks(self) -> Hooks:
        """This model's ways of recording, lent to a batch run."""

        def skip() -> None:
            self.outcome.skipped += 1
            self.track.advance(skipped=True)

        return Hooks(finish=self.finish, skip=skip, halt=self._halt, stop=self.stop, track=self.track)

    def _write(self, record: Record) -> None:
        try:
            self.wired.writer.write(record)
        except OSError as exc:  # a full disk, a vanished folder: nothing more can be kept
            raise RunFailed(f"cannot append to {self.wired.writer.path}: {exc}") from exc

    def _keep(self, record: Record, *, answered: bool = True) -> None:
        self._write(record)
        if self.shows_gallery:
            self.wired.gallery.offer(record)  # cheap: notes where the row is, for a thumbnail
        outcome = self.outcome
        outcome.done += 1
        outcome.sent += record.attempts if answered else 0  # an earlier answer judged again cost no request
        outcome.cache_hits += record.cached and answered
        outcome.throttled = self.dispatcher.throttled
        if record.status == "error":
            outcome.errors += 1
            if _too_many_errors(self.policy.max_errors, outcome):
                self._halt(f"{outcome.errors} of {outcome.done} items failed (--max-errors {self.policy.max_errors:g})")
        self.track.advance(error=record.status == "error")

    def _changed(self, entry: Item | BadRow) -> bool:
        """Whether a finished item was changed in the data since it was answered (noted once)."""
        index = index_of(entry)
        then, now = self.answered.get(index, ""), self.digests.get(index, "")
        if not then or not now or then == now:
            return False
        self.changed.append(index)
        return True

    def _halt(self, reason: str) -> None:
        if not self.stop.is_set():
            self.outcome.stopped = reason
            self.wired.progress.note(self.label, f"stopped: {reason}")
            self.stop.set()

    async def _count(self) -> None:
        """Count the selected items in a thread so the progress bar can show an ETA."""
        self.track.set_total(await asyncio.to_thread(self.wired.items.count))


def _read_hashed(entries: Iterator[Item | BadRow], digests: dict[str, str]) -> list[Item | BadRow]:
    """The next few entries, each one's digest noted by index (run in the reader's thread)."""
    batch = list(islice(entries, _READ_BATCH))
    for entry in batch:
        digests[index_of(entry)] = item_digest(entry)
    return batch

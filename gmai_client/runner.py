"""The only module that knows about concurrency: streams items to every model of a run.

Per model, one producer reads the dataset lazily (in a worker thread, a small batch at a time, so
parsing a 9 GB file never blocks the event loop), applies the selection, the limit and resume,
and feeds a bounded queue; ``concurrency`` workers take items from it. Nothing is created per
item up front, so memory stays flat whatever the split size.

Each model streams the file on its own rather than sharing one pass: a rate-limited API model
and a local model run at very different speeds, and one shared pass would hold the fast one to
the slow one's pace (or buffer the difference in memory). Reading is cheap next to inference.

Each model's requests go through a ``dispatch.Dispatcher`` (cache, rate limits, adaptive
concurrency, retries); the cache, the endpoint limiters and the token budget are shared by every
model of the run.

Every finished item is appended to records.jsonl at once (the resume journal). A failure is
isolated to its item; an error that means the whole model cannot work (bad key, exhausted quota,
unknown model, spent budget) stops that model's run, leaving that item and the unsent ones
unrecorded for a later resume; so does ``max_errors`` when too many items fail.
Anything else that fails (a record that cannot be written on a full disk, a data file that
breaks mid-way, a bug) ends the whole run at once, not just a worker: every model is cancelled, the
reason is in ``RunResult.failure`` and everything recorded stays. Ctrl-C cancels in-flight
requests, and the run returns (``interrupted=True``) with everything finished so far on disk and
in the metrics.

The run folder (its name, the check that a reused folder holds the same run, the lock that keeps
a second process out) is ``rundir``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

from gmai_client import registry, rundir
from gmai_client.backend import Backend, as_backend
from gmai_client.cache import ResponseCache
from gmai_client.config import ModelSpec, RunConfig
from gmai_client.dataset import DatasetFile, count_items, iter_items, open_dataset
from gmai_client.dispatch import Dispatcher, Sent, TokenBudget
from gmai_client.errors import BackendError, ConfigError, DataError, GmaiError
from gmai_client.judge import Judge, JudgeCounts
from gmai_client.limiter import AdaptiveConcurrency, LimiterPool, Limits
from gmai_client.options import model_policy
from gmai_client.progress import ModelTrack, ProgressReporter, make_progress
from gmai_client.prompt import build_request
from gmai_client.records import RECORDS_FILE, RecordWriter, read_records
from gmai_client.retry import RetryPolicy
from gmai_client.scoring import score_answer, score_error
from gmai_client.select import Selection, parse_selection
from gmai_client.splits import resolve_data
from gmai_client.types import BadRow, Item, Record, Request

_READ_BATCH = 16
# A fractional --max-errors is judged only after this many items: 2 errors in the first 3 items
# of a long run are noise, not a failing run.
_MIN_ITEMS_FOR_ERROR_RATE = 20

#: What sends one request for a model (a ``Dispatcher``'s ``send``).
Send = Callable[[Request], Awaitable[Sent]]


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
    files: tuple[str, ...] = field(default=())
    judge: JudgeCounts | None = None
    failure: str = ""  # why the whole run ended early (a full disk, unreadable data), if it did


async def run(config: RunConfig, *, backends: dict[str, Backend] | None = None) -> RunResult:
    """Run every model of ``config`` over the selected items; write the run folder; return records.

    ``backends`` maps a model label to an already built backend (for SDK users with their own
    objects); the others are built from their specs through the registry.

    Raises ``ConfigError`` before anything is sent when the run folder holds another run, is in use
    by another process or cannot be written (``rundir``). A failure after the start (a full disk, a
    data file that breaks mid-way) ends the run at once: everything recorded stays, and the result
    says why in ``failure``.
    """
    started = time.monotonic()
    files = open_dataset(resolve_data(config.data, data_dir=config.data_dir))
    selection = parse_selection(config.select or None)
    for spec in (*config.models, *([config.judge] if config.judge is not None else [])):
        model_policy(spec.options, owner=spec.label)  # a bad rpm/tpm fails before any folder
    built = {label: as_backend(backend) for label, backend in (backends or {}).items()}
    judge_backend: Backend | None = None
    try:
        for spec in config.models:
            if spec.label not in built:
                built[spec.label] = _create_backend(spec, config)
        if config.judge is not None:
            judge_backend = registry.create(config.judge, seed=config.seed)
        data_files = [str(f.path) for f in files]
        ident = rundir.identity(config, data_files, built, judge_backend, registry.answer_neutral_options)
        run_dir = rundir.make_run_dir(config, ident)
        with rundir.RunLock(run_dir):
            rundir.check_reuse(run_dir, ident, config.limit, registry.answer_neutral_options)
            try:
                rundir.write_config(run_dir, config, data_files, identity=ident)
            except OSError as exc:
                raise ConfigError(f"cannot write in the run folder {run_dir}: {exc.strerror or exc}") from None
            return await _run_in(run_dir, config, files, selection, built, judge_backend, started)
    finally:
        for backend in (*built.values(), *([judge_backend] if judge_backend is not None else [])):
            with contextlib.suppress(Exception):
                await backend.close()


class RunFailed(GmaiError):
    """Something the run cannot go on without failed (a record could not be written, the data
    could not be read): the run ends at once, keeping what is recorded."""


async def _run_in(
    run_dir: Path,
    config: RunConfig,
    files: list[DatasetFile],
    selection: Selection,
    built: dict[str, Backend],
    judge_backend: Backend | None,
    started: float,
) -> RunResult:
    """The run proper, in a locked folder whose config.json is written."""
    from gmai_client import report

    previous = read_records(run_dir / RECORDS_FILE)
    outcomes = {spec.label: ModelOutcome(spec) for spec in config.models}
    progress = make_progress(enabled=config.progress)
    interrupted = False
    failure = ""
    cache = ResponseCache(config.cache_path) if config.cache else None
    shared = _Shared(
        cache=cache,
        limiters=LimiterPool(),
        budget=TokenBudget(config.token_budget) if config.token_budget else None,
        retry=RetryPolicy(
            max_attempts=config.max_attempts, attempt_timeout=config.attempt_timeout, deadline=config.item_deadline
        ),
    )
    writer: RecordWriter | None = None
    try:
        if config.judge is not None and judge_backend is not None:
            try:
                await judge_backend.start()
            except (GmaiError, OSError) as exc:
                raise GmaiError(f"the judge {config.judge.label} cannot start: {exc}") from None
            shared = replace(
                shared, judge=Judge(_dispatcher(config, config.judge, judge_backend, shared), config.judge.label)
            )
        try:
            writer = RecordWriter(run_dir / RECORDS_FILE)
        except OSError as exc:
            raise ConfigError(f"cannot write {run_dir / RECORDS_FILE}: {exc.strerror or exc}") from None
        with progress:
            tasks = [
                asyncio.create_task(
                    _run_model(
                        config,
                        files,
                        selection,
                        built[spec.label],
                        outcomes[spec.label],
                        previous,
                        writer,
                        progress,
                        shared,
                    )
                )
                for spec in config.models
            ]
            try:
                await asyncio.gather(*tasks)
            except asyncio.CancelledError:
                interrupted = True
            except Exception as exc:  # one model's failure ends the whole run: say why, keep what is done
                failure = _describe_failure(exc)
                progress.note("run", f"stopped: {failure}")
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if failure:
                for spec, task in zip(config.models, tasks, strict=True):
                    outcome = outcomes[spec.label]
                    unfinished = task.cancelled() or task.exception() is not None
                    if unfinished and not outcome.stopped:
                        outcome.stopped = f"run stopped: {failure}"
    finally:
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:  # the last lines may be lost; read_records drops a torn one
                failure = failure or f"cannot finish writing {writer.path}: {exc}"
        if cache is not None:
            cache.close()
        for label, backend in built.items():
            if label in outcomes:
                outcomes[label].placement = _placement(backend)

    records = tuple(read_records(run_dir / RECORDS_FILE))
    labels_in_order = [spec.label for spec in config.models]
    records = tuple(r for r in records if r.model in set(labels_in_order))
    elapsed = time.monotonic() - started
    result = RunResult(
        run_dir,
        records,
        tuple(outcomes.values()),
        interrupted,
        elapsed,
        judge=shared.judge.counts if shared.judge else None,
        failure=failure,
    )
    try:
        written = report.write_reports(
            run_dir, records, run_figures(result, config), order=labels_in_order, console=report.terminal_console()
        )
    except OSError as exc:  # a full disk: the records are kept, the reports can be written later
        reason = f"the reports could not be written ({exc}); `python -m gmai_client report {run_dir}` writes them"
        return replace(result, failure=f"{failure}; {reason}" if failure else reason)
    return replace(result, files=tuple(written))


def run_figures(result: RunResult, config: RunConfig) -> rundir.RunFigures:
    """What only the run knew, as the run folder's schema keeps it."""
    models = tuple(
        rundir.ModelFigures(
            label=o.spec.label,
            done=o.done,
            errors=o.errors,
            skipped=o.skipped,
            stopped=o.stopped,
            requests_sent=o.sent,
            cache_hits=o.cache_hits,
            throttled=o.throttled,
            placement=tuple(o.placement),
        )
        for o in result.outcomes
    )
    judge = None
    if result.judge is not None and config.judge is not None:
        judge = rundir.JudgeFigures(model=config.judge.label, **asdict(result.judge))
    return rundir.RunFigures(result.interrupted, result.elapsed_s, result.failure, models, judge)


def _describe_failure(exc: BaseException) -> str:
    """One line for the user: the message of an expected failure, where an unexpected one arose."""
    if isinstance(exc, (GmaiError, OSError)):
        return str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"unexpected {type(exc).__name__}{where}: {exc} (a bug: please report it)"


def _create_backend(spec: ModelSpec, config: RunConfig) -> Backend:
    """The spec's backend; with ``executor="ray"`` a torch model is served by Ray actors instead."""
    if config.executor == "ray" and spec.backend == "torch":
        from gmai_client.backends.ray import RayTorchBackend

        return RayTorchBackend.from_spec(spec, seed=config.seed, address=config.ray_address)
    return registry.create(spec, seed=config.seed)


def _placement(backend: Backend) -> tuple[dict[str, Any], ...]:
    """Per-endpoint (balancer) or per-actor (Ray) figures of a backend that spreads its requests."""
    with contextlib.suppress(Exception):  # figures for the report must never fail a finished run
        return tuple(backend.placement())
    return ()


@dataclass(frozen=True)
class _Shared:
    """What every model of a run shares."""

    cache: ResponseCache | None
    limiters: LimiterPool
    budget: TokenBudget | None
    retry: RetryPolicy
    judge: Judge | None = None


def _dispatcher(
    config: RunConfig, spec: ModelSpec, backend: Backend, shared: _Shared, track: ModelTrack | None = None
) -> Dispatcher:
    policy = model_policy(spec.options, owner=spec.label)
    limits = Limits(rpm=policy.rpm or config.rpm, tpm=policy.tpm or config.tpm)
    limiter = None
    if limits != Limits():
        # One account's budget: same backend, endpoint and key variable (never the key itself).
        scope = backend.limit_scope()
        limiter = shared.limiters.get(scope, limits)
    return Dispatcher(
        backend,
        retry=shared.retry,
        concurrency=AdaptiveConcurrency(config.concurrency),
        limiter=limiter,
        cache=shared.cache,
        budget=shared.budget,
        on_status=track.status if track is not None else None,
    )


def _too_many_errors(config: RunConfig, outcome: ModelOutcome) -> bool:
    limit = config.max_errors
    if limit is None:
        return False
    if limit >= 1:
        return outcome.errors >= limit
    return outcome.done >= _MIN_ITEMS_FOR_ERROR_RATE and outcome.errors / outcome.done > limit


async def _run_model(
    config: RunConfig,
    files: list[DatasetFile],
    selection: Selection,
    backend: Backend,
    outcome: ModelOutcome,
    previous: list[Record],
    writer: RecordWriter,
    progress: ProgressReporter,
    shared: _Shared,
) -> None:
    label = outcome.spec.label
    finished = {r.index for r in previous if r.model == label and not (config.retry_errors and r.status == "error")}
    outcome.skipped = 0
    track = progress.add_model(label)

    try:
        await backend.start()
    except (GmaiError, OSError) as exc:
        outcome.stopped = f"could not start: {exc}"
        progress.note(label, outcome.stopped)
        return

    # The total only feeds the progress bar's ETA; counting is a second full parse of the files.
    counter = asyncio.create_task(
        _count_total(files, selection, config.limit, track) if config.progress else asyncio.sleep(0)
    )
    queue: asyncio.Queue[Item | BadRow | None] = asyncio.Queue(maxsize=2 * config.concurrency)
    stop = asyncio.Event()

    async def produce() -> None:
        entries = _selected(files, selection, config.limit)
        while not stop.is_set():
            try:
                batch = await asyncio.to_thread(lambda: list(islice(entries, _READ_BATCH)))
            except (GmaiError, OSError) as exc:
                raise RunFailed(f"reading the data failed: {exc}") from exc
            if not batch:
                break
            for entry in batch:
                if _index_of(entry) in finished:
                    outcome.skipped += 1
                    track.advance(skipped=True)
                    continue
                await queue.put(entry)
        # One end mark per worker, sent only when the producer ends normally: after a failure or a
        # cancellation nothing may wait on the queue (its workers may be gone: a full queue would
        # block this task for ever); the supervisor below cancels the workers instead.
        for _ in range(config.concurrency):
            await queue.put(None)

    dispatcher = _dispatcher(config, outcome.spec, backend, shared, track)

    def halt(reason: str) -> None:
        if not stop.is_set():
            outcome.stopped = reason
            progress.note(label, f"stopped: {reason}")
            stop.set()

    async def work() -> None:
        while (entry := await queue.get()) is not None:
            if stop.is_set():
                continue  # drain: the model has stopped, leave the rest for a resume
            try:
                record = await _answer(entry, label, dispatcher.send, config)
            except _ModelStopped as stopped:  # unrecorded: a resume sends the item again
                halt(stopped.reason)
                continue
            if shared.judge is not None and isinstance(entry, Item) and shared.judge.wants(entry, record):
                record = await shared.judge.rescue(entry, record)
            try:
                writer.write(record)
            except OSError as exc:  # a full disk, a vanished folder: nothing more can be kept
                raise RunFailed(f"cannot append to {writer.path}: {exc}") from exc
            outcome.done += 1
            outcome.sent += record.attempts
            outcome.cache_hits += record.cached
            outcome.throttled = dispatcher.throttled
            if record.status == "error":
                outcome.errors += 1
                if _too_many_errors(config, outcome):
                    halt(f"{outcome.errors} of {outcome.done} items failed (--max-errors {config.max_errors:g})")
            track.advance(error=record.status == "error")

    producer = asyncio.create_task(produce())
    workers = [asyncio.create_task(work()) for _ in range(config.concurrency)]
    try:
        # The first failure of any task (gather raises it at once) ends them all.
        await asyncio.gather(producer, *workers)
    finally:
        stop.set()
        counter.cancel()
        for task in (producer, *workers):
            task.cancel()
        # A cancellation can be lost (Python 3.11's wait_for drops one that meets an answer), and a
        # worker that lost its own would wait on the queue for ever: an end mark for every worker.
        while not queue.empty():
            queue.get_nowait()
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(producer, *workers, counter, return_exceptions=True)


class _ModelStopped(Exception):
    """No later request of this model can succeed (bad key, no quota, unknown model, budget spent)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


async def _answer(entry: Item | BadRow, label: str, send: Send, config: RunConfig) -> Record:
    if isinstance(entry, BadRow):
        return score_error(entry, label, DataError(entry.message))
    started = time.monotonic()
    try:
        request = build_request(entry, template=config.template, params=config.params)
    except DataError as exc:
        return score_error(entry, label, exc)
    try:
        sent = await send(request)
    except BackendError as exc:
        if exc.stops_model:
            raise _ModelStopped(str(exc)) from None
        return score_error(
            entry, label, exc, latency_s=time.monotonic() - started, attempts=getattr(exc, "attempts", 1)
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug or an unmapped vendor error: fail this item, not the run
        return score_error(entry, label, exc, latency_s=time.monotonic() - started)
    return score_answer(
        entry,
        label,
        sent.response,
        latency_s=time.monotonic() - started,
        attempts=sent.attempts,
        retries=sent.retries,
        cached=sent.cached,
    )


def _index_of(entry: Item | BadRow) -> str:
    return entry.index if isinstance(entry, Item) else entry.record_index


def _selected(files: list[DatasetFile], selection: Selection, limit: int | None) -> Iterator[Item | BadRow]:
    """Items the selection keeps (bad rows always pass: they must be reported), up to ``limit``."""
    kept = (entry for entry in iter_items(files) if isinstance(entry, BadRow) or selection.matches(entry))
    return islice(kept, limit) if limit is not None else kept


async def _count_total(files: list[DatasetFile], selection: Selection, limit: int | None, track) -> None:
    """Count the selected items in a thread so the progress bar can show an ETA."""
    total = await asyncio.to_thread(
        count_items, files, lambda entry: isinstance(entry, BadRow) or selection.matches(entry)
    )
    track.set_total(min(total, limit) if limit is not None else total)

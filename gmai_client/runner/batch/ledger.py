"""What a run's batches share, and what can be done with a run folder's batches from its journal alone.

``Ledger``: the run folder's journal (``batch_journal``), the batch ids it knows (a lost create is
never taken for one of those), and one create at a time per vendor in a run, so that the batch a
lost create made cannot be confused with another create of the same run; ``Chunk``: one batch's
lines while they are gathered, in the run folder's spool (emptied by the next run after a kill).
``Ledger.resolve`` settles a batch the journal holds as an intent only (its create was cut short
by a kill or its answer was lost): adopted when the vendor has it, voided when it does not, never
voided while the vendor cannot be asked, nor while several batches could be it (``Unresolved``: the
next run asks again). A batch found by its size and creation time only (a vendor without metadata)
is this run's only when its results say so (``Ledger.find``); another run on the same account may
have made one of the same size at the same moment.

``cancel_batches`` (``batches cancel RUN_DIR``) asks the vendor to stop every batch of a run folder
that is still in progress; what they answered before the cancel is collected by the next run or
``batches collect``, the rest becomes ``batch_canceled`` error records.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from gmai_client.backends import registry
from gmai_client.batch_api import BatchApi, BatchSettings, BatchStatus, batch_api, not_this_runs
from gmai_client.config import RunConfig
from gmai_client.errors import BackendError, GmaiError, Overloaded, RateLimited, RetryableError
from gmai_client.policy.retry import OnWait, RetryPolicy, call_with_retry
from gmai_client.results import rundir
from gmai_client.results.batch_journal import BatchJournal, JournalBatch

T = TypeVar("T")

_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what both vendors take as a custom_id
#: In the run folder: a batch's lines, from the first one until its create returns.
SPOOL_FOLDER = "batch-spool"


class Unresolved(BackendError):
    """A create failed without an answer and the vendor could not be asked whether it made the
    batch: the journal keeps the batch as an intent (never voided: it may exist and be paid for),
    and the next run looks for it again. Stops the model."""

    kind = "batch_unresolved"
    stops_model = True


def custom_id(index: str) -> str:
    """An item's custom_id: its index when both vendors take it as one, else a hash of it."""
    if _CUSTOM_ID.match(index):
        return index
    return "h" + hashlib.sha256(index.encode("utf-8")).hexdigest()[:40]


async def retrying(policy: RetryPolicy, call: Callable[[], Awaitable[T]], on_wait: OnWait | None = None) -> T:
    """One vendor call under the run's retry policy (backoff with jitter, Retry-After honoured)."""
    result, _, _ = await call_with_retry(lambda clock: clock.timed(call()), policy, on_wait=on_wait)
    return result


class Chunk:
    """The lines of one batch being gathered, spooled to a file in the run folder's spool folder
    (dropped once the batch is created, or by the next run of the folder)."""

    def __init__(self, folder: Path):
        self.key = uuid.uuid4().hex
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{self.key}.jsonl"
        self._out = self.path.open("wb")
        self.items: dict[str, str] = {}  # custom_id -> item index
        self.size = 0

    def fits(self, line: bytes, settings: BatchSettings) -> bool:
        return len(self.items) < settings.max_requests and self.size + len(line) <= settings.max_bytes

    def add(self, cid: str, index: str, line: bytes) -> None:
        self._out.write(line)
        self.items[cid] = index
        self.size += len(line)

    def close(self) -> None:
        self._out.close()

    def drop(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Found:
    """The batch a create whose answer was lost made; ``proven`` False: the only batch of its size
    made at that time, still in progress: followed, recorded only once its results prove it ours."""

    status: BatchStatus
    proven: bool
    lost: str = ""  # found by a search after this failure of its create


@dataclass
class Ledger:
    """What every model's batch run shares (see the module docstring)."""

    journal: BatchJournal
    known: set[str] = field(default_factory=set)  # batch ids the run folder knows
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @classmethod
    def of(cls, run_dir: Path) -> Ledger:
        """The ledger of a run folder held by this process (its lock): what a killed process left
        spooled is dropped (its batches are rebuilt from the data, or found at the vendor)."""
        for stale in (run_dir / SPOOL_FOLDER).glob("*.jsonl"):
            stale.unlink(missing_ok=True)
        journal = BatchJournal(run_dir)
        batches = journal.read().values()
        return cls(journal, {b.batch_id for b in batches if b.batch_id} | {i for b in batches for i in b.rejected})

    def create_lock(self, vendor: str) -> asyncio.Lock:
        """Held around a create and the search that may follow it (one at a time per vendor)."""
        return self._locks.setdefault(vendor, asyncio.Lock())

    async def find(
        self, entry: JournalBatch, backend: BatchApi, policy: RetryPolicy, on_wait: OnWait | None = None
    ) -> Found | None:
        """The batch ``entry``'s create made, if the vendor has it: the one tagged with its key, or
        the one batch of its size made at that time whose results (once it has ended) hold this
        run's requests answered by this model. ``Unresolved`` when several could be (a batch still
        in progress cannot be told apart until it ends): the user is told, nothing is adopted."""
        known = frozenset(self.known)
        found = await retrying(
            policy, lambda: backend.find_batch(entry.key, entry.requests, entry.created, known), on_wait
        )
        tagged = [status for status in found if status.key == entry.key]
        if tagged:
            return Found(tagged[0], proven=True)
        proven, unproven = [], []
        for status in found:
            if not status.ended:
                unproven.append(status)
                continue
            results = await retrying(policy, lambda status=status: backend.batch_results(status), on_wait)
            if not not_this_runs(results, entry.items, backend):
                proven.append(status)
        candidates = proven + unproven
        if len(candidates) > 1:
            ids = ", ".join(status.batch_id for status in candidates)
            raise Unresolved(
                f"batch {entry.key} was journaled but its create's answer never came, and {len(candidates)} batches "
                f"of {entry.requests} requests were made at that time on this account ({ids}); which one is this "
                "run's cannot be told until their results are in (another run may have made the others): rerun "
                "once they have ended"
            )
        return Found(candidates[0], proven=bool(proven)) if candidates else None

    async def create(
        self, entry: JournalBatch, backend: BatchApi, spool: Path | None, policy: RetryPolicy, *,
        room: Callable[[RateLimited], Awaitable[bool]], on_wait: OnWait | None = None,
    ) -> Found:  # fmt: skip
        """Create ``entry``'s batch from ``spool`` (or its uploaded file). A try that failed without
        saying the batch was refused (no answer, a 5xx) is looked for at the vendor before the next
        try: no batch is created twice. A refusal for a full queue waits for ``room`` (True: it
        waited, and that try does not count)."""
        attempt = 0
        while True:
            found = None
            async with self.create_lock(backend.name):
                try:
                    return Found(await backend.create_batch(spool, entry.file_id, entry.key, entry.requests), True)
                except RetryableError as exc:
                    failure = exc
                if not isinstance(failure, (RateLimited, Overloaded)):  # those are refusals: nothing was made
                    try:
                        found = await self.find(entry, backend, policy, on_wait)
                    except Unresolved:  # several batches could be it: the user is told, nothing adopted
                        raise
                    except BackendError as exc:  # whatever it is, the batch may exist: never forget it
                        raise Unresolved(
                            f"{entry.model}: creating batch {entry.key} failed without an answer ({failure}) and "
                            f"the vendor cannot be asked whether it exists ({exc}); rerun to look for it again"
                        ) from None
            if found is not None:
                return replace(found, lost=str(failure))
            if isinstance(failure, RateLimited) and await room(failure):
                continue
            attempt += 1
            if attempt >= policy.max_attempts:
                raise failure
            await asyncio.sleep(policy.wait_after(failure, attempt))

    def adopt(self, entry: JournalBatch, batch_id: str, *, proven: bool = True) -> JournalBatch:
        self.journal.submitted(entry.key, batch_id, proven=proven)
        self.known.add(batch_id)
        return replace(entry, state="submitted", batch_id=batch_id, proven=proven)

    def reject(self, entry: JournalBatch, reason: str) -> None:
        """``entry``'s batch, found by its size and time, holds another run's requests or answers:
        back to an intent, that batch never to be taken for it again (``known``)."""
        self.journal.rejected(entry.key, entry.batch_id, reason)

    async def resolve(
        self, entry: JournalBatch, backend: BatchApi, policy: RetryPolicy, on_wait: OnWait | None = None
    ) -> JournalBatch:
        """A batch journaled as an intent only: adopted if the vendor has it, voided (its items
        are sent again) if not. ``Unresolved`` when the vendor cannot be asked."""
        try:
            async with self.create_lock(backend.name):
                found = await self.find(entry, backend, policy, on_wait)
        except BackendError as exc:  # whatever it is, the batch may exist: never forget it
            raise Unresolved(f"cannot tell whether batch {entry.key} was created: {exc}; rerun to ask again") from None
        if found is not None:
            return self.adopt(entry, found.status.batch_id, proven=found.proven)
        self.journal.void(entry.key, "never created: the vendor has no such batch")
        with contextlib.suppress(GmaiError):  # what was uploaded for it, even if its id was never heard
            await backend.delete_input(entry.key, entry.file_id, entry.created)
        return replace(entry, state="void")


# --------------------------------------------------------------------- batches cancel


@dataclass(frozen=True)
class Canceled:
    """What ``cancel_batches`` did with one batch."""

    model: str
    batch_id: str  # "" when the batch turned out never to have been created
    requests: int
    outcome: str  # "cancel asked", "already ended", "never created", or why it could not be canceled


async def cancel_batches(config: RunConfig, run_dir: Path) -> list[Canceled]:
    """Ask the vendor to stop every batch of ``run_dir`` still in progress (the folder is locked
    meanwhile: a run in it must be stopped first)."""
    done: list[Canceled] = []
    with rundir.RunLock(run_dir):
        ledger = Ledger.of(run_dir)
        specs = {spec.label: spec for spec in config.models}
        policy = RetryPolicy(max_attempts=config.policy.max_attempts, deadline=config.policy.item_deadline)
        for label in dict.fromkeys(b.model for b in ledger.journal.open_batches()):
            spec = specs.get(label)
            backend = batch_api(registry.create(spec, seed=config.execution.seed)) if spec is not None else None
            if backend is None:
                raise GmaiError(f"{run_dir}: the batches of {label!r} cannot be canceled: its model has no batch API")
            try:
                for entry in ledger.journal.open_batches(label):
                    done.append(await _cancel_one(ledger, entry, backend, policy))
            finally:
                with contextlib.suppress(Exception):
                    await backend.close()  # type: ignore[attr-defined]
    return done


async def _cancel_one(ledger: Ledger, entry: JournalBatch, backend: BatchApi, policy: RetryPolicy) -> Canceled:
    if entry.state == "intent":
        entry = await ledger.resolve(entry, backend, policy)
        if entry.state == "void":
            return Canceled(entry.model, "", entry.requests, "never created")
    if not entry.proven:  # another run's, maybe: not this run's to cancel
        why = "found by its size and creation time only, it may be another run's batch (its results will tell)"
        return Canceled(entry.model, entry.batch_id, entry.requests, f"not canceled: {why}")
    try:
        status = await retrying(policy, lambda: backend.cancel_batch(entry.batch_id))
    except BackendError as exc:
        if exc.stops_model:
            raise
        status = await retrying(policy, lambda: backend.poll_batch(entry.batch_id))
        if not status.ended:
            return Canceled(entry.model, entry.batch_id, entry.requests, f"not canceled: {exc}")
        return Canceled(entry.model, entry.batch_id, entry.requests, "already ended")
    ledger.journal.cancel(entry.key)
    return Canceled(entry.model, entry.batch_id, entry.requests, "cancel asked")

"""The batch-API contract: what a backend with a vendor batch API offers the batch runner.

A backend whose vendor takes requests in batches (OpenAI's Files + ``/v1/batches``, Anthropic's
Message Batches: about half the live price, answers within 24 hours) is also a ``BatchApi``: it
writes one request as a line of a batch (the body a live call sends, so a batch asks exactly what
a live call asks), uploads and creates a batch, finds the batches a create whose answer was lost
may have made, polls, reads the results, cancels, and deletes what it uploaded and the result
files. What flows back is vendor-neutral: a ``BatchStatus`` per look, a ``BatchResult`` per request
(a ``Response``, or an error of the project's tree), and the model's ``BatchSettings`` (its ``-B
batch*`` options, ``BatchOptions``, with the vendor's limits applied). ``not_this_runs`` says
whether a batch found by its size and creation time is provably this run's.

The backend sets no policy: no waits, no retries, no journal. ``gmai_client.runner.batch.mode`` decides when
to submit, poll and collect, retries through ``retry``, and journals every step in the run folder
before it is taken. The vendors' shared half is ``backends/_batches.py``.

A request that got no answer is an error record of a retryable kind, which ``--retry-errors``
sends again: ``BatchExpired`` (the batch's 24-hour window closed first) and ``BatchCanceled`` (a
cancel stopped it first); a request the vendor answered with an error status is that status's
error, as a live call would raise.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gmai_client.errors import BackendError, RetryableError
from gmai_client.options import BackendOptions, option
from gmai_client.types import Request, Response


class BatchExpired(RetryableError):
    """The batch's 24-hour window closed before this request was processed (nothing was billed)."""

    kind = "batch_expired"


class BatchCanceled(RetryableError):
    """A cancel stopped the batch before this request was processed (nothing was billed)."""

    kind = "batch_canceled"


@dataclass(frozen=True)
class BatchOptions(BackendOptions):
    """The ``-B batch*`` options of a backend with a batch API: none of them changes an answer."""

    batch: bool | None = option(
        None, "send this model's requests through the vendor's batch API (about half price, answers within 24 h)",
        neutral=True, default_text="--batch",
    )  # fmt: skip
    batch_size: int | None = option(
        None, "at most this many requests per batch", minimum=1, neutral=True, default_text="the vendor's limit"
    )
    batch_mb: float | None = option(
        None, "at most this many MiB of requests per batch", above=0, neutral=True, default_text="the vendor's limit"
    )
    batch_queue: int = option(20, "batches of this model in progress at once", minimum=1, neutral=True)
    batch_poll: float = option(
        15.0, "seconds between status polls of a batch (growing to 2 min while nothing changes)", above=0,
        neutral=True,
    )  # fmt: skip


@dataclass(frozen=True)
class BatchSettings:
    """A model's batch options, the vendor's limits applied."""

    enabled: bool | None  # None: the run's --batch decides
    vendor: str  # "openai", "anthropic": whose batch API
    max_requests: int  # per batch
    max_bytes: int  # per batch: its lines as sent (OpenAI's input file, Anthropic's create body)
    queue: int  # batches in progress at once
    poll_s: float  # seconds between polls while a batch progresses


@dataclass(frozen=True)
class BatchStatus:
    """One look at a batch, in vendor-neutral terms."""

    batch_id: str
    vendor_status: str  # the vendor's word: "validating", "in_progress", "ended", "completed", ...
    ended: bool  # no more progress will happen: its results can be read
    total: int  # requests it holds
    processed: int  # requests processed so far (answered or failed), as far as the vendor says
    created_at: float  # the vendor's creation time (Unix seconds)
    failure: BackendError | None = None  # the whole batch failed before processing anything
    queue_full: bool = False  # ...because the vendor's queue was full: the same batch may be created again later
    output_file_id: str | None = None  # OpenAI: where the answers are
    error_file_id: str | None = None  # OpenAI: where the failed requests are
    key: str = ""  # the client's key, where the vendor keeps it with the batch (OpenAI's metadata)


@dataclass(frozen=True)
class BatchResult:
    """One request's outcome in an ended batch: an answer or the error that stands for it."""

    custom_id: str
    response: Response | None = None
    error: BackendError | None = None


class BatchApi(abc.ABC):
    """The batch ability of a backend (a mixin beside ``Backend``)."""

    name: ClassVar[str]

    @abc.abstractmethod
    def batch_settings(self) -> BatchSettings:
        """The model's ``-B batch*`` options with the vendor's limits applied."""

    @abc.abstractmethod
    async def batch_line(self, custom_id: str, request: Request) -> bytes:
        """``request`` as one line of a batch (JSON and a newline), counted as the vendor counts it."""

    @abc.abstractmethod
    async def upload_input(self, spool: Path) -> str:
        """Upload a batch's lines (the file ``spool``) where the vendor wants them first; the file
        id, or "" when the create call carries the requests itself."""

    @abc.abstractmethod
    async def create_batch(self, spool: Path | None, file_id: str, key: str, count: int) -> BatchStatus:
        """Create a batch from the lines in ``spool`` (or the uploaded ``file_id``), tagged with the
        client's ``key`` where the vendor keeps metadata."""

    @abc.abstractmethod
    async def find_batch(self, key: str, count: int, since: float, known: frozenset[str]) -> list[BatchStatus]:
        """The batches a create whose answer was lost may have made: the one tagged ``key`` (its
        ``BatchStatus.key``), or, from a vendor that keeps no metadata, every batch of ``count``
        requests created after ``since`` (allowing for clock skew) and not one of ``known``, the
        nearest to ``since`` first. Which of those is this create's, its results tell
        (``not_this_runs``)."""

    @abc.abstractmethod
    def answered_by_this_model(self, model: str) -> bool:
        """Whether an answer the vendor says ``model`` gave came from this backend's model (a dated
        model id answering for its alias counts)."""

    @abc.abstractmethod
    async def poll_batch(self, batch_id: str) -> BatchStatus:
        """The batch's status now."""

    @abc.abstractmethod
    async def batch_results(self, status: BatchStatus) -> list[BatchResult]:
        """Every result an ended batch holds (a request in none of them was not processed)."""

    @abc.abstractmethod
    async def cancel_batch(self, batch_id: str) -> BatchStatus:
        """Ask the vendor to stop the batch; what it processed so far stays readable."""

    @abc.abstractmethod
    async def delete_input(self, key: str, file_id: str, since: float) -> None:
        """Delete what was uploaded for batch ``key`` (journaled at ``since``) once it has ended or
        will never be created: ``file_id``, and any upload of it whose answer never came (a kill or
        a lost answer during the upload). Nothing to do where the create carries the requests."""

    @abc.abstractmethod
    async def delete_results(self, status: BatchStatus) -> None:
        """Delete an ended batch's result files once its records are written (nothing to do where
        the vendor keeps no files)."""


def batch_api(backend: Any) -> BatchApi | None:
    """``backend`` as a ``BatchApi``, or None when it has no batch API."""
    return backend if isinstance(backend, BatchApi) else None


def not_this_runs(results: list[BatchResult], custom_ids: Collection[str], backend: BatchApi) -> str:
    """Why ``results`` cannot be those of this run's batch of ``custom_ids`` (a request it never
    sent, an answer another model gave), or "" when they can be. What a batch found by its size and
    creation time must pass before a single answer of it is recorded: another run on the same
    account may have made a batch of the same size at the same moment."""
    ours = set(custom_ids)
    for result in results:
        if result.custom_id not in ours:
            return f"it holds a request this run never sent ({result.custom_id!r})"
        model = result.response.model if result.response is not None else ""
        if result.response is not None and not backend.answered_by_this_model(model):
            return f"its answers come from another model ({model!r})"
    return ""


def counts_of(results: list[BatchResult]) -> Mapping[str, int]:
    """How many results were answers and how many errors."""
    answered = sum(1 for result in results if result.response is not None)
    return {"answered": answered, "failed": len(results) - answered}

"""One item asked of one model: the request built from the item, sent through the model's
dispatcher, and what came back (an answer, or the failure) scored into a record.

A failure belongs to its item (an error record), except one that says no later request of the
model can succeed either (a bad key, no quota, an unknown model, a spent budget): ``ModelStopped``,
which leaves the item unrecorded so that a resume sends it again. The loop (``runner``) decides
what to do with either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from gmai_client.errors import BackendError, DataError
from gmai_client.policy.dispatch import Sent
from gmai_client.protocol.scoring import score_answer, score_error
from gmai_client.types import BadRow, Item, Record, Request

#: What sends one request for a model (a ``Dispatcher``'s ``send``).
Send = Callable[[Request], Awaitable[Sent]]


class ModelStopped(Exception):
    """No later request of this model can succeed (bad key, no quota, unknown model, budget spent)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


async def answer(entry: Item | BadRow, label: str, send: Send, ask: Callable[[Item], Request]) -> Record:
    """``entry`` asked of the model ``label`` through ``send`` (``ask`` makes its request): its record."""
    if isinstance(entry, BadRow):
        return score_error(entry, label, DataError(entry.message))
    started = time.monotonic()
    try:
        request = ask(entry)
    except DataError as exc:
        return score_error(entry, label, exc)
    try:
        sent = await send(request)
    except BackendError as exc:
        if exc.stops_model:
            raise ModelStopped(str(exc)) from None
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
        estimated_input_tokens=sent.estimated_input_tokens,
    )


def index_of(entry: Item | BadRow) -> str:
    """The index an entry is recorded under (a bad row's, too)."""
    return entry.index if isinstance(entry, Item) else entry.record_index

"""How a fake batch moves through its states, and what it delivers when it ends.

Owns the schedule (a batch is done ``processing_s`` seconds after creation or after
``processing_polls`` status polls, whichever comes first; both None: at the first look) and the
state machine that follows it:

* OpenAI: ``validating -> in_progress -> finalizing -> completed`` (``expired`` when any request
  expired); ``cancelling -> cancelled``; ``failed`` at the first look when the input file did not
  validate. ``processed`` grows while in progress. On ending, the output file holds the successes,
  the error file the failures: an HTTP error as ``response.status_code`` + ``response.body.error``
  (``error`` null), a request the window closed on as ``response`` null + ``error.code``
  "batch_expired", one a cancel stopped before it ran as ``error.code`` "batch_cancelled" (the
  codes OpenAI's batch request output documents).
* Anthropic: ``in_progress -> ended``, ``canceling -> ended``; each result is succeeded / errored /
  canceled / expired.

Result lines come in a shuffled order (seeded by the batch id), as the vendors warn they may.
Time-based progress counts wall-clock time, so a batch keeps "processing" while the server is down.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Collection, Mapping
from typing import Any

from gmai_client.testing.fake_batch_store import Batch, BatchStore

#: The statuses a batch never leaves.
ENDED = frozenset({"completed", "expired", "cancelled", "failed", "ended"})
# Fractions of an OpenAI batch's processing at which it leaves "validating" and enters "finalizing".
_VALIDATED, _FINALIZING = 0.1, 0.7
_EXPIRED = {
    "code": "batch_expired",
    "message": "This request could not be executed before the completion window expired.",
}
_CANCELLED = {"code": "batch_cancelled", "message": "This request was not executed: the batch was cancelled."}


def draw_fate(
    api: str,
    model: str,
    custom_id: str,
    submission: int,
    *,
    error_ids: Mapping[str, int] | Collection[str],
    error_rate: float,
    expire_ids: Mapping[str, int] | Collection[str],
    expire_rate: float,
    seed: int,
) -> str:
    """The fate of a request's ``submission``-th submission (1, 2, ...): "e" (errors), "x" (expires)
    or "s" (succeeds). Listed custom_ids first, then the rates, drawn with a seeded random number of
    (api, model, custom_id, submission), so a resubmission draws afresh and a rerun draws the same."""
    if _listed(error_ids, custom_id, submission):
        return "e"
    if _listed(expire_ids, custom_id, submission):
        return "x"
    u = random.Random(f"{seed}:{api}:{model}:{custom_id}:{submission}").random()
    if u < error_rate:
        return "e"
    if u < error_rate + expire_rate:
        return "x"
    return "s"


def _listed(ids: Mapping[str, int] | Collection[str], custom_id: str, submission: int) -> bool:
    """Whether ``custom_id``'s ``submission``-th submission is picked: always when ``ids`` is a
    collection holding it, for the first N when ``ids`` maps it to N."""
    if isinstance(ids, Mapping):
        return custom_id in ids and submission <= ids[custom_id]
    return custom_id in ids


def advance(store: BatchStore, batch: Batch, now: float) -> None:
    """Move ``batch`` to the state its schedule says it is in by ``now``, and save any change."""
    before = (batch.status, batch.processed)
    _move(store, batch, now)
    if (batch.status, batch.processed) != before:
        store.save_batch(batch)


def start_cancel(store: BatchStore, batch: Batch, now: float) -> None:
    """Cancel ``batch``: what was processed stays; it ends after ``cancel_polls`` more polls."""
    batch.cancel_processed = batch.processed
    batch.cancel_poll = batch.polls
    batch.status = "cancelling" if batch.api == "openai" else "canceling"
    batch.stamps.setdefault("cancelling_at", now)
    advance(store, batch, now)  # cancel_polls=0: it ends at once


def input_tokens(body: Any) -> int:
    """The input tokens of an answered request (0 for an error body)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0
    return int(usage.get("prompt_tokens", usage.get("input_tokens", 0)))


def _fraction(batch: Batch, now: float) -> float:
    """How far processing has gone: 0 at creation, 1 and above once it is done."""
    parts = []
    if batch.processing_polls is not None:
        parts.append(batch.polls / batch.processing_polls if batch.processing_polls > 0 else math.inf)
    if batch.processing_s is not None:
        parts.append((now - batch.created_at) / batch.processing_s if batch.processing_s > 0 else math.inf)
    return max(parts, default=math.inf)


def _processed(batch: Batch, fraction: float) -> int:
    """Requests processed (in input order) at ``fraction``."""
    if batch.api == "openai":
        if fraction < _VALIDATED:
            return 0
        fraction = (fraction - _VALIDATED) / (_FINALIZING - _VALIDATED)
    return batch.total if fraction >= 1 else math.floor(batch.total * fraction)


def _move(store: BatchStore, batch: Batch, now: float) -> None:
    if batch.status in ENDED:
        return
    if batch.cancel_processed is not None:
        if batch.polls - batch.cancel_poll >= batch.cancel_polls:
            _end(store, batch, now, cancelled=True)
        return
    fraction = _fraction(batch, now)
    batch.processed = _processed(batch, fraction)
    if batch.api == "anthropic":
        if fraction >= 1:
            _end(store, batch, now)
        return
    if batch.errors:
        if fraction > 0:
            batch.status = "failed"
            batch.stamps["failed_at"] = now
        return
    if fraction >= 1:
        _end(store, batch, now)
    elif fraction >= _FINALIZING:
        _enter(batch, "finalizing", now)
    elif fraction >= _VALIDATED:
        _enter(batch, "in_progress", now)


def _enter(batch: Batch, status: str, now: float) -> None:
    batch.status = status
    for phase in ("in_progress", "finalizing")[: 1 + (status == "finalizing")]:
        batch.stamps.setdefault(f"{phase}_at", now)


def _end(store: BatchStore, batch: Batch, now: float, *, cancelled: bool = False) -> None:
    """Decide every request's result, write the result files, and record what was answered."""
    done = batch.cancel_processed if cancelled and batch.cancel_processed is not None else batch.total
    final = []
    for i, fate in enumerate(batch.fates):
        if cancelled:
            final.append(fate if i < done and fate != "x" else "c")
        else:
            final.append("x" if batch.expire_whole else fate)
    batch.final = "".join(final)
    items = store.items(batch)
    order = random.Random(batch.id).sample(range(len(items)), len(items))  # results come in any order
    if batch.api == "openai":
        _end_openai(store, batch, items, order, now, cancelled)
        store.deliver(batch, items)
    else:
        store.deliver(batch, items, [_anthropic_result(items[i], batch.final[i]) for i in order])
        batch.status = "ended"
        batch.stamps["ended_at"] = now


def _end_openai(
    store: BatchStore, batch: Batch, items: list[dict[str, Any]], order: list[int], now: float, cancelled: bool
) -> None:
    if not cancelled:
        _enter(batch, "finalizing", now)
    outputs, errors = [], []
    for i in order:
        item, result = items[i], batch.final[i]
        line = {"id": f"batch_req_{hashlib.sha256(f'{batch.id}:{i}'.encode()).hexdigest()[:24]}",
                "custom_id": item["custom_id"]}  # fmt: skip
        response = {"status_code": item["status"], "request_id": item["request_id"], "body": item["body"]}
        if result in "se":
            (outputs if result == "s" else errors).append({**line, "response": response, "error": None})
        elif result in "xc":
            errors.append({**line, "response": None, "error": dict(_EXPIRED if result == "x" else _CANCELLED)})
    if outputs:
        batch.output_file_id = store.add_result_file(batch, "output", outputs, now)
    if errors:
        batch.error_file_id = store.add_result_file(batch, "error", errors, now)
    succeeded = [items[i] for i in range(len(items)) if batch.final[i] == "s"]
    prompt = sum(input_tokens(item["body"]) for item in succeeded)
    completion = sum(item["body"].get("usage", {}).get("completion_tokens", 0) for item in succeeded)
    batch.usage = {
        "input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }  # fmt: skip
    batch.status = "cancelled" if cancelled else "expired" if "x" in batch.final else "completed"
    batch.stamps[f"{batch.status}_at"] = now


def _anthropic_result(item: dict[str, Any], result: str) -> dict[str, Any]:
    if result == "s":
        return {"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": item["body"]}}
    if result == "e":
        return {"custom_id": item["custom_id"], "result": {"type": "errored", "error": item["body"]}}
    return {"custom_id": item["custom_id"], "result": {"type": "canceled" if result == "c" else "expired"}}

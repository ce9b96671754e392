"""The command-line flags of ``python -m gmai_client.testing.fake_batches`` (see ``fake_batches.main``).

Owns the batch flags (``--state-dir``, ``--batch-polls``, ``--batch-error-id ID[:N]``, ...), added to
every ``fake_api`` flag, and how they become ``FakeBatches`` knobs.
"""

from __future__ import annotations

import argparse
from typing import Any

from gmai_client.testing.fake_batch_wire import (
    ANTHROPIC_MAX_BYTES,
    ANTHROPIC_MAX_REQUESTS,
    OPENAI_MAX_BYTES,
    OPENAI_MAX_REQUESTS,
)


def add_batch_flags(parser: argparse.ArgumentParser) -> None:
    """Add the batch APIs' flags to ``parser`` (``fake_api.build_parser()``, which has ``--seed``)."""
    batch = parser.add_argument_group("batch APIs")
    batch.add_argument("--state-dir", default=None, help="keep files and batches here (a restart resumes them)")
    batch.add_argument("--batch-seconds", type=float, default=None, help="a batch ends this long after creation")
    batch.add_argument("--batch-polls", type=int, default=None, help="a batch ends after this many status polls")
    batch.add_argument("--cancel-polls", type=int, default=1, help="polls a cancelling batch takes to end")
    batch.add_argument(
        "--batch-error-id",
        action="append",
        default=[],
        metavar="ID[:N]",
        help="this custom_id errors (in its first N submissions)",
    )
    batch.add_argument("--batch-error-rate", type=float, default=0.0, help="seeded by --seed, as faults are")
    batch.add_argument("--batch-error-status", type=int, default=500)
    batch.add_argument(
        "--batch-expire-id",
        action="append",
        default=[],
        metavar="ID[:N]",
        help="this custom_id expires (in its first N submissions)",
    )
    batch.add_argument("--batch-expire-rate", type=float, default=0.0)
    batch.add_argument(
        "--expire-batch",
        action="append",
        type=int,
        default=[],
        metavar="N",
        help="the N-th batch created expires as a whole",
    )
    batch.add_argument("--poll-interval", type=float, default=None, help="429 for polls closer than this (s)")
    batch.add_argument("--openai-max-requests", type=int, default=OPENAI_MAX_REQUESTS)
    batch.add_argument("--openai-max-bytes", type=int, default=OPENAI_MAX_BYTES)
    batch.add_argument("--anthropic-max-requests", type=int, default=ANTHROPIC_MAX_REQUESTS)
    batch.add_argument("--anthropic-max-bytes", type=int, default=ANTHROPIC_MAX_BYTES)
    batch.add_argument("--openai-enqueued-tokens", type=int, default=None, help="enqueued input tokens per model")
    batch.add_argument("--anthropic-queue-limit", type=int, default=None, help="requests processing at once")
    batch.add_argument("--clock-skew", type=float, default=0.0, help="the vendor's clock minus ours (s)")


def batch_knobs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``FakeBatches`` keyword arguments the flags in ``args`` ask for."""
    return dict(
        state_dir=args.state_dir, processing_s=args.batch_seconds, processing_polls=args.batch_polls,
        cancel_polls=args.cancel_polls, error_ids=_ids(args.batch_error_id), error_rate=args.batch_error_rate,
        error_status=args.batch_error_status, expire_ids=_ids(args.batch_expire_id),
        expire_rate=args.batch_expire_rate, seed=args.seed, expire_batches=frozenset(args.expire_batch),
        poll_interval=args.poll_interval, openai_max_requests=args.openai_max_requests,
        openai_max_bytes=args.openai_max_bytes, anthropic_max_requests=args.anthropic_max_requests,
        anthropic_max_bytes=args.anthropic_max_bytes, openai_enqueued_tokens=args.openai_enqueued_tokens,
        anthropic_queue_limit=args.anthropic_queue_limit, clock_skew_s=args.clock_skew,
    )  # fmt: skip


def _ids(values: list[str]) -> dict[str, int] | set[str]:
    """``ID`` (every submission) or ``ID:N`` (the first N) flags -> ``error_ids`` / ``expire_ids``."""
    always, first = set(), {}
    for value in values:
        custom_id, _, times = value.rpartition(":")
        if custom_id and times.isdigit():
            first[custom_id] = int(times)
        else:
            always.add(value)
    if always and first:
        raise SystemExit("give every id the same way: all ID or all ID:N")
    return first or always

"""``python -m gmai_client batches collect | cancel | list RUN_DIR``: a ``--batch`` run's batches.

``collect`` runs the folder's saved configuration without sending anything: the batches its journal
holds are followed to their end (``--no-wait``: only those already ended) and their answers
recorded; then the reports are written as after a run, with ``run``'s exit statuses (3 while
batches are still in progress or items were never sent: rerunning the run command sends those).
``cancel`` asks the vendors to stop every batch still in progress (the folder must not be in use);
``list`` prints what the journal holds, asking no vendor.
"""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console
from rich.markup import escape

from gmai_client.api import run
from gmai_client.cli.session import Interrupts, saved_config, say_result
from gmai_client.errors import ConfigError
from gmai_client.results.batch_journal import BatchJournal
from gmai_client.results.rundir import CONFIG_FILE, read_existing_config
from gmai_client.runner.batch.ledger import cancel_batches
from gmai_client.runner.batch.mode import Collect


def cmd_batches(args: argparse.Namespace, console: Console) -> int:
    run_dir = args.run_dir
    who = f"batches {args.action}"
    if args.action == "list":  # the journal alone: no model, no endpoint (one saved redacted is no matter)
        if read_existing_config(run_dir) is None:
            raise ConfigError(f"{who} {run_dir}: no {CONFIG_FILE} there (is it a run folder?)")
        return _list(BatchJournal(run_dir), console)
    config = saved_config(run_dir, who).updated(
        out=run_dir.parent, run_name=run_dir.name, progress=not args.no_progress
    )
    if args.action == "collect":
        result = Interrupts().run(lambda: run(config, console=console, collect=Collect(wait=not args.no_wait)))
        return say_result(result, console)
    canceled = asyncio.run(cancel_batches(config, run_dir))
    if not canceled:
        console.print(f"no batch of {escape(str(run_dir))} is in progress")
    for one in canceled:
        batch = one.batch_id or "(a create that never happened)"
        console.print(f"{escape(one.model)}: batch {escape(batch)} ({one.requests} requests): {escape(one.outcome)}")
    if any(one.outcome == "cancel asked" for one in canceled):
        console.print(
            "what they answered before the cancel is recorded by: python -m gmai_client batches collect "
            f"{escape(str(run_dir))}; the rest become batch_canceled errors (--retry-errors sends them again)",
            soft_wrap=True,
        )
    return 0


def _list(journal: BatchJournal, console: Console) -> int:
    batches = list(journal.read().values())
    console.print(f"{len(batches)} batch(es) in {escape(str(journal.path))}")
    for batch in batches:
        state = batch.state + (" (cancel asked)" if batch.cancel_asked else "")
        note = f": {batch.status}" if batch.status else ""
        console.print(
            f"{escape(batch.model)}  {batch.batch_id or '-'}  {batch.requests} requests, "
            f"{batch.bytes / 2**20:.1f} MiB  {state}{escape(note)}",
            soft_wrap=True,
            highlight=False,
        )
    return 0

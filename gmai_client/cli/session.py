"""What ``run`` and ``batches collect`` share: the configuration a run folder was made with, Ctrl-C
and SIGTERM during a run (the first cancels it, a second quits at once), and what a finished run says
and exits with (the table in ``cli.parser``'s docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape

from gmai_client.api import run_figures
from gmai_client.cli.common import (
    EXIT_EMPTY,
    EXIT_INTERRUPTED,
    EXIT_OF,
    say_error,
)
from gmai_client.config import RunConfig
from gmai_client.errors import ConfigError, GmaiError, redact
from gmai_client.results.batch_journal import BatchJournal
from gmai_client.results.completeness import Completeness, assess
from gmai_client.results.report import terminal_console
from gmai_client.results.rundir import CONFIG_FILE, read_config
from gmai_client.runner.loop import RunResult
from gmai_client.types import Record


def say_result(result: RunResult, console: Console) -> int:
    """What a run (or a collect) left, one line each, and its exit status."""
    completeness = _completeness(result)
    status = EXIT_OF[completeness.verdict]
    folder = escape(str(result.run_dir))
    console.print(f"run folder: {folder}")
    # A model the reports' notices already named with its reason (items left unrecorded) is not named twice.
    told = {m.label for m in completeness.models if m.never_recorded} if result.files else set()
    for outcome in result.outcomes:
        if outcome.stopped and outcome.spec.label not in told:
            console.print(f"[red]{escape(outcome.spec.label)} stopped early:[/] {escape(redact(outcome.stopped))}")
    if result.judge is not None and result.judge.stopped:
        console.print(f"[red]the judge stopped:[/] {escape(redact(result.judge.stopped))}")
    if result.failure:
        say_error(
            f"the run ended early: {result.failure}. Everything recorded is kept in {result.run_dir}; "
            f"rerun the same command (or --resume {result.run_dir}) once it is fixed"
        )
    _say_open_batches(result.run_dir, folder, console)
    if result.interrupted:
        console.print(
            f"[yellow]interrupted: finished items are saved; resume with: "
            f"python -m gmai_client run --resume {folder}[/]"
        )
        return status
    _say_errored_items(result, folder)
    if status == EXIT_EMPTY:
        terminal_console(stderr=True).print(
            "[yellow]warning:[/] no item was selected (a data file without rows, or a --select that matches "
            "nothing): nothing was evaluated",
            highlight=False,
            soft_wrap=True,
        )
    return status


def _say_open_batches(run_dir: Path, folder: str, console: Console) -> None:
    """Batches still in progress at the vendor (paid for, answering on), or ended with their results
    unread: how to collect (or cancel) them."""
    try:
        open_batches = BatchJournal(run_dir).open_batches()
    except (GmaiError, OSError):
        return
    running = [b for b in open_batches if not b.ended]
    if running:
        items = sum(b.requests for b in running)
        console.print(
            f"[yellow]{len(running)} batch(es) of {items} request(s) are still in progress at the vendor[/] "
            f"(they keep running and are paid for): collect them with python -m gmai_client batches collect "
            f"{folder} (or rerun the same command); cancel them with python -m gmai_client batches cancel {folder}",
            soft_wrap=True,
        )
    unread = [b for b in open_batches if b.ended]
    if unread:
        items = sum(b.requests for b in unread)
        console.print(
            f"[yellow]{len(unread)} batch(es) of {items} request(s) have ended at the vendor but their results "
            f"could not be read[/] (they are paid for): read them with python -m gmai_client batches collect "
            f"{folder} (or rerun the same command)",
            soft_wrap=True,
        )


def _say_errored_items(result: RunResult, folder: str) -> None:
    """Per model, how many items ended in an error, the first error, and what fixes them: sending
    them again (``--retry-errors``), or, where the data file holds a row or image wrong, correcting
    the file (sending again can never fix that; a corrected row is read and sent again)."""
    errored: dict[tuple[str, bool], list[Record]] = {}
    for record in result.records:
        if record.status == "error":
            errored.setdefault((record.model, record.is_data_error), []).append(record)
    for (label, bad_data), records in errored.items():
        example = redact(records[0].error or "")
        example = example if len(example) <= 200 else example[:197] + "..."
        if bad_data:
            said = (
                f"[yellow]{escape(label)}: {len(records)} item(s) could not be read from the data[/] (the first: "
                f"{escape(example)}); sending them again cannot fix that: correct the data file, then run the "
                "same command again (a corrected row is read and sent again)"
            )
        else:
            said = (
                f"[yellow]{escape(label)}: {len(records)} item(s) ended in an error[/] (the first: {escape(example)}); "
                f"send them again with: python -m gmai_client run --resume {folder} --retry-errors"
            )
        terminal_console(stderr=True).print(said, highlight=False, soft_wrap=True)


def _completeness(result: RunResult) -> Completeness:
    """What became of the run: its ``verdict`` is the exit status (the table in ``cli``'s docstring),
    the same as ``report`` of its folder gives."""
    labels = [outcome.spec.label for outcome in result.outcomes]
    return assess(result.records, run_figures(result), labels)


def saved_config(run_dir: Path, who: str) -> RunConfig:
    """The configuration a run folder was made with (``who`` names the option or command in errors)."""
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{who} {run_dir}: no {CONFIG_FILE} there (is it a run folder?)")
    document = read_config(run_dir)
    if document is None:
        raise ConfigError(f"{who}: {run_dir / CONFIG_FILE} is unreadable (not a JSON object with a config)")
    try:
        return RunConfig.from_dict(document.config)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{who}: {run_dir / CONFIG_FILE} is unreadable: {exc}") from None


class Interrupts:
    """Ctrl-C and SIGTERM during a run, alike.

    The first cancels the run, which keeps what finished, writes partial metrics and returns
    ``interrupted``. A second one quits at once, with one line and no traceback: asyncio's own
    answer to a second Ctrl-C is a KeyboardInterrupt raised wherever Python happens to be (in an
    import, a finaliser, the loop's shutdown), which prints tracebacks and can leave the loop half
    closed. Quitting loses nothing recorded: records.jsonl is written and flushed item by item, the
    folder lock dies with the process and the cache's SQLite journal rolls back an open write; only
    the metrics are left to ``report RUN_DIR``. A signal the shell set to be ignored (a background
    job's SIGINT) stays ignored.
    """

    def __init__(self) -> None:
        self.received = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.received += 1
        loop, task = self.loop, self.task
        if self.received == 1 and loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)  # the run's own Ctrl-C path
            return
        if self.received == 1:
            raise KeyboardInterrupt  # outside the run (starting or printing): Python's own behaviour
        _quit_now()

    def run(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        async def attached() -> Any:
            self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
            try:
                return await make()
            finally:
                self.loop = self.task = None

        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    previous[signum] = signal.signal(signum, self)
        try:
            return asyncio.run(attached())
        except asyncio.CancelledError:  # interrupted before the run could catch it (opening the data)
            raise KeyboardInterrupt from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _quit_now() -> NoReturn:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.write(
            "\ninterrupted again: quit at once. The items finished so far are saved (records.jsonl is written "
            "item by item): rerun the same command to resume; `python -m gmai_client report RUN_DIR` writes "
            "the metrics\n"
        )
        sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)

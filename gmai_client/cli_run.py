"""``python -m gmai_client run``: the configuration from the command line (or ``--resume``), the
run through ``api.run`` with the terminal as its console, what went wrong said in one line each,
and the exit status (the table in ``cli``'s docstring).

Options of ``run`` default to "not given" (None): a new run fills them from the defaults
(written once, in ``config``); ``--resume RUN_DIR`` runs the saved configuration, takes the pace
and patience options given here as stated overrides (``config.POLICY_FIELDS``) and refuses any
other option that differs from the saved run.

Ctrl-C and SIGTERM are alike (``_Interrupts``): the first cancels the run, which keeps what
finished and writes partial metrics; a second quits at once. Batches a ``--batch`` run sent keep
running at the vendor: whenever a run ends with batches still in progress, the commands that
collect and cancel them are printed.
"""

from __future__ import annotations

import argparse
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

from gmai_client.api import run, run_figures
from gmai_client.backends.families import use_model_families
from gmai_client.batch_journal import BatchJournal
from gmai_client.cli_common import (
    EXIT_EMPTY,
    EXIT_INTERRUPTED,
    EXIT_OF,
    read_template,
    sampling_params,
    say_error,
)
from gmai_client.completeness import Completeness, assess
from gmai_client.config import POLICY_FIELDS, ModelSpec, RunConfig, parse_model_spec, run_default
from gmai_client.errors import ConfigError, GmaiError, redact
from gmai_client.options import text_or_file
from gmai_client.report import terminal_console
from gmai_client.rundir import CONFIG_FILE, read_config
from gmai_client.runner import RunResult
from gmai_client.types import Record


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    if args.judge_options and not args.judge:
        raise ConfigError("-J options need a --judge SPEC")
    if args.model_families is not None:
        use_model_families(args.model_families)
    config = resumed_config(args) if args.resume is not None else new_config(args)
    if args.dry_run:
        from gmai_client.cli_plan import print_plan

        return print_plan(config, args.prices, console)
    result: RunResult = _Interrupts().run(lambda: run(config, console=console))
    return say_result(result, console)


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


# --- the configuration ------------------------------------------------------------------------

#: argparse destinations that are RunConfig fields of the same flat name and need no conversion.
_PLAIN_FIELDS = (
    "rules",
    "concurrency",
    "limit",
    "seed",
    "out",
    "run_name",
    "data_dir",
    "rpm",
    "tpm",
    "max_attempts",
    "attempt_timeout",
    "item_deadline",
    "max_errors",
    "token_budget",
    "cache",
    "cache_path",
    "executor",
    "ray_address",
    "retry_errors",
    "batch",
)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The fields (by flat name) this command line gives; sampling parameters apart."""
    given: dict[str, Any] = {name: getattr(args, name) for name in _PLAIN_FIELDS if getattr(args, name) is not None}
    if args.models:
        given["models"] = tuple(parse_model_spec(spec, options) for spec, options in args.models)
    if args.data:
        given["data"] = tuple(args.data)
    if args.select:
        given["select"] = tuple(args.select)
    if args.template is not None:
        given["template"] = read_template(args.template)
    if args.system_prompt is not None:
        given["system_prompt"] = text_or_file(args.system_prompt, "--system-prompt")
    if args.judge:
        given["judge"] = parse_model_spec(args.judge, args.judge_options or [])
    if args.multi_answer_prompt:
        given["multi_answer_instruction"] = True
    if args.no_progress:
        given["progress"] = False
    return given


def new_config(args: argparse.Namespace) -> RunConfig:
    given = _given(args)
    params = sampling_params(args, seed=given.get("seed", run_default("seed")))
    return RunConfig.from_flat(**given, params=params)


#: How the messages name a field: the option that sets it.
_FLAGS = {
    "models": "--model/-B",
    "cache": "--cache/--no-cache",
    "judge": "--judge/-J",
    "params": "--temperature",
    "multi_answer_instruction": "--multi-answer-prompt",
    "system_prompt": "--system-prompt",
    "batch": "--batch/--no-batch",
}


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def resumed_config(args: argparse.Namespace) -> RunConfig:
    """The saved configuration of RUN_DIR. Pace and patience options given here override it (and
    say so); any other option given here must agree with it (a larger --limit extends the run)."""
    saved = saved_config(args.resume, "--resume")
    overrides, notes, conflicts = _against_saved(saved, _given(args), args)
    if conflicts:
        raise ConfigError(
            f"--resume {args.resume} runs its saved configuration, and this command differs from it: "
            + "; ".join(conflicts)
            + ". Drop those options, or start a new run without --resume"
        )
    console = terminal_console(stderr=True)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    # `--resume .` or `--resume ..` names the folder by a path, not by its own name.
    folder = args.resume if args.resume.name not in ("", ".", "..") else args.resume.resolve()
    return saved.updated(
        out=folder.parent,
        run_name=folder.name,
        retry_errors=bool(args.retry_errors),
        progress=not args.no_progress,
        **{k: v for k, v in overrides.items() if k not in ("retry_errors", "progress")},
    )


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


def _against_saved(
    saved: RunConfig, given: dict[str, Any], args: argparse.Namespace
) -> tuple[dict[str, Any], list[str], list[str]]:
    """(the overrides to apply, the notes that say so, the conflicts that refuse the resume)."""
    before_all = saved.flat()
    overrides: dict[str, Any] = {}
    notes: list[str] = []
    conflicts = [f"{_flag(name)} (--resume names the run folder)" for name in ("out", "run_name") if name in given]
    for name, value in given.items():
        before = before_all[name]
        if name in ("out", "run_name"):
            continue
        if name in POLICY_FIELDS:
            if name not in ("retry_errors", "progress") and value != before:
                notes.append(f"{_flag(name)} {_shown(value)} overrides the saved {_shown(before)}")
            overrides[name] = value
        elif name == "limit":
            if before is not None and value > before:
                notes.append(f"--limit {value} extends the saved run's {before} items")
                overrides[name] = value
            elif value != before:
                conflicts.append(f"--limit {value} (the saved run has {_shown(before)}; a limit may only grow)")
        elif name == "template" and value != before:
            conflicts.append("--template (its text differs from the saved run's template)")
        elif _comparable(name, value) != _comparable(name, before):
            conflicts.append(f"{_flag(name)} {_shown(value)} (the saved run has {_shown(before)})")
    for name in ("temperature", "max_tokens"):
        value, before = getattr(args, name), getattr(saved.protocol.params, name)
        if value is not None and value != before:
            conflicts.append(f"--{name.replace('_', '-')} {value:g} (the saved run has {before:g})")
    return overrides, notes, conflicts


def _comparable(name: str, value: Any) -> Any:
    """A field's value as compared with the saved run (same files written two ways are equal)."""
    if name == "data":
        return tuple(str(Path(spec).resolve()) if Path(spec).exists() else spec for spec in value)
    if name == "data_dir":
        return str(Path(value).expanduser().resolve()) if value is not None else None
    if name == "models":  # by the identity's name for each model, not its (default) label
        return tuple({**spec.as_dict(), "label": spec.key, "written": ""} for spec in value)
    if name == "judge":
        return value.as_dict() if value is not None else None
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ", ".join(_shown(item) for item in value) or "none"
    if isinstance(value, ModelSpec):
        saved = value.as_dict()  # secret-looking options redacted
        return saved["label"] + "".join(f" -B {key}={option}" for key, option in sorted(saved["options"].items()))
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- Ctrl-C and SIGTERM ----------------------------------------------------------------------


class _Interrupts:
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

"""Command line: ``python -m gmai_client run | tree | report | backends | cache``.

Exit status of ``run`` (what a CI job reads; everything done is written whatever the status):

    0    every selected item of every model has a record that is not an error
    2    a usage error, found before anything is sent: a bad option or value, a missing file, an
         unknown tree name or backend option, a run folder that holds another run or is in use
    3    stopped by a fatal error: a model stopped early (bad key 401/403, unknown model 404,
         exhausted quota, unreachable endpoint, unreadable replay file, --max-errors, the token
         budget), the judge stopped, or the whole run ended early (a full disk, unreadable data)
    4    finished, but some items ended in an error (``--resume RUN_DIR --retry-errors`` sends them again)
    5    nothing was evaluated: no item was selected (a header-only file, a --select that matches nothing)
    130  interrupted (Ctrl-C or SIGTERM): finished items are saved, the metrics cover them

A higher-listed status wins (3 over 4 over 5). Every message the user can act on is one line,
never a traceback; any text that may carry vendor output goes through ``errors.redact``.

Options of ``run`` default to "not given" (None): a new run fills them from ``RunConfig``'s
defaults (written once, in ``config``); ``--resume RUN_DIR`` runs the saved configuration, takes
the pace and patience options given here as stated overrides (``config.POLICY_FIELDS``) and
refuses any other option that differs from the saved run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from gmai_client.config import (
    DEFAULT_DATA,
    MAX_CONCURRENCY,
    POLICY_FIELDS,
    ModelSpec,
    RunConfig,
    parse_model_spec,
    run_default,
)
from gmai_client.errors import ConfigError, GmaiError, redact
from gmai_client.report import terminal_console
from gmai_client.types import SamplingParams

#: The exit-status table of this module's docstring, shown by ``run --help``.
_EXIT_STATUS_HELP = (__doc__ or "")[(__doc__ or "").find("Exit status") : (__doc__ or "").find("A higher-listed")]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_ERRORS = 4
EXIT_EMPTY = 5
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the multi-line usage block buries the message."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (--help lists the options)\n")


class _ModelAction(argparse.Action):
    """``--model SPEC`` starts a model; ``-B key=value`` options that follow belong to it."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        models = list(getattr(namespace, "models", None) or [])
        if option_string in ("--model", "-m"):
            models.append([values, []])
        else:
            if not models:
                parser.error("-B key=value must follow the --model it applies to")
            models[-1][1].append(values)
        namespace.models = models


# --- option values: each checked where it is typed, with the reason in the message ----------------


def _number(text: str, kind: Callable[[str], Any]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {'a whole number' if kind is int else 'a number'}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _int(text: str) -> int:
    return _number(text, int)


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _temperature(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _concurrency(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(
            f"must be between 1 and {MAX_CONCURRENCY} (items in flight per model; more only fills memory), got {text}"
        )
    return value


def _limit(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (--limit {text} would evaluate nothing)")
    return value


def _default(name: str) -> str:
    value = run_default(name)
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m gmai_client", description="GMAI-MMBench evaluation client")
    commands = parser.add_subparsers(dest="command")

    params = run_default("params")
    run = commands.add_parser(
        "run",
        help="evaluate models (default: random baseline on the bundled sample)",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_data_options(run)
    run.add_argument(
        "--model",
        "-m",
        dest="models",
        action=_ModelAction,
        metavar="SPEC",
        help="backend[:target][@endpoint], repeatable (default: random)",
    )
    run.add_argument(
        "-B",
        dest="models",
        action=_ModelAction,
        metavar="KEY=VALUE",
        help="an option of the preceding --model (see `backends`)",
    )
    run.add_argument(
        "--concurrency", "-c", type=_concurrency, help=f"in-flight items per model (default {_default('concurrency')})"
    )
    run.add_argument("--limit", "-n", type=_limit, help="first N selected items only")
    run.add_argument(
        "--seed", type=_int, help=f"seed of the random baseline and of sampling backends (default {_default('seed')})"
    )
    run.add_argument("--out", type=Path, help=f"folder of run folders (default ./{_default('out')})")
    run.add_argument("--run-name", help="run folder name (default: the model labels and a hash of the configuration)")
    run.add_argument("--template", help="prompt template file ({hint} {question} {options} {instruction})")
    run.add_argument("--temperature", type=_temperature, help=f"(default {params.temperature:g})")
    run.add_argument("--max-tokens", type=_positive_int, help=f"(default {params.max_tokens})")
    run.add_argument("--retry-errors", action="store_true", default=None, help="send errored items again")
    run.add_argument("--no-progress", action="store_true", help="no progress display")
    run.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue that run with its saved configuration"
    )
    run.add_argument("--judge", metavar="SPEC", help="LLM judge for answers no rule can read (e.g. openai:gpt-4o-mini)")
    run.add_argument("-J", dest="judge_options", action="append", metavar="KEY=VALUE", help="judge option")
    limits = run.add_argument_group(
        "rate limits, retries, cache and budgets (pace and patience: given with --resume, they override the saved run)"
    )
    limits.add_argument(
        "--rpm", type=_positive_float, help="requests per minute per endpoint (-B rpm= per model; default: no limit)"
    )
    limits.add_argument(
        "--tpm", type=_positive_float, help="tokens per minute per endpoint (-B tpm= per model; default: no limit)"
    )
    limits.add_argument(
        "--max-attempts",
        type=_positive_int,
        help=f"attempts per item on retryable errors (default {_default('max_attempts')})",
    )
    limits.add_argument("--attempt-timeout", type=_positive_float, help="seconds per attempt (default: the backend's)")
    limits.add_argument(
        "--item-deadline",
        type=_positive_float,
        help=f"seconds per item, all attempts and waits (default {_default('item_deadline')})",
    )
    limits.add_argument(
        "--max-errors",
        type=_positive_float,
        help="stop a model after N failed items, or a fraction of finished items such as 0.2",
    )
    limits.add_argument("--token-budget", type=_positive_int, help="stop the run after this many tokens")
    limits.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        help="read and write the response cache (default: yes; --no-cache: neither)",
    )
    limits.add_argument("--cache-path", type=Path, help="response cache file (default: user cache dir)")
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        help=f"ray: torch models run on Ray actors (default {_default('executor')})",
    )
    run.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start one)")

    tree = commands.add_parser("tree", help="browse the lexical tree with item counts from the data")
    _add_data_options(tree)
    tree.add_argument("--view", default=None, help="only this view (task, department, granularity)")
    tree.add_argument("--depth", type=int, default=2, help="1 categories, 2 + modalities, 3 + leaf labels")
    tree.add_argument("--all", action="store_true", help="also show nodes with no items in the data")

    report = commands.add_parser("report", help="re-render a run folder's metrics and tables (no model calls)")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--rescore", action="store_true", help="re-apply answer extraction to the raw answers")
    report.add_argument("--reference", default=None, help="model label the deltas are taken against")

    commands.add_parser("backends", help="list backends, whether installed, and their options")

    cache = commands.add_parser("cache", help="inspect or clear the response cache")
    cache.add_argument("action", choices=("stats", "explain", "clear"))
    cache.add_argument("--cache-path", type=Path, default=None, help="cache file (default: user cache dir)")
    cache.add_argument("--model", "-m", dest="models", action=_ModelAction, metavar="SPEC", help="explain: the model")
    cache.add_argument("-B", dest="models", action=_ModelAction, metavar="KEY=VALUE", help="explain: its options")
    cache.add_argument("--index", default=None, help="explain: the item index")
    cache.add_argument("--template", default=None, help="explain: the run's prompt template file")
    cache.add_argument("--temperature", type=_temperature, help=f"explain: the run's (default {params.temperature:g})")
    cache.add_argument("--max-tokens", type=_positive_int, help=f"explain: the run's (default {params.max_tokens})")
    cache.add_argument("--seed", type=_int, help=f"explain: the run's (default {_default('seed')})")
    cache.add_argument("--data", "-d", nargs="+", action="extend", default=None, metavar="PATH")
    cache.add_argument("--data-dir", type=Path, default=None)
    cache.add_argument("--only-model", default=None, help="clear: only entries of this model name")
    return parser


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        "-d",
        nargs="+",
        action="extend",
        default=None,
        metavar="PATH",
        help="TSV file(s), a folder, GMAI-MMBench_VAL / _TEST, or `sample` (default)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="where named splits live (default: XDG data dir)")
    parser.add_argument(
        "--select",
        "-s",
        action="append",
        default=None,
        metavar="EXPR",
        help="lexical-tree selection, e.g. 'department=Ophthalmology & modality=Fundus Photography'",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = terminal_console()
    try:
        if args.command in (None, "run"):
            if args.command is None:
                args = parser.parse_args(["run", *(argv if argv is not None else sys.argv[1:])])
            return _cmd_run(args, console)
        if args.command == "tree":
            return _cmd_tree(args, console)
        if args.command == "report":
            return _cmd_report(args, console)
        if args.command == "backends":
            return _cmd_backends(console)
        if args.command == "cache":
            return _cmd_cache(args, console)
    except GmaiError as exc:
        _say_error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        # A second Ctrl-C (or SIGTERM) while the first was being handled, or one before the run
        # started: records.jsonl is flushed item by item, so what finished is on disk.
        _say_error(
            "stopped at once. The items finished so far are saved (records.jsonl is written item by item): "
            "rerun the same command to resume; `python -m gmai_client report RUN_DIR` redoes the metrics",
            label="interrupted",
        )
        return EXIT_INTERRUPTED
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _say_error(message: str, *, label: str = "error") -> None:
    text = escape(redact(message))  # "[Errno 2]" in a message is text, not markup
    terminal_console(stderr=True).print(f"[red]{label}:[/] {text}", highlight=False, soft_wrap=True)


# --- run --------------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from gmai_client.runner import run

    if args.judge_options and not args.judge:
        raise ConfigError("-J options need a --judge SPEC")
    config = _resumed_config(args) if args.resume is not None else _new_config(args)
    result = _Interrupts().run(lambda: run(config))
    status = exit_status(result)
    folder = escape(str(result.run_dir))
    console.print(f"run folder: {folder}")
    say = terminal_console(stderr=True)
    for outcome in result.outcomes:
        if outcome.stopped:
            console.print(f"[red]{escape(outcome.spec.label)} stopped early:[/] {escape(redact(outcome.stopped))}")
    if result.judge is not None and result.judge.stopped:
        console.print(f"[red]the judge stopped:[/] {escape(redact(result.judge.stopped))}")
    if result.failure:
        _say_error(
            f"the run ended early: {result.failure}. Everything recorded is kept in {result.run_dir}; "
            f"rerun the same command (or --resume {result.run_dir}) once it is fixed"
        )
    if result.interrupted:
        console.print(
            f"[yellow]interrupted: finished items are saved; resume with: "
            f"python -m gmai_client run --resume {folder}[/]"
        )
        return status
    errored = Counter(r.model for r in result.records if r.status == "error")
    first = {}
    for record in result.records:
        if record.status == "error":
            first.setdefault(record.model, record.error)
    for label, n in errored.items():
        example = redact(first[label] or "")
        example = example if len(example) <= 200 else example[:197] + "..."
        say.print(
            f"[yellow]{escape(label)}: {n} item(s) ended in an error[/] (the first: {escape(example)}); "
            f"send them again with: python -m gmai_client run --resume {folder} --retry-errors",
            highlight=False,
            soft_wrap=True,
        )
    if status == EXIT_EMPTY:
        say.print(
            "[yellow]warning:[/] no item was selected (a data file without rows, or a --select that matches "
            "nothing): nothing was evaluated",
            highlight=False,
            soft_wrap=True,
        )
    return status


def exit_status(result: Any) -> int:
    """The ``run`` exit status of a ``RunResult`` (the table in this module's docstring)."""
    if result.interrupted:
        return EXIT_INTERRUPTED
    judge_stopped = result.judge is not None and bool(result.judge.stopped)
    if result.failure or judge_stopped or any(outcome.stopped for outcome in result.outcomes):
        return EXIT_STOPPED
    if any(record.status == "error" for record in result.records):
        return EXIT_ERRORS
    if not result.records:
        return EXIT_EMPTY
    return EXIT_OK


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


def _read_template(path_text: str, option: str = "--template") -> str:
    path = Path(path_text)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{option} {path}: is a directory, not a template file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{option} {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot be read ({exc.strerror or exc})") from None


#: argparse destinations that are RunConfig fields of the same name and need no conversion.
_PLAIN_FIELDS = (
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
)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields this command line gives (sampling parameters apart: see ``_params``)."""
    given: dict[str, Any] = {name: getattr(args, name) for name in _PLAIN_FIELDS if getattr(args, name) is not None}
    if args.models:
        given["models"] = tuple(parse_model_spec(spec, options) for spec, options in args.models)
    if args.data:
        given["data"] = tuple(args.data)
    if args.select:
        given["select"] = tuple(args.select)
    if args.template is not None:
        given["template"] = _read_template(args.template)
    if args.judge:
        given["judge"] = parse_model_spec(args.judge, args.judge_options or [])
    if args.no_progress:
        given["progress"] = False
    return given


def _new_config(args: argparse.Namespace) -> RunConfig:
    given = _given(args)
    defaults: SamplingParams = run_default("params")
    params = SamplingParams(
        temperature=args.temperature if args.temperature is not None else defaults.temperature,
        max_tokens=args.max_tokens if args.max_tokens is not None else defaults.max_tokens,
        seed=given.get("seed", run_default("seed")),  # sampling backends draw with the run's seed
    )
    return RunConfig(**given, params=params)


#: How the messages name a RunConfig field: the option that sets it.
_FLAGS = {"models": "--model/-B", "cache": "--cache/--no-cache", "judge": "--judge/-J", "params": "--temperature"}


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _resumed_config(args: argparse.Namespace) -> RunConfig:
    """The saved configuration of RUN_DIR. Pace and patience options given here override it (and
    say so); any other option given here must agree with it (a larger --limit extends the run)."""
    import json
    from dataclasses import replace

    from gmai_client.rundir import CONFIG_FILE

    path = args.resume / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"--resume {args.resume}: no {CONFIG_FILE} there (is it a run folder?)")
    try:
        saved = RunConfig.from_dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--resume: {path} is unreadable: {exc}") from None

    given = _given(args)
    conflicts: list[str] = []
    overrides: dict[str, Any] = {}
    notes: list[str] = []
    for name in ("out", "run_name"):
        if name in given:
            conflicts.append(f"{_flag(name)} (--resume names the run folder)")
            given.pop(name)
    for name, value in given.items():
        before = getattr(saved, name)
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
        value, before = getattr(args, name), getattr(saved.params, name)
        if value is not None and value != before:
            conflicts.append(f"--{name.replace('_', '-')} {value:g} (the saved run has {before:g})")
    if conflicts:
        raise ConfigError(
            f"--resume {args.resume} runs its saved configuration, and this command differs from it: "
            + "; ".join(conflicts)
            + ". Drop those options, or start a new run without --resume"
        )
    console = terminal_console(stderr=True)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    return replace(
        saved,
        out=args.resume.parent,
        run_name=args.resume.name,
        retry_errors=bool(args.retry_errors),
        progress=not args.no_progress,
        **{k: v for k, v in overrides.items() if k not in ("retry_errors", "progress")},
    )


def _comparable(name: str, value: Any) -> Any:
    """A field's value as compared with the saved run (same files written two ways are equal)."""
    if name == "data":
        return tuple(str(Path(spec).resolve()) if Path(spec).exists() else spec for spec in value)
    if name == "data_dir":
        return str(Path(value).expanduser().resolve()) if value is not None else None
    if name == "models":
        return tuple(spec.as_dict() for spec in value)
    if name == "judge":
        return value.as_dict() if value is not None else None
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ", ".join(_shown(item) for item in value) or "none"
    if isinstance(value, ModelSpec):
        saved = value.as_dict()  # secret-looking options redacted
        return saved["label"] + "".join(f" -B {key}={option}" for key, option in sorted(saved["options"].items()))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cmd_cache(args: argparse.Namespace, console: Console) -> int:
    from gmai_client.cache import ResponseCache

    cache = ResponseCache(args.cache_path)
    try:
        if args.action == "stats":
            stats = cache.stats()
            console.print(f"cache: {escape(str(stats.path))}")
            console.print(f"entries: {stats.entries:,}  size: {stats.bytes / 1e6:.1f} MB")
            table = Table("backend", "model", "entries")
            for backend, model, n in stats.by_model:
                table.add_row(backend, model, f"{n:,}")
            console.print(table)
        elif args.action == "clear":
            deleted = cache.clear(model=args.only_model)
            console.print(f"deleted {deleted:,} entries from {escape(str(cache.path))}")
        else:
            return _explain(args, cache, console)
    finally:
        cache.close()
    return 0


def _explain(args: argparse.Namespace, cache, console: Console) -> int:
    """Why an item of a model hits or misses: which key fields differ from what is stored."""
    from datetime import datetime

    from gmai_client import registry
    from gmai_client.cache import key_fields
    from gmai_client.dataset import iter_items, open_dataset
    from gmai_client.prompt import build_request
    from gmai_client.splits import resolve_data
    from gmai_client.types import Item

    if not args.models or len(args.models) != 1 or args.index is None:
        raise GmaiError("cache explain needs one --model SPEC and --index INDEX (plus the run's --data)")
    spec = parse_model_spec(*args.models[0])
    seed = args.seed if args.seed is not None else run_default("seed")
    backend = registry.create(spec, seed=seed)
    files = open_dataset(resolve_data(args.data or DEFAULT_DATA, data_dir=args.data_dir))
    item = next((e for e in iter_items(files) if isinstance(e, Item) and e.index == args.index), None)
    if item is None:
        raise GmaiError(f"no item with index {args.index!r} in {', '.join(str(f.path) for f in files)}")
    template = _read_template(args.template) if args.template else None
    defaults: SamplingParams = run_default("params")
    params = SamplingParams(
        temperature=args.temperature if args.temperature is not None else defaults.temperature,
        max_tokens=args.max_tokens if args.max_tokens is not None else defaults.max_tokens,
        seed=seed,
    )
    fields = key_fields(backend.identity(), build_request(item, template=template, params=params))
    hit, differences = cache.explain(fields, item.index)
    if hit:
        console.print(f"item {escape(item.index)} for {escape(spec.label)}: [green]hit[/]")
        return 0
    console.print(f"item {escape(item.index)} for {escape(spec.label)}: [yellow]miss[/]")
    if not differences:
        console.print("nothing is cached for this item index (never answered with this cache)")
    for difference in differences:
        when = datetime.fromtimestamp(difference.created).isoformat(timespec="seconds")
        console.print(f"  entry of {when} differs in: {', '.join(difference.fields)}")
    return 0


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from gmai_client.report import render

    written = render(args.run_dir, rescore_answers=args.rescore, console=console, reference=args.reference)
    console.print("wrote: " + escape(", ".join(written)))
    return 0


def _cmd_tree(args: argparse.Namespace, console: Console) -> int:
    from gmai_client.dataset import iter_items, open_dataset
    from gmai_client.select import FIELDS, VIEW_OF_FIELD, load_tree, parse_selection
    from gmai_client.splits import resolve_data
    from gmai_client.types import Item

    tree = load_tree()
    selection = parse_selection(args.select)
    files = open_dataset(resolve_data(args.data or DEFAULT_DATA, data_dir=args.data_dir))
    counts: Counter[tuple[str, ...]] = Counter()
    total = 0
    for entry in iter_items(files):
        if not isinstance(entry, Item) or not selection.matches(entry):
            continue
        total += 1
        for field, view in VIEW_OF_FIELD.items():
            category = getattr(entry, field)
            counts[(view, category)] += 1
            counts[(view, category, entry.modality)] += 1
            counts[(view, category, entry.modality, entry.category)] += 1

    views = list(VIEW_OF_FIELD.values())
    if args.view:
        from gmai_client.select import _ALIASES

        field = _ALIASES.get(args.view.lower())
        if field not in VIEW_OF_FIELD:
            raise GmaiError(f"--view must be one of {', '.join(f for f in FIELDS if f in VIEW_OF_FIELD)}")
        views = [VIEW_OF_FIELD[field]]
    root = Tree(f"GMAI-MMBench lexical tree — {total} items in {', '.join(str(f.path) for f in files)}")
    for view in views:
        view_node = root.add(f"[bold]{view}[/]")
        for category, modalities in sorted(tree.views[view].items()):
            n = counts[(view, category)]
            if not n and not args.all:
                continue
            cat_node = view_node.add(_node_label(category, n))
            if args.depth < 2:
                continue
            for modality, labels in sorted(modalities.items()):
                m = counts[(view, category, modality)]
                if not m and not args.all:
                    continue
                mod_node = cat_node.add(_node_label(modality, m))
                if args.depth < 3:
                    continue
                for label in labels:
                    k = counts[(view, category, modality, label)]
                    if k or args.all:
                        mod_node.add(_node_label(label, k))
    console.print(root)
    return 0


def _node_label(name: str, n: int) -> str:

    return f"{escape(name)} [cyan]({n})[/]" if n else f"[dim]{escape(name)} (0)[/]"


def _cmd_backends(console: Console) -> int:
    from gmai_client.registry import POLICY_OPTIONS, describe

    every = ", ".join(["label", *POLICY_OPTIONS])
    table = Table(
        title="backends (`--model NAME:...`, options with `-B key=value`)", caption=f"every model also takes: {every}"
    )
    for column in ("name", "installed", "options", "about"):
        table.add_column(column, overflow="fold")
    for info in describe():
        options = "\n".join(f"{k}: {v}" for k, v in info.options.items())
        table.add_row(info.name, "yes" if info.available else f"no — {info.problem}", options, info.doc)
    console.print(table)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Command line: ``python -m gmai_client COMMAND``, one module a command.

``main`` parses the options (``cli.parser``, whose docstring holds the exit-status table) and hands the
command to its module, imported only then (``backends`` starts without what ``run`` imports):
``cli.run`` (run, and plan as ``run --dry-run``), ``cli.plan``, ``cli.batches``, ``cli.tree``, ``cli.report``,
``cli.compare``, ``cli.runs``, ``cli.backends``, ``cli.cache``. What ``run`` and ``batches collect`` share is
in ``cli.session``.
Every message the user can act on is one line, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from gmai_client.cli.common import (
    EXIT_EMPTY,
    EXIT_ERRORS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_USAGE,
    say_error,
)
from gmai_client.cli.parser import build_parser
from gmai_client.errors import GmaiError
from gmai_client.results.report import terminal_console

__all__ = [
    "EXIT_EMPTY",
    "EXIT_ERRORS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

#: command -> (module, function taking the parsed arguments and a console, returning the exit status)
COMMANDS = {
    "run": ("gmai_client.cli.run", "cmd_run"),
    "plan": ("gmai_client.cli.run", "cmd_run"),
    "batches": ("gmai_client.cli.batches", "cmd_batches"),
    "tree": ("gmai_client.cli.tree", "cmd_tree"),
    "report": ("gmai_client.cli.report", "cmd_report"),
    "compare": ("gmai_client.cli.compare", "cmd_compare"),
    "runs": ("gmai_client.cli.runs", "cmd_runs"),
    "backends": ("gmai_client.cli.backends", "cmd_backends"),
    "cache": ("gmai_client.cli.cache", "cmd_cache"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `python -m gmai_client` alone, or with run's options: a run
        args = parser.parse_args(["run", *(argv if argv is not None else sys.argv[1:])])
    console = terminal_console()
    try:
        if args.command not in COMMANDS:
            parser.error(f"unknown command {args.command}")
        module, function = COMMANDS[args.command]
        return getattr(importlib.import_module(module), function)(args, console)
    except GmaiError as exc:
        say_error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        # A second Ctrl-C (or SIGTERM) while the first was being handled, or one before the run
        # started: records.jsonl is flushed item by item, so what finished is on disk.
        say_error(
            "stopped at once. The items finished so far are saved (records.jsonl is written item by item): "
            "rerun the same command to resume; `python -m gmai_client report RUN_DIR` redoes the metrics",
            label="interrupted",
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""What the CLI's commands share: exit statuses, the one-line error, reading a template file,
the sampling parameters given on the command line. (The exit-status table is in ``cli``.)"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from gmai_client.config import run_default
from gmai_client.errors import redact
from gmai_client.options import read_text_file
from gmai_client.results.completeness import Verdict
from gmai_client.results.report import terminal_console
from gmai_client.types import SamplingParams

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_ERRORS = 4
EXIT_EMPTY = 5
EXIT_INTERRUPTED = 130

#: The exit status of what became of a run (``run``, and ``report`` of its folder).
EXIT_OF: dict[Verdict, int] = {
    "interrupted": EXIT_INTERRUPTED,
    "stopped": EXIT_STOPPED,
    "errors": EXIT_ERRORS,
    "empty": EXIT_EMPTY,
    "complete": EXIT_OK,
}


def say_error(message: str, *, label: str = "error") -> None:
    """One line on stderr, keys redacted; "[Errno 2]" in a message is text, not markup."""
    text = escape(redact(message))
    terminal_console(stderr=True).print(f"[red]{label}:[/] {text}", highlight=False, soft_wrap=True)


def read_template(path_text: str, option: str = "--template") -> str:
    return read_text_file(Path(path_text), f"{option} {path_text}", folder="is a directory, not a template file")


def sampling_params(args: argparse.Namespace, seed: int) -> SamplingParams:
    """``--temperature`` and ``--max-tokens`` as given, else their defaults; the run's seed."""
    defaults: SamplingParams = run_default("params")
    return SamplingParams(
        temperature=args.temperature if args.temperature is not None else defaults.temperature,
        max_tokens=args.max_tokens if args.max_tokens is not None else defaults.max_tokens,
        seed=seed,  # sampling backends draw with the run's seed
    )

"""``python -m gmai_client report RUN_DIR``: the reports of a run folder redone from its records (and
rescored with ``--rescore`` / ``--rules``), exiting with the status of the run it reports."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape

from gmai_client.cli.common import EXIT_OF, EXIT_STOPPED, say_error
from gmai_client.results.records import RECORDS_FILE
from gmai_client.results.report import render


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    """Re-render a run folder; exit as its run would have (a run that did not answer every selected
    item is not reported with 0: the tables say which items and why)."""
    try:
        rendered = render(
            args.run_dir, rescore_answers=args.rescore, console=console, reference=args.reference, rules=args.rules
        )
    except OSError as exc:  # a full disk, a folder made read-only: the journal is never half replaced
        where = f"{exc.filename}: " if exc.filename else ""
        say_error(
            f"the reports could not be written ({where}{exc.strerror or exc}); {RECORDS_FILE} is as it was: "
            f"free some space (or make the folder writable) and run report again"
        )
        return EXIT_STOPPED
    console.print("wrote: " + escape(", ".join(rendered.files)))
    return EXIT_OF[rendered.completeness.verdict]

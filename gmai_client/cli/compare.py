"""``python -m gmai_client compare RUN_DIR... [--out DIR]``: runs made apart, side by side in one report
(``results.run_compare`` reads and matches them, ``results.compare_report`` writes the report).

The exit status is that of the worst run compared, as ``report`` of that run would exit (0 when every
run answered every item it selected; 3, 4 or 130 when one did not: its missing items are left out of
the comparison, and the report marks it), or 5 when the runs share no item; 2 for a usage error (a
folder that is not a run folder, a run still writing its folder, ``--strict`` runs that differ)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape

from gmai_client.cli.common import EXIT_EMPTY, EXIT_OF, say_error
from gmai_client.protocol.prices import load_prices
from gmai_client.results.compare_report import default_out, write_comparison
from gmai_client.results.run_compare import compare_runs, load_run

#: Verdicts, worst first (``cli``'s exit-status table: a higher-listed status wins).
_WORST_FIRST = ("interrupted", "stopped", "errors", "complete")


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    runs = [load_run(folder) for folder in args.run_dirs]
    compared = compare_runs(runs, rules=args.rules, strict=args.strict)
    out = args.out if args.out is not None else default_out(runs)
    written = write_comparison(out, compared, load_prices(), reference=args.reference, console=console)
    console.print("wrote: " + escape(", ".join(written.files)))
    if not compared.items:
        say_error("the runs share no item: nothing was compared (the notes above say why)")
        return EXIT_EMPTY
    unfinished = [run for run in written.runs if run.verdict not in ("complete", "empty")]
    for run in unfinished:
        what = (
            "the items it never recorded are left out of the comparison; its errors and answers never judged are "
            "counted wrong, as its own report counts them"
        )
        say_error(f"{run.folder} is {run.status}: {what} ({run.why})", label="note")
    worst = min((run.verdict for run in unfinished), key=_WORST_FIRST.index, default="complete")
    return EXIT_OF[worst]

"""``python -m gmai_client backends``: every backend, installed or not, with its options and the extra to
install (found without importing the heavy packages)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gmai_client.backends import registry


def cmd_backends(args: argparse.Namespace, console: Console) -> int:
    every = ", ".join(["label", *registry.POLICY_OPTIONS])
    table = Table(
        title="backends (`--model NAME:...`, options with `-B key=value`)", caption=f"every model also takes: {every}"
    )
    for column in ("name", "installed", "options", "about"):
        table.add_column(column, overflow="fold")
    for info in registry.describe():
        options = "\n".join(f"{k}: {v}" for k, v in info.options.items())
        installed = "yes" if info.available else f"no — {info.problem}"
        # Plain text, not markup: "pip install 'gmai-client[torch]'" would lose its "[torch]".
        table.add_row(*map(escape, (info.name, installed, options, info.doc)))
    console.print(table)
    return 0

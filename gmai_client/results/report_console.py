"""The headline table on a terminal, laid out for its width.

The headline has thirteen columns (model, acc, CI, counts, the answered-only and lenient figures,
multi-answer figures): about 150 characters. Squeezed into 80 columns, rich cuts every cell to an
ellipsis (``ra…``, ``23…``) and nothing can be read. So the layout follows the console's width:

1. one row per model, when that fits;
2. else one row per figure and a column per model, as many models side by side as fit, in as many
   tables as needed.

Nothing is cut in either; the markdown and HTML reports keep the wide table.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, RenderableType
from rich.table import Table


def headline_tables(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], console: Console) -> list[Table]:
    """The headline (``header[0]`` names the model, one row per model) as tables that fit ``console``."""
    wide = _table(title, header, rows)
    if _fits(wide, console):
        return [wide]
    figures = list(header[1:])
    groups: list[list[Sequence[str]]] = [[]]
    for row in rows:
        if groups[-1] and not _fits(_by_figure("", figures, [*groups[-1], row]), console):
            groups.append([])
        groups[-1].append(row)
    return [_by_figure(title if n == 0 else "", figures, group) for n, group in enumerate(groups)]


def _by_figure(title: str, figures: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """The headline turned on its side: a row per figure, a column per model."""
    columns = [[figure, *(row[n + 1] for row in rows)] for n, figure in enumerate(figures)]
    return _table(title, ["", *(row[0] for row in rows)], columns)


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title or None, title_justify="left")
    for n, column in enumerate(header):
        # Labels and figure names may wrap; a number is never cut.
        table.add_column(column, justify="left" if n == 0 else "right", overflow="fold", no_wrap=n > 0)
    for row in rows:
        table.add_row(*row)
    return table


def _fits(table: RenderableType, console: Console) -> bool:
    # Measured without the console's bound (a measurement is clamped to the width it is given).
    natural = console.measure(table, options=console.options.update_width(_UNBOUNDED)).maximum
    return natural <= console.width


_UNBOUNDED = 100_000

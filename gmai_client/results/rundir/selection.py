"""How many items a run folder's saved configuration selects: what its report counts the records against.

The run counts its selection while it goes and keeps the figure in metrics.json (``RunFigures.selected``),
but a run that was killed wrote no figure (or an older one, of a smaller ``--limit``): ``report`` counts
again from config.json (its data files, selection and limit), a full read of the files without
decoding an image, and falls back to the saved figure when the files cannot be read.
"""

from __future__ import annotations

from pathlib import Path

from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.select import parse_selection, selected_entries
from gmai_client.errors import GmaiError
from gmai_client.results.rundir.documents import SavedConfig


def count_selected(saved: SavedConfig) -> int | None:
    """The number of entries the saved run asks of each model; None when its data cannot be read."""
    limit = saved.setting("limit")
    try:
        files = open_dataset([Path(name) for name in saved.data_files])
        selection = parse_selection(saved.setting("select") or None)
        return sum(1 for _ in selected_entries(iter_items(files), selection, limit if isinstance(limit, int) else None))
    except (GmaiError, OSError, ValueError):  # moved or changed files: the saved figure stands
        return None

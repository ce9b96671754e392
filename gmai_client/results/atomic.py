"""A run folder's file written whole or not at all.

The new content goes to ``NAME.tmp`` beside the file and replaces it only once complete, so a
reader never sees half a document. If the writing fails (a full disk, a killed process's
interrupt), the ``.tmp`` is removed and the old file stands as it was: a full disk leaves neither a
half-written file nor a stray ``.tmp`` in the run folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """The path to write the new content to (``NAME.tmp``); on leaving the block it replaces
    ``path``, or, if the block failed, it is deleted and the error goes on."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise

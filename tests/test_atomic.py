"""A run folder's file is replaced whole or not at all (``atomic.written_whole``)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from gmai_client.results.atomic import written_whole


def test_the_new_content_replaces_the_file_once_complete(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("old")
    with written_whole(path) as tmp:
        tmp.write_text("new")
        assert path.read_text() == "old"  # a reader meanwhile sees the old document whole
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_full_disk_leaves_the_old_file_and_no_tmp(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text("old")
    with pytest.raises(OSError, match="No space left"), written_whole(path) as tmp:
        tmp.write_text("half of the ne")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]

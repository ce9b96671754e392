"""``python -m gmai_client cache stats|explain|clear``: reading a cache never creates one, and a path
that is not a cache file is one clear line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmai_client.cli import main


@pytest.mark.parametrize("action", ["stats", "clear"])
def test_a_missing_cache_is_reported_and_not_created(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "no" / "such" / "folder" / "responses.sqlite"
    assert main(["cache", action, "--cache-path", str(path)]) == 0
    printed = capsys.readouterr()
    assert "no response cache" in " ".join(printed.out.split()) and "Traceback" not in printed.err
    assert list(tmp_path.iterdir()) == []  # neither the folders nor a database


def test_explaining_an_item_of_a_missing_cache_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "none" / "responses.sqlite"
    assert main(["cache", "explain", "--cache-path", str(path), "-m", "random", "--index", "1"]) == 0
    assert "no response cache" in " ".join(capsys.readouterr().out.split())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("action", ["stats", "clear"])
def test_a_folder_as_the_cache_path_is_one_line_and_untouched(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `cache clear --cache-path /` printed a traceback; a folder is never a cache and is never deleted.
    for folder in (Path("/"), tmp_path):
        status = main(["cache", action, "--cache-path", str(folder)])
        printed = capsys.readouterr()
        assert status == 2 and "Traceback" not in printed.err
        assert printed.err.count("error:") == 1
    assert tmp_path.is_dir()

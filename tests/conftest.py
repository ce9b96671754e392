"""Shared fixtures: small GMAI-format TSV files written by the synthetic generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gmai_client.synthetic import write_tsv

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own response cache, never the user's."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GMAI_CLIENT_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def small_tsv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 synthetic items with a key (VAL-like)."""
    return write_tsv(tmp_path_factory.mktemp("data") / "small.tsv", 60, seed=3, image_size=32)


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """A hand-written TSV (tab-separated, no quoting needed for these cells)."""
    path.write_text("\n".join("\t".join(row) for row in [header, *rows]) + "\n", encoding="utf-8")
    return path

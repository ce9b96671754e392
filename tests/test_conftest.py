"""The suite's own isolation: no test reaches the user's home, cache dir or response cache, whatever
the scope of the fixture that runs it (conftest points them into a private folder before any fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PRIVATE_ROOT

from gmai_client.policy.cache import default_cache_path


def test_home_and_the_default_cache_dir_are_the_sessions_own(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Path.home().is_relative_to(PRIVATE_ROOT)
    monkeypatch.delenv("GMAI_CLIENT_CACHE_DIR")  # the platform's default, as a user without the variable gets
    assert default_cache_path().is_relative_to(PRIVATE_ROOT)


@pytest.fixture(scope="module")
def cache_seen_by_a_module_fixture() -> Path:
    return default_cache_path()


def test_a_module_scoped_fixture_sees_the_private_cache_too(cache_seen_by_a_module_fixture: Path) -> None:
    assert cache_seen_by_a_module_fixture.is_relative_to(PRIVATE_ROOT)

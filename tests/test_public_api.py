"""What a user imports: the public names of ``gmai_client``, with no optional package, and a wheel
that carries ``py.typed`` and every backend module."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import gmai_client
from gmai_client import errors

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_names_resolve_without_any_optional_package() -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'tritonclient', 'openai', 'anthropic', 'ray'):\n"
        "    sys.modules[name] = None  # as if it were not installed\n"
        "import gmai_client\n"
        "missing = [n for n in gmai_client.__all__ if getattr(gmai_client, n, None) is None]\n"
        "print('missing:', missing)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "missing: []"


def test_the_contract_and_every_error_class_are_exported() -> None:
    for name in ("Backend", "BackendOptions", "option", "parse_options", "Request", "Response", "Item", "Record"):
        assert name in gmai_client.__all__
    assert gmai_client.Backend.__module__ == "gmai_client.backend"
    error_classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == errors.__name__
    }
    assert error_classes <= set(gmai_client.__all__)
    assert all(getattr(gmai_client, name) is getattr(errors, name) for name in error_classes)


def test_a_wheel_carries_py_typed_and_every_backend_module(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    source = tmp_path / "src"  # a copy: the build writes its own build/ and egg-info folders
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("gmai_client", "backends"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / file, source / file)
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run([*command, "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "gmai_client/py.typed" in names
    for module in (ROOT / "backends").glob("*.py"):
        assert f"gmai_client/backends/{module.name}" in names

"""What a user imports: the public names of ``gmai_client``, with no optional package, and a wheel
that carries ``py.typed`` and every backend module."""

from __future__ import annotations

import importlib
import os
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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel a user installs, built from a copy of the source files a clone holds."""
    pytest.importorskip("setuptools")
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "src"  # a copy: the build writes its own build/ and egg-info folders
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("gmai_client", "backends"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for file in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / file, source / file)
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run([*command, "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (built,) = (tmp_path / "dist").glob("*.whl")
    return built


def sources(folder: str) -> list[Path]:
    return [path for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts]


def test_a_wheel_carries_py_typed_every_module_and_every_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "gmai_client/py.typed" in names
    expected = [f"gmai_client/{path.relative_to(ROOT / 'gmai_client').as_posix()}" for path in sources("gmai_client")]
    backends = ROOT / "backends"
    expected += [f"gmai_client/backends/{path.relative_to(backends).as_posix()}" for path in sources("backends")]
    shipped = [path for path in (ROOT / "gmai_client" / "data").iterdir() if path.suffix not in (".py", ".pyc", "")]
    expected += [f"gmai_client/data/{path.name}" for path in shipped]
    assert sorted(set(expected) - names) == []


def test_the_installed_wheel_runs_the_readme_command_outside_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    # Installed into a folder of its own and run with ``python -S``: no .pth file runs, so the editable
    # install of this checkout cannot serve a module the wheel lacks (that once hid a missing subpackage).
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    dependencies = Path(rich_module_file()).parents[1]  # where rich, pillow, xlsxwriter... are installed
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{dependencies}"}
    command = [sys.executable, "-S", "-m", "gmai_client"]
    runs = tmp_path / "runs"
    done = subprocess.run(
        [*command, "run", "--limit", "20", "--out", str(runs), "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = runs.iterdir()
    assert (run_dir / "report.html").is_file() and (run_dir / "metrics.json").is_file()
    where = subprocess.run(
        [sys.executable, "-S", "-c", "import gmai_client.results.rundir, gmai_client.backends.random as m; print(m.__file__)"],  # noqa: E501
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    done = subprocess.run(
        [*command, "report", str(run_dir)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def rich_module_file() -> str:
    import rich

    return rich.__file__


def test_an_old_flat_layout_path_names_its_new_one() -> None:
    with pytest.raises(ImportError, match=r"gmai_client\.balance moved to gmai_client\.policy\.balance"):
        import gmai_client.balance  # noqa: F401
    from gmai_client.moved import MOVED

    for new in MOVED.values():  # every new path named is a module that imports
        importlib.import_module(new.split()[0])

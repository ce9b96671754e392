"""Backend name -> class, imported lazily so that ``import gmai_client`` needs no optional package.

Built-in backends are found, not listed: a module ``backends/<name>.py`` (installed as
``gmai_client.backends.<name>``) whose class sets ``name = "<name>"`` is the backend ``<name>``.
The modules are read as text to find that class, and imported only when the backend is used, so
adding a backend is adding one file. Modules starting with ``_`` hold shared helpers.

Third-party packages add their own through the ``gmai_client.backends`` entry-point group::

    [project.entry-points."gmai_client.backends"]
    mymodel = "my_package.backend:MyBackend"

A plugin may not take a built-in's name (an error names both). A backend class derives from
``gmai_client.Backend`` (see ``gmai_client.backend`` for the contract); a class written to the
earlier duck-typed protocol (``from_spec``, an ``OPTIONS`` mapping) is still accepted.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import importlib.util
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gmai_client.backend import Backend, as_backend
from gmai_client.config import ModelSpec
from gmai_client.errors import ConfigError, MissingExtra
from gmai_client.options import POLICY_OPTIONS, neutral_options, option_help, unknown_option

__all__ = ["POLICY_OPTIONS", "BackendInfo", "answer_neutral_options", "create", "describe", "load_class"]

ENTRY_POINT_GROUP = "gmai_client.backends"
BUILTIN_PACKAGE = "gmai_client.backends"

#: Wrappers around backends, looked up by name like the backends (DESIGN: the balancer is policy,
#: which wraps backends; the registry never imports it, so the parts stay acyclic).
BALANCER = "gmai_client.policy.balance:BalancedBackend"

#: Executors besides the default (in this process): executor -> backend name -> "module:Class" of
#: the backend that serves that backend's models there, built as ``Class.from_spec(spec, seed=,
#: address=)``. Looked up by name, so the runner names no backend.
EXECUTORS: dict[str, dict[str, str]] = {
    "ray": {"torch": "gmai_client.backends.ray:RayTorchBackend"},
}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str  # "module:Class"
    available: bool
    problem: str  # why it is not available (the pip extra to install), else ""
    options: dict[str, str]  # option -> help line
    doc: str


@lru_cache(maxsize=1)
def builtin_targets() -> Mapping[str, str]:
    """Built-in backend name -> "module:Class", found by reading ``backends/*.py`` (nothing imported)."""
    package = importlib.util.find_spec(BUILTIN_PACKAGE)
    folders = list(package.submodule_search_locations or []) if package else []
    targets: dict[str, str] = {}
    for module in pkgutil.iter_modules(folders):
        if module.name.startswith("_") or module.ispkg:
            continue
        spec = importlib.util.find_spec(f"{BUILTIN_PACKAGE}.{module.name}")  # finds, does not import
        found = _backend_class(Path(spec.origin), module.name) if spec and spec.origin else ""
        if found:
            targets[module.name] = f"{BUILTIN_PACKAGE}.{module.name}:{found}"
    return MappingProxyType(targets)


def _backend_class(path: Path, name: str) -> str:
    """The class in ``path`` whose body says ``name = "<name>"`` ("" when there is none)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return ""
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            target = statement.targets[0] if isinstance(statement, ast.Assign) else getattr(statement, "target", None)
            value = getattr(statement, "value", None)
            named = isinstance(target, ast.Name) and target.id == "name"
            if named and isinstance(value, ast.Constant) and value.value == name:
                return node.name
    return ""


def all_targets() -> dict[str, str]:
    """Every backend: the built-ins, then the plugins' entry points; a plugin may not take a built-in's name."""
    targets = dict(builtin_targets())
    for point in entry_points(group=ENTRY_POINT_GROUP):
        builtin = builtin_targets().get(point.name)
        if builtin is not None:
            raise ConfigError(
                f"the plugin backend {point.name!r} ({point.value}, from the entry-point group {ENTRY_POINT_GROUP}) "
                f"has the name of the built-in backend {point.name!r} ({builtin}): rename the plugin's entry point"
            )
        targets.setdefault(point.name, point.value)
    return targets


def load_class(name: str) -> Any:
    targets = all_targets()
    if name not in targets:
        close = difflib.get_close_matches(name, list(targets), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(sorted(targets))}{hint}")
    return _load(targets[name])


def _load(target: str) -> Any:
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def _is_backend_class(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, Backend)


def executor_class(executor: str, backend: str) -> Any | None:
    """The class serving ``backend``'s models under ``executor`` (None: the backend's own class)."""
    target = EXECUTORS.get(executor, {}).get(backend)
    return _load(target) if target else None


@lru_cache(maxsize=64)
def answer_neutral_options(backend: str) -> frozenset[str]:
    """Option names of ``backend`` that never change an answer: ``label``, ``POLICY_OPTIONS``,
    the options its ``Options`` marks ``neutral`` and those it names in ``answer_neutral_options``,
    also under every executor that serves it (Ray's placement options of a torch model). A class
    that cannot be imported here counts all of its options."""
    declared: frozenset[str] = frozenset()
    classes = []
    for target in (*([all_targets()[backend]] if backend in all_targets() else []), *_executor_targets(backend)):
        with contextlib.suppress(ImportError):
            classes.append(_load(target))
    for cls in classes:
        if _is_backend_class(cls):
            declared |= cls.answer_neutral_options | neutral_options(cls.Options)
        else:  # the earlier protocol's spelling
            declared |= frozenset(getattr(cls, "ANSWER_NEUTRAL_OPTIONS", ()))
    return frozenset({"label", *POLICY_OPTIONS}) | declared


def _executor_targets(backend: str) -> list[str]:
    return [served[backend] for served in EXECUTORS.values() if backend in served]


def _check_legacy_options(spec: ModelSpec, cls: Any) -> None:
    """For a class of the earlier protocol that lists ``OPTIONS``: refuse a key it does not list."""
    declared = getattr(cls, "OPTIONS", None)
    if declared is None:
        return
    known = [*declared, *POLICY_OPTIONS]
    for key in spec.options:
        if key not in known:
            raise unknown_option(key, known, owner=spec.key, backend=spec.backend)


def create(spec: ModelSpec, *, seed: int = 0) -> Backend:
    """Build the backend a spec names (it is started later, by the runner)."""
    cls = load_class(spec.backend)
    if not _is_backend_class(cls):
        _check_legacy_options(spec, cls)
    own = MappingProxyType({k: v for k, v in spec.options.items() if k not in POLICY_OPTIONS})
    if "," in spec.endpoint:  # backend:model@E1,E2,...: one model on several endpoints
        return _load(BALANCER).from_spec(replace(spec, options=own), seed=seed, backend_class=cls)
    return as_backend(cls.from_spec(replace(spec, options=own), seed=seed))


def describe() -> list[BackendInfo]:
    """Every backend, whether it can be imported here, and the options it takes."""
    infos = []
    for name, target in sorted(all_targets().items()):
        try:
            cls = _load(target)
        except MissingExtra as exc:
            infos.append(BackendInfo(name, target, False, str(exc), {}, ""))
            continue
        except ImportError as exc:
            infos.append(BackendInfo(name, target, False, f"cannot import: {exc}", {}, ""))
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        options = option_help(cls.Options) if _is_backend_class(cls) else dict(getattr(cls, "OPTIONS", {}))
        problem = _missing_requirement(name, getattr(cls, "requires", {}))
        infos.append(BackendInfo(name, target, not problem, problem, options, doc))
    return infos


def _missing_requirement(backend: str, requires: Mapping[str, str]) -> str:
    """Why a backend cannot run here ("" when it can): the first package it needs that is not
    installed. Found, not imported: importing torch and transformers takes 20-30 s."""
    for package, extra in requires.items():
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):  # a broken or half-imported package
            found = False
        if not found:
            return str(MissingExtra(backend, extra, package))
    return ""

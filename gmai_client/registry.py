"""Backend name -> class, imported lazily so that ``import gmai_client`` needs no optional package.

Built-in backends live in the top-level ``backends/`` folder, installed as ``gmai_client.backends``.
Third-party packages add their own through the ``gmai_client.backends`` entry-point group::

    [project.entry-points."gmai_client.backends"]
    mymodel = "my_package.backend:MyBackend"

A backend class provides ``from_spec(spec: ModelSpec, seed: int) -> Backend`` and may declare
``OPTIONS`` (option name -> help text) and ``EXTRA`` (the pip extra it needs).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from gmai_client.config import ModelSpec
from gmai_client.errors import ConfigError, MissingExtra
from gmai_client.types import Backend

ENTRY_POINT_GROUP = "gmai_client.backends"

BUILTIN: dict[str, str] = {
    "random": "gmai_client.backends.random:RandomBackend",
    "replay": "gmai_client.backends.replay:ReplayBackend",
    "scripted": "gmai_client.backends.scripted:ScriptedBackend",
    "openai": "gmai_client.backends.openai:OpenAIBackend",
    "anthropic": "gmai_client.backends.anthropic:AnthropicBackend",
    "triton": "gmai_client.backends.triton:TritonBackend",
    "torch": "gmai_client.backends.torch:TorchBackend",
}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str  # "module:Class"
    available: bool
    problem: str  # why it is not available (the pip extra to install), else ""
    options: dict[str, str]
    doc: str


def _all_targets() -> dict[str, str]:
    targets = dict(BUILTIN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        targets.setdefault(point.name, point.value)
    return targets


def load_class(name: str) -> Any:
    targets = _all_targets()
    if name not in targets:
        import difflib

        close = difflib.get_close_matches(name, list(targets), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(sorted(targets))}{hint}")
    module_name, _, class_name = targets[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


#: Options every model takes, read by the runner rather than by the backend.
POLICY_OPTIONS: dict[str, str] = {
    "rpm": "requests per minute to this model's endpoint (overrides --rpm)",
    "tpm": "tokens per minute to this model's endpoint (overrides --tpm)",
}


def create(spec: ModelSpec, *, seed: int = 0) -> Backend:
    """Build the backend a spec names (it is started later, by the runner)."""
    own = MappingProxyType({k: v for k, v in spec.options.items() if k not in POLICY_OPTIONS})
    if "," in spec.endpoint:  # backend:model@E1,E2,...: one model on several endpoints
        from gmai_client.balance import BalancedBackend

        return BalancedBackend.from_spec(replace(spec, options=own), seed=seed)
    return load_class(spec.backend).from_spec(replace(spec, options=own), seed=seed)


def describe() -> list[BackendInfo]:
    """Every backend, whether it can be imported here, and the options it takes."""
    infos = []
    for name, target in sorted(_all_targets().items()):
        try:
            cls = load_class(name)
        except MissingExtra as exc:
            infos.append(BackendInfo(name, target, False, str(exc), {}, ""))
            continue
        except ImportError as exc:
            infos.append(BackendInfo(name, target, False, f"cannot import: {exc}", {}, ""))
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        infos.append(BackendInfo(name, target, True, "", dict(getattr(cls, "OPTIONS", {})), doc))
    return infos

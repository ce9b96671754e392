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


#: Wrappers around backends, looked up by name like the backends (DESIGN: the balancer is policy,
#: which wraps backends; the registry never imports it, so the parts stay acyclic).
BALANCER = "gmai_client.balance:BalancedBackend"


def load_class(name: str) -> Any:
    targets = _all_targets()
    if name not in targets:
        import difflib

        close = difflib.get_close_matches(name, list(targets), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(sorted(targets))}{hint}")
    return _load(targets[name])


def _load(target: str) -> Any:
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


#: Options every model takes, read by the client rather than by the backend (which never sees them).
POLICY_OPTIONS: dict[str, str] = {
    "rpm": "requests per minute to this model's endpoint (overrides --rpm)",
    "tpm": "tokens per minute to this model's endpoint (overrides --tpm)",
    "price_in": "US$ per million input tokens, for cost estimates (overrides the price table)",
    "price_out": "US$ per million output tokens, for cost estimates (overrides the price table)",
}


#: Options of the built-in backends that cannot change what a model answers: the pace and
#: patience of the calls, which account pays, the transport to the same server, how a local
#: model's work is scheduled (which requests share a batch already varies from run to run), a test
#: backend's delay. A run folder's identity (``rundir``) leaves them out; every other option is in
#: it. A third-party backend may declare its own in ``ANSWER_NEUTRAL_OPTIONS``; without that, all of
#: its options count.
_ANSWER_NEUTRAL: dict[str, frozenset[str]] = {
    "openai": frozenset({"timeout", "api_key_env", "organization_env"}),
    "anthropic": frozenset({"timeout", "api_key_env"}),
    "triton": frozenset({"timeout", "protocol", "ssl", "ssl_ca"}),
    "torch": frozenset(
        {
            "max_batch_size",
            "max_wait_ms",
            # --executor ray: where the actors run and how they are kept alive
            "actors",
            "gpus_per_actor",
            "cpus_per_actor",
            "torch_threads",
            "max_restarts",
            "max_concurrency",
            "load_timeout_s",
            "test_crash_after",
        }
    ),
    "scripted": frozenset({"latency"}),
}


def answer_neutral_options(backend: str) -> frozenset[str]:
    """Option names of ``backend`` that never change an answer (``label`` and ``POLICY_OPTIONS`` for all)."""
    declared = _ANSWER_NEUTRAL.get(backend)
    if declared is None:
        try:
            declared = frozenset(getattr(load_class(backend), "ANSWER_NEUTRAL_OPTIONS", ()))
        except (ImportError, ConfigError):
            declared = frozenset()
    return frozenset({"label", *POLICY_OPTIONS}) | declared


def check_options(spec: ModelSpec, *classes: Any) -> None:
    """Refuse an option none of ``classes`` declares in ``OPTIONS`` (a typo such as ``detial``
    would otherwise be ignored and the run would silently use the default), naming the closest
    valid ones. A class without ``OPTIONS`` (a third-party backend) is not checked."""
    if not classes or any(getattr(cls, "OPTIONS", None) is None for cls in classes):
        return
    known = set(POLICY_OPTIONS)
    for cls in classes:
        known |= set(cls.OPTIONS)
    for key in spec.options:
        if key in known:
            continue
        import difflib

        close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        # The value is not repeated: a misspelt option may hold a secret.
        raise ConfigError(
            f"{spec.label}: unknown option -B {key}{hint} ({spec.backend} takes: {', '.join(sorted(known))})"
        )


def create(spec: ModelSpec, *, seed: int = 0) -> Backend:
    """Build the backend a spec names (it is started later, by the runner)."""
    cls = load_class(spec.backend)
    check_options(spec, cls)
    own = MappingProxyType({k: v for k, v in spec.options.items() if k not in POLICY_OPTIONS})
    if "," in spec.endpoint:  # backend:model@E1,E2,...: one model on several endpoints
        return _load(BALANCER).from_spec(replace(spec, options=own), seed=seed, backend_class=cls)
    return cls.from_spec(replace(spec, options=own), seed=seed)


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

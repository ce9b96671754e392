"""gmai_client: an evaluation client for GMAI-MMBench.

    import asyncio, gmai_client
    config = gmai_client.RunConfig.build(["random"], data="sample", select=["department=Ophthalmology"])
    result = asyncio.run(gmai_client.run(config))

Importing the package pulls in no optional dependency (torch, tritonclient, openai, anthropic):
names below are resolved lazily on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "run": ("gmai_client.runner", "run"),
    "RunResult": ("gmai_client.runner", "RunResult"),
    "RunConfig": ("gmai_client.config", "RunConfig"),
    "ModelSpec": ("gmai_client.config", "ModelSpec"),
    "parse_model_spec": ("gmai_client.config", "parse_model_spec"),
    "parse_selection": ("gmai_client.select", "parse_selection"),
    "load_tree": ("gmai_client.select", "load_tree"),
    "compute_metrics": ("gmai_client.metrics", "compute_metrics"),
    "read_records": ("gmai_client.records", "read_records"),
    "extract": ("gmai_client.normalize", "extract"),
    "SamplingParams": ("gmai_client.types", "SamplingParams"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'gmai_client' has no attribute {name!r}")

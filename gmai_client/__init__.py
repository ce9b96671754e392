"""gmai_client: an evaluation client for GMAI-MMBench.

    import asyncio, gmai_client
    config = gmai_client.RunConfig.build(["random"], data="sample", select=["department=Ophthalmology"])
    result = asyncio.run(gmai_client.run(config))

The public names: running (``RunConfig``, ``load_run_file``, ``run``, ``RunResult``, ``ModelSpec``, ``compare``),
the vocabulary (``Item``, ``Request``, ``Response``, ``Record``, ...), the backend contract (``Backend``,
``BackendOptions``, ``option``, ``parse_options``; see ``gmai_client.backend``) and every error
class of ``gmai_client.errors``. The package ships ``py.typed``: type checkers read these names.

Importing the package pulls in no optional dependency (torch, tritonclient, openai, anthropic):
the vocabulary below is plain Python, and the running machinery is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gmai_client import moved
from gmai_client.backend import Backend
from gmai_client.config import ModelSpec, RunConfig, parse_model_spec
from gmai_client.errors import (
    AuthError,
    BackendError,
    BadRequest,
    BudgetExhausted,
    CacheError,
    ConfigError,
    ConnectFailed,
    ConnectionLost,
    ContentFiltered,
    DataError,
    DeadlineExceeded,
    EndpointUnreachable,
    FatalError,
    GmaiError,
    MissingExtra,
    ModelNotFound,
    Overloaded,
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
    RetryableError,
    SelectionError,
    ServerError,
    UnsupportedInput,
)
from gmai_client.options import BackendOptions, option, parse_options
from gmai_client.runfile import load_run_file
from gmai_client.types import Image, Item, Record, Request, Response, SamplingParams, Usage

if TYPE_CHECKING:  # imported on first use (below); named here for type checkers
    from gmai_client.api import compare, run
    from gmai_client.data.select import load_tree, parse_selection
    from gmai_client.protocol.metrics import compute_metrics
    from gmai_client.protocol.normalize import extract
    from gmai_client.results.records import read_records
    from gmai_client.runner.loop import RunResult

from gmai_client.version import __version__

moved.install()  # an old flat-layout import path names its new one

_LAZY = {
    "run": ("gmai_client.api", "run"),
    "compare": ("gmai_client.api", "compare"),
    "RunResult": ("gmai_client.runner.loop", "RunResult"),
    "parse_selection": ("gmai_client.data.select", "parse_selection"),
    "load_tree": ("gmai_client.data.select", "load_tree"),
    "compute_metrics": ("gmai_client.protocol.metrics", "compute_metrics"),
    "read_records": ("gmai_client.results.records", "read_records"),
    "extract": ("gmai_client.protocol.normalize", "extract"),
}

__all__ = [  # running, the vocabulary, the backend contract, the errors
    "AuthError", "Backend", "BackendError", "BackendOptions", "BadRequest", "BudgetExhausted", "CacheError",
    "ConfigError", "ConnectFailed", "ConnectionLost", "ContentFiltered", "DataError", "DeadlineExceeded",
    "EndpointUnreachable", "FatalError", "GmaiError", "Image", "Item", "MissingExtra", "ModelNotFound", "ModelSpec",
    "Overloaded", "QuotaExhausted", "RateLimited", "Record", "Request", "RequestTimeout", "Response", "RetryableError",
    "RunConfig", "RunResult", "SamplingParams", "SelectionError", "ServerError", "UnsupportedInput", "Usage",
    "__version__", "compare", "compute_metrics", "extract", "load_run_file", "load_tree", "option", "parse_model_spec",
    "parse_options", "parse_selection", "read_records", "run",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'gmai_client' has no attribute {name!r}")

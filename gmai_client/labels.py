"""A model's default label: the name people call it by, not the spec they typed.

The label names a model in records, tables, reports, prediction files and the run folder's name.
Given with ``-B label=NAME`` it is used as is. Otherwise it is the model's name, the last part of
the spec's target: ``gpt-4o`` for ``openai:gpt-4o``, ``Qwen2-VL-7B-Instruct`` for
``torch:/models/Qwen2-VL-7B-Instruct`` (or ``openai:Qwen/Qwen2-VL-7B-Instruct@...``), the backend's
name when there is no target (``random``). The whole spec made tables unreadable and run folders
about 100 characters long.

Only where two models of a run would get the same label is more said: the endpoint's host
(``llava@gpu-a:8000`` beside ``llava@gpu-b:8000``; never its credentials or path), and where that
is not enough either, the spec as written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit


def model_name(backend: str, target: str) -> str:
    """The model's name: the last part of ``target`` (a path, a URL-ish name), else ``backend``."""
    name = target.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].strip()
    return name or backend


def endpoint_host(endpoint: str) -> str:
    """``host[:port]`` of an endpoint (the first of several, with ``+N`` more), "" when none.

    No user, password, path or query: a label is shown everywhere and names folders."""
    first, *others = [part.strip() for part in endpoint.split(",") if part.strip()] or [""]
    if not first:
        return ""
    parts = urlsplit(first if "://" in first else f"//{first}")
    try:
        port = parts.port
    except ValueError:  # a malformed port: the host alone
        port = None
    host = (parts.hostname or "") + (f":{port}" if port else "")
    return (host or "endpoint") + (f"+{len(others)}" if others else "")


def distinct(labels: Sequence[str], defaults: Sequence[tuple[str, str]]) -> list[str]:
    """``labels`` with the clashes among default labels resolved: ``defaults[i]`` is (endpoint,
    spec as written) for a default label, ("", "") for one the user gave (never changed)."""
    out = list(labels)
    for widen in (_with_host, _as_written):
        clashing = {label for label in out if out.count(label) > 1}
        if not clashing:
            break
        out = [
            widen(label, *defaults[n]) if label in clashing and defaults[n][1] else label for n, label in enumerate(out)
        ]
    return out


def _with_host(label: str, endpoint: str, written: str) -> str:
    host = endpoint_host(endpoint)
    return f"{label}@{host}" if host else label


def _as_written(label: str, endpoint: str, written: str) -> str:
    # The spec as typed, less what may be a credential: a URL's user:password@ and its query.
    return re.sub(r"\?[^,]*", "", re.sub(r"(?<=//)[^/@,\s]*@", "", written))

"""Model families: what a model needs in its requests, a dated table shipped as data.

Reasoning models take other request fields than GPT-4o does: OpenAI's GPT-5 and o-series bound
their output with ``max_completion_tokens`` and refuse any temperature but their default; they
take ``reasoning_effort`` with their own set of values; Claude takes thinking as a budget or, on
newer models, only in its adaptive form; open thinking models need room for their thinking.
``gmai_client/data/model_families.json`` says so per ``backend:model`` pattern (``*`` and ``?``
wildcards, case-insensitive), dated, with its sources. Every pattern that matches a model applies,
the most specific one (most characters that are not wildcards) last, so a general entry
(``openai:gpt-5*``) gives the shared rules and a specific one (``openai:gpt-5.1*``) its own values.

A user's file of the same shape (``$GMAI_CLIENT_MODEL_FAMILIES``, which ``--model-families FILE``
sets) is laid over it: its entries apply after the shipped ones of equal specificity. A model's
own ``-B`` options override any entry (``max_tokens_field=``, ``temperature=``, ``max_tokens=``).
A model no pattern matches gets the plain defaults; a vendor's refusal then says which ``-B``
option fixes it (the backends' ``advice``).
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from gmai_client.errors import ConfigError

FAMILIES_ENV = "GMAI_CLIENT_MODEL_FAMILIES"
_SHIPPED = "gmai_client/data/model_families.json"
_WILDCARDS = frozenset("*?[]")


@dataclass(frozen=True)
class Family:
    """What the table says of one model (every field None/empty: nothing known)."""

    patterns: tuple[str, ...] = ()  # the patterns that matched, least specific first
    output_field: str | None = None  # "max_tokens" | "max_completion_tokens"
    temperature: str | None = None  # "send" | "omit" (the model takes only its default)
    reasoning_effort: tuple[str, ...] | None = None  # accepted values; () refuses it; None: not checked
    thinking: str | None = None  # Anthropic: "budget" | "adaptive" | "adaptive_only"
    max_tokens: int | None = None  # the output bound (thinking included) the family needs
    thinking_max_tokens: int | None = None  # the bound when thinking is asked for
    opens_in_thinking: bool = False  # the chat template opens <think>: the answer starts inside it
    typical_output: int | None = None  # output tokens of one short answer (plan's fallback figure)
    thinking_typical_output: int | None = None
    source: str = ""  # where the entries came from, for messages

    @property
    def known(self) -> bool:
        return bool(self.patterns)


_KEYS = {f.name for f in fields(Family)} - {"patterns", "source"}
_CHOICES = {
    "output_field": ("max_tokens", "max_completion_tokens"),
    "temperature": ("send", "omit"),
    "thinking": ("budget", "adaptive", "adaptive_only"),
}
_COUNTS = ("max_tokens", "thinking_max_tokens", "typical_output", "thinking_typical_output")


@dataclass(frozen=True)
class FamilyTable:
    entries: tuple[tuple[str, Mapping[str, Any], str], ...]  # (pattern, entry, source), in layer order
    as_of: date | None = None

    def lookup(self, backend: str, model: str) -> Family:
        """What the table says of ``backend:model``: every matching entry, least specific first."""
        wanted = f"{backend}:{model}".lower()
        matching = [
            (_specificity(pattern), order, pattern, entry, source)
            for order, (pattern, entry, source) in enumerate(self.entries)
            if fnmatch.fnmatchcase(wanted, pattern.lower())
        ]
        merged: dict[str, Any] = {}
        sources: list[str] = []
        for _, _, _, entry, source in sorted(matching, key=lambda m: (m[0], m[1])):
            merged.update(entry)
            if source not in sources:
                sources.append(source)
        if "reasoning_effort" in merged and merged["reasoning_effort"] is not None:
            merged["reasoning_effort"] = tuple(merged["reasoning_effort"])
        patterns = tuple(m[2] for m in sorted(matching, key=lambda m: (m[0], m[1])))
        return Family(patterns=patterns, source=" + ".join(sources), **merged)


def _specificity(pattern: str) -> int:
    return sum(char not in _WILDCARDS for char in pattern)


def load_families(user_file: Path | None = None) -> FamilyTable:
    """The shipped table with the user's (argument, else ``$GMAI_CLIENT_MODEL_FAMILIES``) laid over it."""
    if user_file is None and os.environ.get(FAMILIES_ENV):
        user_file = Path(os.environ[FAMILIES_ENV])
    stamp = None
    if user_file is not None:
        try:
            stat = Path(user_file).stat()
        except OSError as exc:
            raise ConfigError(f"model families file {user_file}: cannot read it ({exc.strerror or exc})") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
    return _load(str(user_file) if user_file is not None else None, stamp)


@lru_cache(maxsize=8)
def _load(user_file: str | None, stamp: tuple[int, int] | None) -> FamilyTable:
    shipped_text = (importlib.resources.files("gmai_client") / "data" / "model_families.json").read_text("utf-8")
    shipped_entries, as_of = _parse(json.loads(shipped_text), _SHIPPED)
    if user_file is None:
        return FamilyTable(shipped_entries, as_of)
    try:
        data = json.loads(Path(user_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model families file {user_file}: cannot read it ({exc})") from None
    user_entries, _ = _parse(data, user_file)
    return FamilyTable(shipped_entries + user_entries, as_of)


def _parse(data: Any, where: str) -> tuple[tuple[tuple[str, Mapping[str, Any], str], ...], date | None]:
    if not isinstance(data, dict) or not isinstance(data.get("families"), dict):
        raise ConfigError(f"model families file {where}: expected {{'families': {{'backend:model*': {{...}}}}}}")
    as_of = None
    if data.get("as_of"):
        try:
            as_of = date.fromisoformat(str(data["as_of"]))
        except ValueError:
            problem = f"as_of {data['as_of']!r} is not a YYYY-MM-DD date"
            raise ConfigError(f"model families file {where}: {problem}") from None
    source = where + (f", as of {as_of}" if as_of else "")
    entries = []
    for pattern, entry in data["families"].items():
        if not isinstance(entry, dict):
            raise ConfigError(f"model families file {where}: {pattern!r} must map to an object")
        entries.append((str(pattern), _checked(entry, f"model families file {where}: {pattern!r}"), source))
    return tuple(entries), as_of


def _checked(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """``entry`` without its notes, each key checked (a typo must not pass as "nothing known")."""
    kept = {}
    for key, value in entry.items():
        if key == "note":
            continue
        if key not in _KEYS:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(_KEYS | {'note'}))})")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{where}: {key} must be one of {', '.join(_CHOICES[key])}, got {value!r}")
        if key in _COUNTS and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if key == "reasoning_effort" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{where}: reasoning_effort must be a list of strings, got {value!r}")
        if key == "opens_in_thinking" and not isinstance(value, bool):
            raise ConfigError(f"{where}: opens_in_thinking must be true or false, got {value!r}")
        kept[key] = value
    return kept


def family_of(backend: str, model: str) -> Family:
    """What the current table (shipped, laid over by the user's) says of ``backend:model``."""
    return load_families().lookup(backend, model)


def use_model_families(path: Path) -> None:
    """Lay ``path`` over the shipped table for every model this process builds (``--model-families``):
    read and checked now, so a bad file fails before anything is sent."""
    load_families(path)
    os.environ[FAMILIES_ENV] = str(Path(path).resolve())

"""Typed model options: one frozen dataclass per backend, read from ``-B key=value`` text by one parser.

A backend declares what it takes as a frozen dataclass deriving from ``BackendOptions``; each field
is made by ``option()``, which records its help text and its limits beside its one default::

    @dataclass(frozen=True)
    class InHouseOptions(BackendOptions):
        timeout: float = option(60.0, "seconds to wait for one answer", above=0, neutral=True)
        style: Literal["short", "long"] = option("short", "how long the answers are")

``parse_options(InHouseOptions, spec.options, owner=spec.label)`` turns the spec's strings into
that dataclass: it converts each value to the field's type (``int``, ``float``, ``bool``, ``str``,
``Path``, a ``Literal`` of choices, or any of those ``| None``), refuses nan and infinity,
checks the limits, and refuses a key no field has, naming the closest valid ones (a typo such
as ``detial`` would otherwise leave the default in place and nobody would know). An empty value
means "the default", except for a field made with ``blank=True``, where it is a value of its own.
The limits are checked again when a dataclass is built from Python (``__post_init__``), so
options made in code obey the same rules as options typed on the command line.

``option_help`` renders the same fields for ``python -m gmai_client backends``: the help text,
the type and limits, and the default, all read from the dataclass, so they are written once.
``neutral=True`` marks an option that cannot change an answer (the pace and patience of the
calls, which account pays): a run folder's identity leaves those out.

``ModelPolicy`` holds the options every model takes that the client, not the backend, reads
(its own rate limits and prices); ``POLICY_OPTIONS`` names them.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from gmai_client.errors import ConfigError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def option(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    above: float | None = None,
    blank: bool = False,
    neutral: bool = False,
    default_text: str = "",
) -> Any:
    """A field of a ``BackendOptions`` dataclass.

    ``minimum`` (inclusive) and ``above`` (exclusive) bound a number; ``blank`` keeps an empty
    value as "" instead of the default; ``neutral`` says the option cannot change an answer;
    ``default_text`` describes a default that is worked out later (``None`` meaning "the
    cluster's GPUs", say) for the help listing.
    """
    metadata = {
        "help": help,
        "minimum": minimum,
        "above": above,
        "blank": blank,
        "neutral": neutral,
        "default_text": default_text,
    }
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OptionField:
    """One option as the parser and the help listing see it."""

    name: str
    kind: type  # int, float, bool, str or Path (None stripped from an optional type)
    choices: tuple[str, ...]  # a Literal's values, else ()
    optional: bool  # None is a valid value
    default: Any
    help: str
    minimum: float | None
    above: float | None
    blank: bool
    neutral: bool
    default_text: str

    def describe(self) -> str:
        """The help line: text, then type and limits, then the default."""
        parts = [self.help, self._kind_text()]
        default = self.default_text or ("" if self.default in (None, "") else _shown(self.default))
        if default:
            parts.append(f"default: {default}")
        return "; ".join(part for part in parts if part)

    def _kind_text(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.kind is bool:
            return "true | false"
        noun = {int: "integer", float: "number"}.get(self.kind, "")
        return f"{noun} {self._limits('>=', '>')}".strip() if noun else ""

    def _limits(self, at_least: str, greater: str) -> str:
        limits = [
            f"{at_least} {self.minimum:g}" if self.minimum is not None else "",
            f"{greater} {self.above:g}" if self.above is not None else "",
        ]
        return " and ".join(text for text in limits if text)

    def convert(self, raw: str, owner: str) -> Any:
        """``raw`` as this field's type, checked against its choices and limits."""
        text = raw.strip()
        if text == "" and not self.blank:
            return self.default
        if self.choices:
            if text not in self.choices:
                raise ConfigError(f"{owner}: option {self.name}={raw!r}; choose one of {', '.join(self.choices)}")
            return text
        if self.kind is bool:
            if text.lower() not in _TRUE | _FALSE:
                raise ConfigError(f"{owner}: option {self.name} must be true or false, got {raw!r}")
            return text.lower() in _TRUE
        if self.kind in (int, float):
            return self._number(text, raw, owner)
        return Path(text) if self.kind is Path else text

    def _number(self, text: str, raw: str, owner: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            noun = "an integer" if self.kind is int else "a number"
            raise ConfigError(f"{owner}: option {self.name}={raw!r} is not {noun}") from None
        problem = self.check(value)
        if problem:
            raise ConfigError(f"{owner}: option {self.name} {problem}, got {raw!r}")
        return value

    def check(self, value: Any) -> str:
        """Why ``value`` breaks this field's rules ("" when it does not)."""
        if value is None:
            return "" if self.optional else "must be given"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        if self.kind not in (int, float) or isinstance(value, bool):
            return ""
        inside = (self.minimum is None or value >= self.minimum) and (self.above is None or value > self.above)
        if math.isfinite(value) and inside:
            return ""
        if self.above == 0 and self.minimum is None:
            return "must be a positive " + ("integer" if self.kind is int else "finite number")
        noun = "an integer" if self.kind is int else "a finite number"
        limits = self._limits("at least", "greater than")
        return f"must be {noun} {limits}".rstrip()


def text_or_file(value: str, what: str) -> str:
    """``value`` as given, or, when it starts with ``@``, the UTF-8 text of the file it names (the
    ``TEXT|@FILE`` of ``--system-prompt`` and ``-B system=``); a file that cannot be read is a
    ``ConfigError`` naming ``what`` and the file."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    return read_text_file(path, f"{what} @{path}")


def read_text_file(
    path: Path, shown: str, *, missing: str = "no such file", folder: str = "is a folder, not a file"
) -> str:
    """The UTF-8 text of a file the user named (a BOM some editors write is not part of it); a
    ``ConfigError`` starting with ``shown`` (how the message names the file) when it cannot be
    read: ``missing``, a folder (``folder`` says what was expected instead), not UTF-8, unreadable."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: {missing}") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: {folder}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot be read ({exc.strerror or exc})") from None


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class BackendOptions:
    """Base of every backend's options dataclass (no fields of its own).

    Building one from Python checks the same rules as ``parse_options`` does for text.
    """

    def __post_init__(self) -> None:
        for spec in option_fields(type(self)):
            problem = spec.check(getattr(self, spec.name))
            if problem:
                raise ConfigError(f"option {spec.name} {problem}, got {getattr(self, spec.name)!r}")


@dataclass(frozen=True)
class NoOptions(BackendOptions):
    """For a backend that takes no option."""


OptionsT = TypeVar("OptionsT", bound=BackendOptions)


def option_fields(options: type[BackendOptions]) -> tuple[OptionField, ...]:
    """The fields of an options dataclass, with their types resolved (cached per class)."""
    cached = _FIELDS.get(options)
    if cached is None:
        hints = typing.get_type_hints(options)
        cached = _FIELDS[options] = tuple(_field(f, hints[f.name]) for f in fields(options))
    return cached


_FIELDS: dict[type, tuple[OptionField, ...]] = {}


def _field(spec: Field[Any], hint: Any) -> OptionField:
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (Union, types.UnionType) and type(None) in args
    if optional:
        (hint,) = [arg for arg in args if arg is not type(None)]
    choices: tuple[str, ...] = ()
    if typing.get_origin(hint) is Literal:
        choices, hint = tuple(str(choice) for choice in typing.get_args(hint)), str
    if hint not in (int, float, bool, str, Path):
        raise TypeError(f"option {spec.name}: type {hint!r} is not one of int, float, bool, str, Path or a Literal")
    meta = spec.metadata
    default = None if spec.default is MISSING else spec.default
    return OptionField(
        name=spec.name,
        kind=hint,
        choices=choices,
        optional=optional,
        default=default,
        help=str(meta.get("help", "")),
        minimum=meta.get("minimum"),
        above=meta.get("above"),
        blank=bool(meta.get("blank", False)),
        neutral=bool(meta.get("neutral", False)),
        default_text=str(meta.get("default_text", "")),
    )


def parse_options(
    options: type[OptionsT],
    raw: Mapping[str, str],
    *,
    owner: str,
    backend: str = "",
    also: Iterable[str] = (),
) -> OptionsT:
    """``raw`` (option name -> text) as an ``options`` dataclass.

    ``owner`` starts every message (a model's label); ``backend`` names whose options are
    listed when a key is unknown; keys in ``also`` belong to someone else (the client's own
    per-model options) and are passed over.
    """
    known = {spec.name: spec for spec in option_fields(options)}
    passed_over = set(also)
    for key in raw:
        if key not in known and key not in passed_over:
            raise unknown_option(key, [*known, *passed_over], owner=owner, backend=backend)
    values = {key: known[key].convert(str(text), owner) for key, text in raw.items() if key in known}
    try:
        return options(**values)
    except ConfigError as exc:  # a rule across fields, or one the conversion cannot see
        raise ConfigError(f"{owner}: {exc}") from None


def unknown_option(key: str, known: Iterable[str], *, owner: str, backend: str = "") -> ConfigError:
    """The error for an option no one takes, naming the closest valid ones. The value is not
    repeated: a misspelt option may hold a secret."""
    names = sorted(set(known))
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    who = backend or "this model"
    return ConfigError(f"{owner}: unknown option -B {key}{hint} ({who} takes: {', '.join(names) or 'none'})")


def option_help(options: type[BackendOptions]) -> dict[str, str]:
    """Option name -> its help line, for the ``backends`` listing."""
    return {spec.name: spec.describe() for spec in option_fields(options)}


def neutral_options(options: type[BackendOptions]) -> frozenset[str]:
    """The options marked ``neutral``: they cannot change an answer."""
    return frozenset(spec.name for spec in option_fields(options) if spec.neutral)


_PRICES = "the price table"


@dataclass(frozen=True)
class ModelPolicy(BackendOptions):
    """Options every model takes that the client reads (never the backend): limits and prices."""

    rpm: float | None = option(
        None, "requests per minute to this model's endpoint", above=0, neutral=True, default_text="--rpm"
    )
    tpm: float | None = option(
        None, "tokens per minute to this model's endpoint", above=0, neutral=True, default_text="--tpm"
    )
    price_in: float | None = option(
        None, "US$ per million input tokens, for cost estimates", minimum=0, neutral=True, default_text=_PRICES
    )
    price_out: float | None = option(
        None, "US$ per million output tokens, for cost estimates", minimum=0, neutral=True, default_text=_PRICES
    )


#: Option name -> help, of the options every model takes besides its backend's own.
POLICY_OPTIONS: Mapping[str, str] = types.MappingProxyType(option_help(ModelPolicy))


def model_policy(raw: Mapping[str, str], *, owner: str) -> ModelPolicy:
    """The client's own options of one model (its backend's options are passed over)."""
    return parse_options(ModelPolicy, {k: v for k, v in raw.items() if k in POLICY_OPTIONS}, owner=owner)

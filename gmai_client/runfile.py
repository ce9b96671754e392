"""Run files: a run's whole configuration in one file (``run --config FILE``, ``load_run_file``).

This module owns reading such a file into the configuration's flat names (``config.FLAT_NAMES``)
and laying overrides over it; ``config`` owns what each field means and its default.

A run file is TOML (the standard library's ``tomllib``, Python 3.11+), or JSON: any run folder's config.json is
one, so ``run --config runs/X/config.json`` makes that run again (its folder, its items, its
answers). A file whose first character is ``{`` is JSON; a JSON document with a ``config`` object
is a config.json, whose other keys (``identity``, ``data_files``, ...) describe the run rather
than configure it and are passed over::

    data = ["sample"]                      # every flat name, as on the command line
    select = ["department=Ophthalmology"]
    limit = 40
    temperature = 0                        # or [protocol.params] / params = {temperature = 0}
    system_prompt = "@prompts/system.txt"  # TOML: @path reads the text from a file

    [policy]                               # or by section, as config.json writes them
    concurrency = 16

    [[models]]
    spec = "openai:gpt-4o"                 # the --model SPEC syntax
    label = "gpt-4o"
    rpm = 500                              # the model's -B options: further keys, or options = {...}

    [[models]]                             # config.json's own form of a model
    backend = "anthropic"
    target = "claude-sonnet-4-5"
    options = {rpm = "50"}

``judge`` is a spec or a table like a model. Relative paths are relative to the current folder,
as on the command line. Every mistake is a ``ConfigError`` naming the file and the key: an unknown
key names the closest valid one.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Union

from gmai_client.config import (
    FLAT_NAMES,
    SECTIONS,
    ModelSpec,
    RunConfig,
    _spec_from_dict,
    parse_model_spec,
    refuse_redacted,
)
from gmai_client.errors import ConfigError
from gmai_client.labels import model_name
from gmai_client.options import read_text_file, text_or_file
from gmai_client.types import SamplingParams

#: Flat name -> its type, read from the sections' annotations, so a new field is checked as it is declared.
_TYPES: dict[str, Any] = {
    name: typing.get_type_hints(SECTIONS[section])[field_name] for name, (section, field_name) in FLAT_NAMES.items()
}
_PARAM_TYPES: dict[str, Any] = typing.get_type_hints(SamplingParams)
#: Sampling parameters a run file may also give at its top level (as ``--temperature``, ``--max-tokens``).
_TOP_PARAMS = ("temperature", "max_tokens")
#: ``run``'s option names where they differ from the field's (README: "run's options by name").
_ALIASES = {"multi_answer_prompt": "multi_answer_instruction"}
_TOP_KEYS = ("models", *FLAT_NAMES, *_TOP_PARAMS, *SECTIONS, *_ALIASES)
#: The keys of a model as config.json saves it (``ModelSpec.as_dict``).
_SAVED_MODEL_KEYS = ("backend", "target", "endpoint", "options", "label", "written")
#: Fields whose TOML value may be ``@path``: the text of that file.
_TEXTS = ("template", "system_prompt")


def read_run_file(path: str | Path) -> dict[str, Any]:
    """The configuration a run file holds, by flat name as ``RunConfig.from_flat`` takes them:
    ``models`` a tuple of ``ModelSpec``, ``judge`` a ``ModelSpec``, ``params`` a ``SamplingParams``
    whose seed is None unless the file gives one (the run's seed then). Keys the file leaves out are
    absent. ``ConfigError`` names the file and the key of any mistake."""
    path = Path(path)
    text = _read_text(path)
    if text.lstrip().startswith("{") or (path.suffix.lower() == ".json" and text.lstrip().startswith("[")):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        if not isinstance(document, dict):
            raise ConfigError(f"{path}: a run file is a JSON object, not {type(document).__name__}")
        # A run folder's config.json: the configuration is its `config`; the rest describes the run.
        table = document["config"] if isinstance(document.get("config"), dict) else document
        reader = _Reader(str(path), at_files=False)  # config.json holds the template's text itself
    else:
        try:  # the standard library's TOML reader came with Python 3.11; the package runs on 3.10
            import tomllib
        except ImportError:
            raise ConfigError(f"{path}: a TOML run file needs Python 3.11 or later (a config.json does not)") from None
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        reader = _Reader(str(path), at_files=True)
    flat = reader.configuration(table)
    try:  # the file alone must make a configuration: its mistakes are named with it
        RunConfig.from_flat(**flat)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return flat


def load_run_file(path: str | Path, **overrides: Any) -> RunConfig:
    """The run file's configuration with ``overrides`` by flat name laid over it (as the command
    line's options are): ``load_run_file("runs.toml", limit=10, temperature=0.5, models=["random"])``.
    Models and the judge may be spec strings, paths strings, ``data``/``select`` one string or a list."""
    values = dict(overrides)
    if "models" in values:
        values["models"] = tuple(m if isinstance(m, ModelSpec) else parse_model_spec(m) for m in values["models"])
    if isinstance(values.get("judge"), str):
        values["judge"] = parse_model_spec(values["judge"])
    for key in ("data", "select"):
        if key in values:
            values[key] = (values[key],) if isinstance(values[key], str) else tuple(values[key])
    for key in ("out", "cache_path", "data_dir"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    return combined(read_run_file(path), values)


def combined(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> RunConfig:
    """``base`` (``read_run_file``'s) with ``overrides`` by flat name laid over it. ``models``
    replaces the whole list; ``temperature`` and ``max_tokens`` change only those of the sampling
    parameters; a ``seed`` given here is the sampling seed too, as a ``--seed`` is on the command line."""
    values = {**base, **{k: v for k, v in overrides.items() if k not in _TOP_PARAMS}}
    sampling = {k: overrides[k] for k in _TOP_PARAMS if k in overrides}
    params: SamplingParams | None = values.get("params")
    if params is not None and "seed" in overrides and "params" not in overrides:
        params = replace(params, seed=None)  # RunConfig draws it from the run's seed
    if sampling:
        params = replace(params if params is not None else SamplingParams(), **sampling)
    if params is not None:
        values["params"] = params
    return RunConfig.from_flat(**values)


def _read_text(path: Path) -> str:
    folder = "is a folder; a run file is a TOML file or a run folder's config.json"
    return read_text_file(path, str(path), missing="no such run file", folder=folder)


@dataclass(frozen=True)
class _Reader:
    """Reads one file's table; every message starts with the file's name."""

    name: str
    at_files: bool  # "@path" in template/system_prompt reads that file (TOML; JSON holds the text)

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.name}: {message}")

    def configuration(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """The table's fields by flat name; ``params`` gathered from wherever the file gives them."""
        given: dict[str, tuple[str, Any]] = {}  # flat name -> (the key as written, its value)
        for key, value in table.items():
            if key in SECTIONS and isinstance(value, Mapping):  # `[data]` is a section, `data = [...]` a field
                for field_name, inner in value.items():
                    self._put(given, self._section_field(key, field_name), f"{key}.{field_name}", inner)
            elif key in SECTIONS and key not in FLAT_NAMES:
                raise self.error(f"{key} must be a table of its fields ([{key}]), got {_shown(value)}")
            elif key in _TOP_KEYS:
                self._put(given, _ALIASES.get(key, key), key, value)
            else:
                raise self.error(f"unknown key {key!r}{_closest(key, _TOP_KEYS)}")
        flat: dict[str, Any] = {}
        params: dict[str, Any] = {}
        for name, (key, value) in given.items():
            if name == "models":
                flat["models"] = self._models(value)
            elif name == "judge":
                flat["judge"] = None if value is None else self._model(key, value)
            elif name == "params":
                params.update(self._params(key, value))
            elif name in _TOP_PARAMS:
                if name in params:
                    raise self.error(f"{name} given twice ({key} and params.{name})")
                params[name] = self._typed(key, _PARAM_TYPES[name], value)
            else:
                flat[name] = self._typed(key, _TYPES[name], value)
                if name in _TEXTS and self.at_files and isinstance(flat[name], str):
                    flat[name] = text_or_file(flat[name], f"{self.name}: {key}")
                elif name in _TEXTS and not self.at_files:  # a config.json: its texts as saved
                    refuse_redacted(name, flat[name])
        if params:
            flat["params"] = SamplingParams(**params)  # seed None unless given: the run's seed
        return flat

    def _section_field(self, section: str, field_name: str) -> str:
        names = [f.name for f in fields(SECTIONS[section])]
        if field_name not in names:
            home = [s for s, cls in SECTIONS.items() if field_name in {f.name for f in fields(cls)}]
            hint = f" (it belongs in [{home[0]}])" if home else _closest(field_name, names)
            raise self.error(f"unknown key {field_name!r} in [{section}]{hint}")
        return next(flat for flat, where in FLAT_NAMES.items() if where == (section, field_name))

    def _put(self, given: dict[str, tuple[str, Any]], name: str, key: str, value: Any) -> None:
        if name in given:
            raise self.error(f"{name} given twice ({given[name][0]} and {key})")
        given[name] = (key, value)

    def _params(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(f"{key} must be a table of sampling parameters, got {_shown(value)}")
        params = {}
        for name, inner in value.items():
            if name not in _PARAM_TYPES:
                raise self.error(f"unknown key {name!r} in {key}{_closest(name, list(_PARAM_TYPES))}")
            params[name] = self._typed(f"{key}.{name}", _PARAM_TYPES[name], inner)
        return params

    def _typed(self, key: str, hint: Any, value: Any) -> Any:
        """``value`` as the field of type ``hint`` holds it, or an error saying what it must be."""
        choices = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
        kind = next(choice for choice in choices if choice is not type(None))
        if value is None:
            if type(None) in choices:
                return None
            raise self.error(f"{key} must be {_KINDS.get(kind, 'text')}, got null")
        if typing.get_origin(kind) is tuple:  # a list of text; one text is a list of one
            items = [value] if isinstance(value, str) else value
            if isinstance(items, list) and all(isinstance(item, str) for item in items):
                return tuple(items)
            raise self.error(f"{key} must be text or a list of text, got {_shown(value)}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        fits = {
            bool: isinstance(value, bool),
            int: number and isinstance(value, int),
            float: number,
        }.get(kind, isinstance(value, str))
        if not fits:
            raise self.error(f"{key} must be {_KINDS.get(kind, 'text')}, got {_shown(value)}")
        if kind is float:
            return float(value)
        return Path(value) if kind is Path else value

    def _models(self, value: Any) -> tuple[ModelSpec, ...]:
        if not isinstance(value, list) or not value:
            raise self.error(f"models must be a list of models ([[models]] tables or specs), got {_shown(value)}")
        return tuple(self._model(f"models #{number}", model) for number, model in enumerate(value, 1))

    def _model(self, where: str, value: Any) -> ModelSpec:
        """A model (or the judge): a spec string, a table with ``spec``, or config.json's saved form."""
        if isinstance(value, str):
            return self._spec(where, value, {})
        if not isinstance(value, Mapping):
            raise self.error(f"{where} must be a spec such as 'openai:gpt-4o' or a table, got {_shown(value)}")
        table = dict(value)
        if "spec" in table and "backend" in table:
            raise self.error(f"{where}: give spec = 'backend:target@endpoint' or backend = ..., not both")
        if "spec" in table:
            spec = self._typed(f"{where}.spec", str, table.pop("spec"))
            label = self._typed(f"{where}.label", str | None, table.pop("label", None))
            options = self._options(where, table.pop("options", {}))
            further = self._options(where, table)  # a model's other keys are its -B options
            twice = sorted(set(options) & set(further))
            if twice:
                raise self.error(f"{where}: option {twice[0]} given twice (in options and as a key)")
            return self._spec(where, spec, {**options, **further, **({"label": label} if label else {})})
        if "backend" in table:
            return self._saved(where, table)
        raise self.error(f"{where} names no model: give spec = 'backend:target@endpoint' (as --model takes)")

    def _spec(self, where: str, spec: str, options: dict[str, str]) -> ModelSpec:
        try:
            return parse_model_spec(spec, options)
        except ConfigError as exc:
            raise self.error(f"{where}: {exc}") from None

    def _saved(self, where: str, table: dict[str, Any]) -> ModelSpec:
        """A model as config.json saves it; options saved as [REDACTED] are refused (``_spec_from_dict``)."""
        unknown = [key for key in table if key not in _SAVED_MODEL_KEYS]
        if unknown:
            hint = _closest(unknown[0], _SAVED_MODEL_KEYS)
            raise self.error(f"unknown key {unknown[0]!r} in {where}{hint} (or give spec = ... and options as keys)")
        saved = {key: self._typed(f"{where}.{key}", str, table.get(key, "")) for key in _SAVED_MODEL_KEYS[:3]}
        saved["backend"] = saved["backend"].strip().lower()
        label = self._typed(f"{where}.label", str, table.get("label", ""))
        written = self._typed(f"{where}.written", str, table.get("written", ""))
        if not label:  # as parse_model_spec does: the model's name, the spec as written keeps the identity
            label = model_name(saved["backend"], saved["target"])
            written = written or saved["backend"] + (f":{saved['target']}" if saved["target"] else "")
            written += f"@{saved['endpoint']}" if saved["endpoint"] else ""
        options = self._options(where, table.get("options", {}))
        try:
            return _spec_from_dict({**saved, "options": options, "label": label, "written": written})
        except ConfigError as exc:
            raise self.error(str(exc)) from None

    def _options(self, where: str, options: Any) -> dict[str, str]:
        """A model's options as -B gives them: text (true/false for booleans, numbers as written)."""
        if not isinstance(options, Mapping):
            raise self.error(f"{where}.options must be a table of key = value, got {_shown(options)}")
        result = {}
        for key, value in options.items():
            if isinstance(value, bool):
                result[key] = "true" if value else "false"
            elif isinstance(value, (str, int, float)):
                result[key] = str(value)
            else:
                raise self.error(f"{where}: option {key} must be text, a number or true/false, got {_shown(value)}")
        return result


#: How a message names what a field's type takes.
_KINDS: dict[Any, str] = {int: "a whole number", float: "a number", bool: "true or false", str: "text", Path: "a path"}


def _closest(key: str, valid: typing.Sequence[str]) -> str:
    """`` (did you mean 'x'?)``, or the valid keys when none is close."""
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (valid keys: {', '.join(sorted(set(valid)))})"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)[:60]
    return repr(value)

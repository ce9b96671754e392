"""Run configuration: what the CLI and the SDK both build, and what a run folder records.

A model is named by a spec string ``backend[:target][@endpoint]`` plus ``key=value`` options:

    random                      the seeded random baseline
    replay:preds.jsonl          answers recorded elsewhere, re-scored here
    openai:gpt-4o               an API model (key from the environment, never from the spec)
    openai:llava@http://gpu-box:8000/v1
    triton:llava@gpu-box:8001
    torch:/models/Qwen2-VL-7B-Instruct

A model's label names it in records, tables and the run folder's name: ``label=NAME``, else its
name (``gpt-4o``, ``Qwen2-VL-7B-Instruct``; ``labels`` says how clashes are told apart). Two runs of
one model with different options need different labels.

A ``RunConfig`` is the models plus five sections, each read by the part of the client that needs
it: ``data`` (which items), ``protocol`` (what a model is asked, and the judge), ``policy`` (pace
and patience), ``output`` (where the run folder goes, the progress display) and ``execution``
(where models run, the seed). Every default is written once, in the section's dataclass.

Scripts and the CLI name the fields flat (``RunConfig.build(rpm=500, limit=10)``): ``FLAT_NAMES``
says which section holds each one. config.json keeps them by section (``as_dict``); ``from_dict``
and ``flatten`` also read the flat form that run folders written before the sections hold.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gmai_client.errors import REDACTED, ConfigError, redact
from gmai_client.labels import distinct, model_name
from gmai_client.types import SamplingParams

DEFAULT_DATA = ("sample",)
#: Attempts per item on retryable errors, and seconds per item (all attempts and waits): written
#: here once, read by PolicySection, the CLI's help and ``retry.RetryPolicy``.
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_ITEM_DEADLINE_S = 900.0
#: More in-flight items per model than any endpoint serves; far larger values only fill memory
#: (5,000,000 reached 4.9 GB before the first item was sent).
MAX_CONCURRENCY = 4096
#: Samples per item: each is a full pass over the selection, so more is a typo, not a plan.
MAX_EPOCHS = 100


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    target: str = ""
    endpoint: str = ""
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    label: str = ""
    # The spec as written, when the label is the default one made from it ("" when the label was
    # given). Run folders made before short labels named the model by it: see ``key``.
    written: str = ""

    @property
    def key(self) -> str:
        """What the run folder's identity calls the model: the label given, else the spec as
        written (the default label before short labels), so those folders keep their identity."""
        return self.written or self.label

    def option(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        # Options may hold secrets users should not pass this way (api_key=...): redact them.
        options = {k: ("[REDACTED]" if is_secret_option(k) else redact(v)) for k, v in self.options.items()}
        return {
            "backend": self.backend,
            "target": self.target,
            "endpoint": self.endpoint,
            "options": options,
            "label": self.label,
            **({"written": redact(self.written)} if self.written else {}),
        }


_SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "credential", "credentials"})


def is_secret_option(key: str) -> bool:
    """Whether an option's value looks like a secret (``api_key``, ``hf_token``): it is never saved.

    Judged by whole words of the name, so ``max_tokens_field`` or ``max_new_tokens`` are kept; a
    name ending in ``_env`` holds the name of a variable (``api_key_env=MY_CRED``), not its value.
    """
    words = key.lower().replace("-", "_").split("_")
    return words[-1] != "env" and any(word in _SECRET_WORDS for word in words)


def parse_model_spec(text: str, options: Mapping[str, str] | Sequence[str] | None = None) -> ModelSpec:
    """Parse ``backend[:target][@endpoint]``; ``options`` is a mapping or ``key=value`` strings."""
    text = text.strip()
    if not text:
        raise ConfigError("empty model spec")
    backend, _, rest = text.partition(":")
    target, _, endpoint = rest.partition("@")
    parsed = parse_options(options or {})
    backend, target, endpoint = backend.strip().lower(), target.strip(), endpoint.strip()
    given = parsed.pop("label", "")
    label = given or model_name(backend, target)
    return ModelSpec(backend, target, endpoint, MappingProxyType(parsed), label, "" if given else text)


def parse_options(options: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    if isinstance(options, Mapping):
        return {str(k): str(v) for k, v in options.items()}
    parsed: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"backend option {option!r} is not key=value")
        parsed[key.strip()] = value.strip()
    return parsed


# --- the sections ---------------------------------------------------------------------------


def _positive(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        # NaN compares false with everything, so `value <= 0` alone would let it through.
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name.replace('_', '-')} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class DataSection:
    """Which items are asked: the data (files, folders or named splits), the selection, the first N."""

    files: tuple[str, ...] = DEFAULT_DATA  # flat name: ``data``
    select: tuple[str, ...] = ()
    limit: int | None = None
    data_dir: Path | None = None  # where named splits live; None: the XDG data dir

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"limit must be >= 0, got {self.limit}")


@dataclass(frozen=True)
class ProtocolSection:
    """What each model is asked, and who maps the answers no rule can read."""

    template: str | None = None  # None: the reference prompt
    params: SamplingParams = field(default_factory=SamplingParams)
    judge: ModelSpec | None = None  # maps answers the rules cannot read (``judge`` module)
    # The paper's multi-answer instruction for items whose key has several letters (VLMEvalKit's
    # generic prompt, the default, asks every item for one answer).
    multi_answer_instruction: bool = False
    # A system prompt every model is sent ("": none, as VLMEvalKit sends none); ``-B system=`` per model.
    system_prompt: str = ""
    # The rule set the headline is scored under (``rulesets``: vlmevalkit-2024|2025|2026, latest).
    # Scoring only: the same requests under every set, so it is no part of the run's identity.
    rules: str = "vlmevalkit-2024"
    # Samples asked of every model per item (``samples``): the headline is the first's; the others
    # give the spread over samples, a majority vote and the per-item agreement.
    epochs: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or not 1 <= self.epochs <= MAX_EPOCHS:
            raise ConfigError(f"epochs must be a whole number from 1 to {MAX_EPOCHS}, got {self.epochs!r}")
        if not (math.isfinite(self.params.temperature) and self.params.temperature >= 0):
            raise ConfigError(f"temperature must be a finite number >= 0, got {self.params.temperature!r}")
        if self.params.max_tokens < 1:
            raise ConfigError(f"max-tokens must be at least 1, got {self.params.max_tokens}")


@dataclass(frozen=True)
class PolicySection:
    """Pace and patience: how a run proceeds, never what a model answers. None means "no limit"."""

    concurrency: int = 8  # in-flight items per model
    rpm: float | None = None  # requests/min per endpoint; a model's rpm= option overrides
    tpm: float | None = None  # tokens/min per endpoint; a model's tpm= option overrides
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    attempt_timeout: float | None = None  # None: the backend's own timeout
    item_deadline: float = DEFAULT_ITEM_DEADLINE_S
    max_errors: float | None = None  # >= 1: a count; < 1: a fraction of finished items
    token_budget: int | None = None
    cache: bool = True
    cache_path: Path | None = None  # None: the user cache dir (GMAI_CLIENT_CACHE_DIR overrides)
    retry_errors: bool = False  # send the items an earlier run recorded as errors again
    batch: bool = False  # models with a batch API use it (``batch``); a model's -B batch= overrides

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ConfigError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {self.concurrency}")
        _positive(self, "rpm", "tpm", "attempt_timeout", "token_budget", "max_errors", "item_deadline")
        if self.max_attempts < 1:
            raise ConfigError(f"max-attempts must be at least 1, got {self.max_attempts}")


@dataclass(frozen=True)
class OutputSection:
    """Where the run folder goes, and whether progress is shown."""

    out: Path = Path("runs")
    run_name: str = ""  # "": the model labels and a hash of the configuration (``rundir``)
    progress: bool = True

    def __post_init__(self) -> None:
        problem = run_name_problem(self.run_name)
        if problem:
            raise ConfigError(f"run name {self.run_name!r} {problem}")
        shown = non_utf8_path(self.out)
        if shown:
            raise ConfigError(f"out: the path '{shown}' is not UTF-8 text: {NOT_UTF8_PATH}")


#: Why a path that is not UTF-8 text is refused: config.json, records and reports name their
#: files in UTF-8 JSON and text, which cannot hold the other bytes.
NOT_UTF8_PATH = "the run folder's files name it in UTF-8; rename it, or choose another"


def non_utf8_path(path: str | os.PathLike[str]) -> str:
    """ "" when ``path`` is UTF-8 text; else the path as shown, its other bytes escaped (``d\\xff``).

    A name whose bytes are not UTF-8 reaches Python as surrogate escapes, which no UTF-8 file can hold.
    """
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return ""


def run_name_problem(name: str) -> str:
    """Why ``name`` cannot be a run folder's name ("" when it can, or when it is "": the default).

    The run folder is ``out / name``: a name that is a path (``..``, ``../x``, ``/abs``, ``a/b``)
    would put it, and everything a run writes, somewhere other than inside ``out``.
    """
    if name in (".", ".."):
        return "is not a folder name: the run folder goes inside --out; give it a name of its own"
    separators = [sep for sep in ("/", os.sep, os.altsep, "\0") if sep and sep in name]
    if separators:
        return (
            f"holds {separators[0]!r}: the run folder goes inside --out, so its name is one folder name, "
            "not a path (give the path's first part with --out)"
        )
    return ""


#: Where models can run: in this process, or (torch models) on Ray actors.
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutionSection:
    """Where models run, and the seed of everything drawn at random."""

    executor: str = "local"  # "ray": torch models run on Ray actors (``backends/ray.py``)
    ray_address: str | None = None  # None: start a local Ray instance
    seed: int = 0

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor must be {' or '.join(EXECUTORS)}, got {self.executor!r}")


#: Section name -> its dataclass (the order config.json's sectioned form uses).
SECTIONS: dict[str, type] = {
    "data": DataSection,
    "protocol": ProtocolSection,
    "policy": PolicySection,
    "output": OutputSection,
    "execution": ExecutionSection,
}
#: Flat names that differ from their field's name.
_RENAMED = {("data", "files"): "data"}
#: Flat name (a keyword of ``build``, a key of config.json) -> (section, field).
FLAT_NAMES: dict[str, tuple[str, str]] = {
    _RENAMED.get((section, f.name), f.name): (section, f.name) for section, cls in SECTIONS.items() for f in fields(cls)
}

#: Flat names that only decide how a run proceeds (pace, patience, where answers are kept, where
#: models run), never which items are asked or what a model answers. ``--resume`` takes them from
#: the command line when given (saying so); every other field must agree with the saved run.
POLICY_FIELDS = frozenset({f.name for f in fields(PolicySection)} | {"executor", "ray_address", "progress", "rules"})


# --- the whole configuration ----------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run. ``run(config)`` and ``python -m gmai_client run`` take the same."""

    models: tuple[ModelSpec, ...] = (ModelSpec("random", label="random"),)
    data: DataSection = field(default_factory=DataSection)
    protocol: ProtocolSection = field(default_factory=ProtocolSection)
    policy: PolicySection = field(default_factory=PolicySection)
    output: OutputSection = field(default_factory=OutputSection)
    execution: ExecutionSection = field(default_factory=ExecutionSection)

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("no model given")
        # Sampling backends draw with the run's seed, from the CLI or a script alike.
        if self.protocol.params.seed is None:
            params = replace(self.protocol.params, seed=self.execution.seed)
            object.__setattr__(self, "protocol", replace(self.protocol, params=params))
        # Default labels that clash get the endpoint's host, then the spec as written (``labels``).
        labels = distinct([m.label for m in self.models], [(m.endpoint, m.written) for m in self.models])
        if labels != [m.label for m in self.models]:
            models = tuple(replace(m, label=label) for m, label in zip(self.models, labels, strict=True))
            object.__setattr__(self, "models", models)
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ConfigError(f"two models share the label {duplicates[0]!r}: give one label=NAME")
        if self.protocol.epochs > 1:  # "x#2" is the second sample of "x" (``samples``)
            streams = {f"{label}#{k}" for label in labels for k in range(2, self.protocol.epochs + 1)}
            taken = sorted(streams.intersection(labels))
            if taken:
                raise ConfigError(
                    f"the label {taken[0]!r} names a sample of another model under --epochs: give it another label"
                )

    @classmethod
    def build(cls, models: Sequence[str | ModelSpec] = ("random",), **flat: Any) -> RunConfig:
        """For scripts: model specs as strings, every other field by its flat name (``FLAT_NAMES``),
        sequences as lists, paths as strings."""
        specs = tuple(m if isinstance(m, ModelSpec) else parse_model_spec(m) for m in models)
        if isinstance(flat.get("judge"), str):
            flat["judge"] = parse_model_spec(flat["judge"])
        for key in ("data", "select"):
            if key in flat and isinstance(flat[key], str):
                flat[key] = (flat[key],)
        return cls.from_flat(models=specs, **_coerced(flat))

    @classmethod
    def from_flat(cls, **flat: Any) -> RunConfig:
        """A config from its fields by flat name (``models`` too), each section built once; the
        fields not named keep their defaults."""
        models = tuple(flat.pop("models")) if "models" in flat else cls.__dataclass_fields__["models"].default
        sections = {section: SECTIONS[section](**values) for section, values in _grouped(flat).items()}
        return cls(models, **sections)

    def updated(self, **flat: Any) -> RunConfig:
        """A copy with the fields named flat (``limit=20``, ``rpm=600``; ``models=`` too) changed.
        Like ``dataclasses.replace``: a new ``seed`` leaves the sampling parameters' seed as it is."""
        models = tuple(flat.pop("models", self.models))
        grouped = _grouped(flat)
        return replace(
            self, models=models, **{name: replace(getattr(self, name), **values) for name, values in grouped.items()}
        )

    def flat(self) -> dict[str, Any]:
        """Every field by its flat name (``models`` first), as Python values."""
        values: dict[str, Any] = {"models": self.models}
        for name, (section, field_name) in FLAT_NAMES.items():
            values[name] = getattr(getattr(self, section), field_name)
        return values

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Rebuild a config from a run folder's config.json (``--resume RUN_DIR``), flat or by sections."""
        flat = flatten(data)
        values = {key: value for key, value in flat.items() if key in FLAT_NAMES}
        values["models"] = tuple(_spec_from_dict(m) for m in flat.get("models") or ())
        if values.get("judge"):
            values["judge"] = _spec_from_dict(values["judge"])
        if isinstance(values.get("params"), Mapping):
            values["params"] = SamplingParams(**values["params"])
        for name in SAVED_TEXTS:
            refuse_redacted(name, values.get(name))
        return cls.from_flat(**_coerced(values))

    def as_dict(self, *, flat: bool = False) -> dict[str, Any]:
        """The resolved config as config.json holds it, without secrets: the models, then each
        section's fields (or every field by its flat name)."""
        data = {name: _plain(value) for name, value in self.flat().items()}
        if flat:
            return data
        grouped: dict[str, Any] = {"models": data.pop("models")}
        for name, value in data.items():
            section, field_name = FLAT_NAMES[name]
            grouped.setdefault(section, {})[field_name] = value
        return grouped


def flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config.json ``config`` object by flat names, whether it was written flat or by sections."""
    if not any(isinstance(data.get(section), Mapping) for section in SECTIONS):
        return dict(data)
    flat = {key: value for key, value in data.items() if key not in SECTIONS}
    for section in SECTIONS:
        for field_name, value in (data.get(section) or {}).items():
            flat[_RENAMED.get((section, field_name), field_name)] = value
    return flat


def _grouped(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Fields by flat name -> section -> {field: value}; an unknown name is an error naming the known."""
    grouped: dict[str, dict[str, Any]] = {}
    for name, value in flat.items():
        if name not in FLAT_NAMES:
            raise ConfigError(f"unknown configuration field {name!r}; fields: models, {', '.join(FLAT_NAMES)}")
        section, field_name = FLAT_NAMES[name]
        grouped.setdefault(section, {})[field_name] = value
    return grouped


def _coerced(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat values as the sections hold them: tuples for sequences, paths for paths."""
    for key in ("data", "select"):
        if key in flat:
            flat[key] = tuple(flat[key])
    for key in ("out", "cache_path", "data_dir"):
        if flat.get(key) is not None:
            flat[key] = Path(flat[key])
    return flat


def _plain(value: Any) -> Any:
    """A field's value as config.json holds it."""
    if isinstance(value, tuple) and value and isinstance(value[0], ModelSpec):
        return [spec.as_dict() for spec in value]
    if isinstance(value, (ModelSpec, SamplingParams)):
        return value.as_dict()
    if isinstance(value, Path):
        return str(value)
    return value


def run_default(name: str) -> Any:
    """The default of a field, by its flat name: the one place every default is written (the CLI's
    help and its "not given" options read it here)."""
    section, field_name = FLAT_NAMES[name]
    spec = SECTIONS[section].__dataclass_fields__[field_name]
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return spec.default


#: The texts config.json saves whole (the prompt template, the system prompt): redacted where they
#: held something shaped like a key, so such a saved text is not the one that was sent.
SAVED_TEXTS = ("template", "system_prompt")


def refuse_redacted(name: str, value: Any) -> None:
    """A ``ConfigError`` when a text read back from config.json had part of it redacted: running it
    would send other words than the run did (under the same run folder)."""
    if isinstance(value, str) and REDACTED in value:
        shown = name.replace("_", " ")
        raise ConfigError(
            f"config.json: the saved {shown} held text shaped like a key, which is never saved ({REDACTED} in its "
            "place), so it cannot be sent again as it was: rerun the original command (it finds the same run folder)"
        )


def _spec_from_dict(data: Mapping[str, Any]) -> ModelSpec:
    """A spec as saved in config.json; secret-looking options were not saved, so they cannot come back."""
    try:
        options = dict(data["options"])
        spec = ModelSpec(
            data["backend"],
            data.get("target", ""),
            data.get("endpoint", ""),
            MappingProxyType(options),
            data["label"],
            str(data.get("written") or ""),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"config.json has an unusable model entry ({exc})") from None
    hidden = [key for key, value in options.items() if REDACTED in str(value)]
    if REDACTED in spec.endpoint:  # credentials in the URL (user:password@, ?key=) are never saved
        hidden.insert(0, "endpoint")
    if hidden:
        raise ConfigError(
            f"{spec.label}: {'the endpoint' if hidden[0] == 'endpoint' else 'option ' + hidden[0]} was not saved "
            "whole (it looks secret); rerun the original command"
        )
    return spec

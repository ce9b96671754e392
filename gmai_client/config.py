"""Run configuration: what the CLI and the SDK both build, and what a run folder records.

A model is named by a spec string ``backend[:target][@endpoint]`` plus ``key=value`` options:

    random                      the seeded random baseline
    replay:preds.jsonl          answers recorded elsewhere, re-scored here
    openai:gpt-4o               an API model (key from the environment, never from the spec)
    openai:llava@http://gpu-box:8000/v1
    triton:llava@gpu-box:8001
    torch:/models/Qwen2-VL-7B-Instruct

Option ``label=NAME`` renames the model in records and tables (two runs of one model with
different options need different labels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gmai_client.errors import ConfigError, redact
from gmai_client.types import SamplingParams

DEFAULT_DATA = ("sample",)
#: Attempts per item on retryable errors, and seconds per item (all attempts and waits): written
#: here once, read by RunConfig, the CLI's help and ``retry.RetryPolicy``.
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_ITEM_DEADLINE_S = 900.0
#: More in-flight items per model than any endpoint serves; far larger values only fill memory
#: (5,000,000 reached 4.9 GB before the first item was sent).
MAX_CONCURRENCY = 4096

#: RunConfig fields that only decide how a run proceeds (pace, patience, where answers are kept),
#: never which items are asked or what a model answers. ``--resume`` takes them from the command
#: line when given (saying so); every other field must agree with the saved run.
POLICY_FIELDS = frozenset(
    {
        "concurrency",
        "rpm",
        "tpm",
        "max_attempts",
        "attempt_timeout",
        "item_deadline",
        "max_errors",
        "token_budget",
        "cache",
        "cache_path",
        "executor",
        "ray_address",
        "retry_errors",
        "progress",
    }
)


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    target: str = ""
    endpoint: str = ""
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    label: str = ""

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
    label = parsed.pop("label", "") or text
    return ModelSpec(backend.strip().lower(), target.strip(), endpoint.strip(), MappingProxyType(parsed), label)


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


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run. ``run(config)`` and ``python -m gmai_client run`` take the same."""

    models: tuple[ModelSpec, ...] = (ModelSpec("random", label="random"),)
    data: tuple[str, ...] = DEFAULT_DATA
    select: tuple[str, ...] = ()
    concurrency: int = 8
    limit: int | None = None
    seed: int = 0
    out: Path = Path("runs")
    run_name: str = ""
    template: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    data_dir: Path | None = None
    retry_errors: bool = False
    progress: bool = True
    # Reliability (issue: rate limits, retries, cache, budgets). None means "no limit".
    cache: bool = True
    cache_path: Path | None = None  # None: the user cache dir (GMAI_CLIENT_CACHE_DIR overrides)
    rpm: float | None = None  # requests/min per endpoint; a model's rpm= option overrides
    tpm: float | None = None  # tokens/min per endpoint; a model's tpm= option overrides
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    attempt_timeout: float | None = None  # None: the backend's own timeout
    item_deadline: float = DEFAULT_ITEM_DEADLINE_S
    max_errors: float | None = None  # >= 1: a count; < 1: a fraction of finished items
    token_budget: int | None = None
    judge: ModelSpec | None = None  # maps answers the rules cannot read (``judge`` module)
    executor: str = "local"  # "ray": torch models run on Ray actors (``backends/ray.py``)
    ray_address: str | None = None  # None: start a local Ray instance

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("no model given")
        if self.params.seed is None:  # sampling backends draw with the run's seed, from the CLI or a script alike
            object.__setattr__(self, "params", replace(self.params, seed=self.seed))
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ConfigError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {self.concurrency}")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"limit must be >= 0, got {self.limit}")
        for name in ("rpm", "tpm", "attempt_timeout", "token_budget", "max_errors", "item_deadline"):
            value = getattr(self, name)
            # NaN compares false with everything, so `value <= 0` alone would let it through.
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name.replace('_', '-')} must be a positive finite number, got {value!r}")
        if not (math.isfinite(self.params.temperature) and self.params.temperature >= 0):
            raise ConfigError(f"temperature must be a finite number >= 0, got {self.params.temperature!r}")
        if self.params.max_tokens < 1:
            raise ConfigError(f"max-tokens must be at least 1, got {self.params.max_tokens}")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"executor must be local or ray, got {self.executor!r}")
        if self.max_attempts < 1:
            raise ConfigError(f"max-attempts must be at least 1, got {self.max_attempts}")
        labels = [model.label for model in self.models]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ConfigError(f"two models share the label {duplicates[0]!r}: give one label=NAME")

    @classmethod
    def build(
        cls,
        models: Sequence[str | ModelSpec] = ("random",),
        **kwargs: Any,
    ) -> RunConfig:
        """Convenience for scripts: model specs as strings, sequences as lists."""
        specs = tuple(m if isinstance(m, ModelSpec) else parse_model_spec(m) for m in models)
        if isinstance(kwargs.get("judge"), str):
            kwargs["judge"] = parse_model_spec(kwargs["judge"])
        for key in ("data", "select"):
            if key in kwargs and isinstance(kwargs[key], str):
                kwargs[key] = (kwargs[key],)
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        for key in ("out", "cache_path", "data_dir"):
            if kwargs.get(key) is not None:
                kwargs[key] = Path(kwargs[key])
        return cls(models=specs, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Rebuild a config from a run folder's config.json (``--resume RUN_DIR``)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known and key != "models"}
        models = tuple(_spec_from_dict(m) for m in data.get("models") or ())
        if data.get("judge"):
            values["judge"] = _spec_from_dict(data["judge"])
        for key in ("data", "select"):
            if key in values:
                values[key] = tuple(values[key])
        for key in ("out", "cache_path", "data_dir"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if "params" in values:
            values["params"] = SamplingParams(**values["params"])
        return cls(models=models, **values)

    def as_dict(self) -> dict[str, Any]:
        """The resolved config as written to the run folder: no secrets."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["models"] = [model.as_dict() for model in self.models]
        data["judge"] = self.judge.as_dict() if self.judge else None
        data["params"] = self.params.as_dict()
        data["out"] = str(self.out)
        data["data_dir"] = str(self.data_dir) if self.data_dir else None
        data["cache_path"] = str(self.cache_path) if self.cache_path else None
        return data


def run_default(name: str) -> Any:
    """The default of a RunConfig field: the one place every default is written (the CLI's help
    and its "not given" options read it here)."""
    spec = RunConfig.__dataclass_fields__[name]
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return spec.default


def _spec_from_dict(data: Mapping[str, Any]) -> ModelSpec:
    """A spec as saved in config.json; secret-looking options were not saved, so they cannot come back."""
    try:
        options = dict(data["options"])
        spec = ModelSpec(
            data["backend"], data.get("target", ""), data.get("endpoint", ""), MappingProxyType(options), data["label"]
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"config.json has an unusable model entry ({exc})") from None
    hidden = [key for key, value in options.items() if value == "[REDACTED]"]
    if hidden:
        raise ConfigError(
            f"{spec.label}: option {hidden[0]} was not saved (it looks secret); rerun the original command"
        )
    return spec

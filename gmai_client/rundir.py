"""The run folder: its name, what it must agree with before it is reused, and its lock.

A run folder holds the records of one configuration, so it has an identity: everything that can
change an answer or the set of items asked.

- the data files (absolute paths), the selection, the prompt template, the sampling parameters and
  the seed;
- per model (and for the judge): its label, backend, target, endpoint as written, every ``-B``
  option except the answer-neutral ones (label, rpm, tpm, timeouts, the key's variable, transport
  and scheduling options: ``Neutral``, which the runner takes from the registry, since this module
  is part of the results and may not import the backends), and the backend's resolved
  ``identity()``: the model and the endpoint it will really call (after ``@URL``, ``base_url=``,
  ``OPENAI_BASE_URL``...), the image options that change what the model sees.

Pace and patience (concurrency, rates, attempts, deadlines, budgets, cache, executor) are not part
of it: they decide how a run proceeds, not what it answers (``config.POLICY_FIELDS``).

The default folder name ends in a hash of the identity and ``limit``: a different command gets a
different folder. A folder chosen by name (``--run-name``, ``--resume``) is compared with the
identity saved in its config.json and refused when they differ, naming what differs: its records
came from another configuration and must not be counted as this one's. ``limit`` alone may grow
(the items of a smaller limit are the first ones of the larger).

``RunLock`` keeps a second process out of a folder in use: ``fcntl.flock`` on ``.lock``, which the
kernel drops when its holder dies (a stale lock never blocks); the file holds the holder's pid for
the error message. Where ``fcntl`` is missing (Windows) there is no lock.

The folder's documents are read and written here and nowhere else, typed and versioned
(``SCHEMA_VERSION``): ``config.json`` (``SavedConfig``: the resolved configuration without secrets,
the data files, the identity, versions) and ``metrics.json`` (``MetricsDocument``: per-model
``ModelMetrics``, the comparison, ``RunFigures`` - what only the run knew - and what the figures
mean). ``records.jsonl`` is the run's journal (``records``). Reports read these types, never raw
JSON. A document of an older version is read with defaults for what it lacks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gmai_client.backend import Backend
from gmai_client.config import RunConfig, flatten
from gmai_client.errors import ConfigError, redact
from gmai_client.metrics import Comparison, GroupStats, McqStats, ModelMetrics, PairedTest

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: The version of config.json and metrics.json written by this client (1: before versions were written).
SCHEMA_VERSION = 2
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
RECORDS_FILE = "records.jsonl"
LOCK_FILE = ".lock"

#: Backend name -> its options that cannot change an answer (``registry.answer_neutral_options``).
Neutral = Callable[[str], Iterable[str]]


# --- identity -------------------------------------------------------------------------------


def _model_part(model: Mapping[str, Any], neutral_options: Neutral) -> dict[str, Any]:
    """A model as saved in config.json (``ModelSpec.as_dict``), without its answer-neutral options."""
    neutral = set(neutral_options(str(model.get("backend", ""))))
    options = model.get("options") or {}
    return {
        "backend": model.get("backend", ""),
        "target": model.get("target", ""),
        "endpoint": model.get("endpoint", ""),
        "options": {key: options[key] for key in sorted(options) if key not in neutral},
    }


def decisive(config: Mapping[str, Any], data_files: Sequence[str], neutral: Neutral) -> dict[str, Any]:
    """The part of the identity a saved config.json alone tells (``RunConfig.as_dict`` form, by
    sections, or flat as earlier versions wrote it)."""
    config = flatten(config)
    params = dict(config.get("params") or {})
    judge = config.get("judge")
    return {
        "data_files": [str(Path(path).resolve()) for path in data_files],
        "select": list(config.get("select") or ()),
        "template": config.get("template"),
        "params": {
            "temperature": float(params.get("temperature", 0.0)),
            "max_tokens": int(params.get("max_tokens", 0)),
            "seed": params.get("seed"),
            "repeat": int(params.get("repeat", 0)),
        },
        "seed": config.get("seed"),
        "models": {str(m.get("label", "")): _model_part(m, neutral) for m in config.get("models") or ()},
        "judge": _model_part(judge, neutral) if judge else None,
        # Only when on: the identities (and folder names) of runs without it stay as they were.
        **({"multi_answer_instruction": True} if config.get("multi_answer_instruction") else {}),
    }


def identity(
    config: RunConfig,
    data_files: Sequence[str],
    backends: Mapping[str, Backend],
    judge: Backend | None,
    neutral: Neutral,
) -> dict[str, Any]:
    """Everything that can change an answer or the item set (see the module docstring), as saved."""
    value = {
        **decisive(config.as_dict(), data_files, neutral),
        "resolved": {
            "models": {spec.label: dict(backends[spec.label].identity()) for spec in config.models},
            "judge": dict(judge.identity()) if judge is not None else None,
        },
    }
    # Saved through ``redact`` (config.json is): compare what will be read back, not what was meant.
    return json.loads(redact(json.dumps(value, sort_keys=True, default=str)))


def folder_name(config: RunConfig, ident: Mapping[str, Any]) -> str:
    """``<model labels>-<hash of the identity and the limit>``, or ``config.run_name``."""
    if config.output.run_name:
        return config.output.run_name
    payload = json.dumps({**ident, "limit": config.data.limit}, sort_keys=True, default=str)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:8]
    return f"{'-'.join(_slug(spec.label) for spec in config.models)[:80]}-{digest}"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("_") or "model"


def make_run_dir(config: RunConfig, ident: Mapping[str, Any]) -> Path:
    path = config.output.out / folder_name(config, ident)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder {path}: {exc.strerror or exc}") from None
    return path


# --- reuse ----------------------------------------------------------------------------------


def check_reuse(run_dir: Path, ident: Mapping[str, Any], limit: int | None, neutral: Neutral) -> None:
    """Refuse a folder whose saved run differs from this one in anything but a larger ``limit``."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        records = run_dir / RECORDS_FILE
        if records.exists() and records.stat().st_size:
            raise ConfigError(
                f"{run_dir} holds records but no {CONFIG_FILE}: nothing says which run they belong to; "
                "give another --run-name (or --out)"
            )
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        saved_config = saved["config"]
        saved_ident = saved.get("identity") or decisive(saved_config, saved.get("data_files") or (), neutral)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc}): cannot tell which run this folder holds") from None
    if not isinstance(saved_ident, dict):
        raise ConfigError(f"{path} is unreadable (its identity is not an object)")
    if "resolved" not in saved_ident:  # written before resolved identities were saved
        ident = {key: value for key, value in ident.items() if key != "resolved"}
    differences = _differences(saved_ident, dict(ident))
    saved_limit = flatten(saved_config).get("limit") if isinstance(saved_config, dict) else None
    if saved_limit is not None and limit is not None and limit < saved_limit:
        differences.append(
            f"limit: {saved_limit} in the folder, {limit} here (its records beyond the first {limit} items would "
            "be counted; a limit may only grow)"
        )
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise ConfigError(
            f"{run_dir} holds another run, so it is not resumed: {shown}. Its records would be counted as this "
            "run's: give another --run-name (the default name is per configuration)"
        )


def _differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    saved_models = list((saved.get("models") or {}).keys())
    current_models = list((current.get("models") or {}).keys())
    if set(saved_models) != set(current_models):
        out.append(f"models: {', '.join(saved_models) or 'none'} in the folder, {', '.join(current_models)} here")
        saved = {k: v for k, v in saved.items() if k != "models" and k != "resolved"}
        current = {k: v for k, v in current.items() if k != "models" and k != "resolved"}
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    for key in sorted(set(flat_saved) | set(flat_current), key=_order):
        before, now = flat_saved.get(key, _UNSET), flat_current.get(key, _UNSET)
        if before != now:
            out.append(f"{key}: {_show(before)} in the folder, {_show(now)} here")
    return out


_UNSET = object()
_ORDER = ("models", "judge", "data_files", "select", "template", "params", "seed", "resolved")


def _order(key: str) -> tuple[int, str]:
    head = key.split(".", 1)[0]
    return (_ORDER.index(head) if head in _ORDER else len(_ORDER), key)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _show(value: Any) -> str:
    if value is _UNSET:
        return "not set"
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- lock -----------------------------------------------------------------------------------


class RunLock:
    """One process at a time in a run folder (see the module docstring)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot write in the run folder {self.run_dir}: {exc.strerror or exc}") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ConfigError(f"cannot lock the run folder {self.run_dir}: {exc.strerror or exc}") from None
                raise ConfigError(
                    f"the run folder {self.run_dir} is in use by another gmai_client process "
                    f"(pid {holder or 'unknown'}): wait for it to end or stop it, or give another --run-name"
                ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot write in the run folder {self.run_dir}: {exc.strerror or exc}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a later reader sees no holder (the file stays: see flock's semantics)
        os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


# --- documents: config.json and metrics.json ------------------------------------------------


@dataclass(frozen=True)
class SavedConfig:
    """config.json: the resolved configuration (no secrets), what it ran on, and with what."""

    config: Mapping[str, Any]  # ``RunConfig.as_dict()``
    data_files: tuple[str, ...] = ()
    identity: Mapping[str, Any] | None = None
    gmai_client: str = ""
    python: str = ""
    written: str = ""
    schema: int = 1

    def setting(self, name: str, default: Any = None) -> Any:
        """A configuration value by name, whether config.json keeps it flat or in a section."""
        if name in self.config:
            return self.config[name]
        for section in self.config.values():
            if isinstance(section, Mapping) and name in section:
                return section[name]
        return default

    @property
    def model_labels(self) -> list[str]:
        models = self.config.get("models") or []
        return [str(m.get("label")) for m in models if isinstance(m, Mapping) and m.get("label")]


def write_config(
    run_dir: Path, config: RunConfig, data_files: Sequence[str], *, identity: Mapping[str, Any] | None = None
) -> Path:
    from gmai_client import __version__

    saved = SavedConfig(
        config=config.as_dict(),
        data_files=tuple(data_files),
        identity=identity,
        gmai_client=__version__,
        python=platform.python_version(),
        written=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        schema=SCHEMA_VERSION,
    )
    payload = {**asdict(saved), "data_files": list(saved.data_files)}
    if identity is None:
        del payload["identity"]
    return _write_json(run_dir / CONFIG_FILE, payload)


def read_config(run_dir: Path) -> SavedConfig | None:
    """The folder's config.json, or None when it is missing or unreadable."""
    data = _read_json(run_dir / CONFIG_FILE)
    if data is None or not isinstance(data.get("config"), dict):
        return None
    return SavedConfig(
        config=data["config"],
        data_files=tuple(str(f) for f in data.get("data_files") or ()),
        identity=data.get("identity") if isinstance(data.get("identity"), dict) else None,
        gmai_client=str(data.get("gmai_client", "")),
        python=str(data.get("python", "")),
        written=str(data.get("written", "")),
        schema=int(data.get("schema", 1)),
    )


@dataclass(frozen=True)
class ModelFigures:
    """What only the run knew about one model: counts of its requests, and why it stopped."""

    label: str
    done: int = 0
    errors: int = 0
    skipped: int = 0  # finished in an earlier run (resume)
    stopped: str = ""
    requests_sent: int = 0
    cache_hits: int = 0
    throttled: int = 0
    placement: tuple[Mapping[str, Any], ...] = ()  # per endpoint or per Ray actor


@dataclass(frozen=True)
class JudgeFigures:
    """What the judge cost and changed (``judge.JudgeCounts`` at the end of the run)."""

    model: str = ""
    asked: int = 0
    requests: int = 0
    cache_hits: int = 0
    rescued: int = 0
    no_match: int = 0
    fallback: int = 0  # no usable verdict: VLMEvalKit would draw a random letter here
    failed_calls: int = 0
    stopped: str = ""


@dataclass(frozen=True)
class RunFigures:
    interrupted: bool = False
    elapsed_s: float = 0.0
    failure: str = ""  # why the whole run ended early, if it did
    models: tuple[ModelFigures, ...] = ()
    judge: JudgeFigures | None = None


@dataclass(frozen=True)
class MetricsDocument:
    """metrics.json: per-model metrics, the comparison between models, the run's own figures."""

    models: Mapping[str, ModelMetrics]
    comparison: Comparison | None = None
    run: RunFigures = field(default_factory=RunFigures)
    protocol: Mapping[str, str] = field(default_factory=dict)  # what the figures mean
    schema: int = SCHEMA_VERSION


def write_metrics(run_dir: Path, document: MetricsDocument) -> Path:
    models: dict[str, Any] = {}
    for label, m in document.models.items():
        models[label] = {**asdict(m), "incomplete": m.incomplete}
        models[label]["multi_answer"] = models[label].pop("mcq")
        del models[label]["model"]
        if m.incomplete:
            models[label]["note"] = (
                f"incomplete: {m.overall.errored} item(s) got no answer; 'accuracy' counts them wrong "
                "(VLMEvalKit's figure), 'answered_accuracy' leaves them out"
            )
        if not m.has_key:
            models[label]["note"] = "no answer key in this split: predictions only, no accuracy"
    payload: dict[str, Any] = {"schema": document.schema, "protocol": dict(document.protocol), "models": models}
    if document.comparison is not None:
        payload["comparison"] = asdict(document.comparison)
    payload["run"] = run_figures_json(document.run)
    return _write_json(run_dir / METRICS_FILE, payload, redacted=False)


def read_metrics(run_dir: Path) -> MetricsDocument | None:
    """The folder's metrics.json, or None when it is missing or unreadable."""
    data = _read_json(run_dir / METRICS_FILE)
    if data is None or not isinstance(data.get("models"), dict):
        return None
    try:
        models = {label: _model_metrics(label, m) for label, m in data["models"].items()}
        comparison = _comparison(data["comparison"]) if isinstance(data.get("comparison"), dict) else None
        run = _run_from_json(data.get("run") or {})
    except (TypeError, KeyError, ValueError, AttributeError):
        return None
    return MetricsDocument(models, comparison, run, data.get("protocol") or {}, int(data.get("schema", 1)))


def run_figures_json(run: RunFigures) -> dict[str, Any]:
    """The run section of metrics.json."""
    out = asdict(run)
    out["elapsed_s"] = round(run.elapsed_s, 3)
    # Keyed by label, as in schema 1, so readers can look a model up.
    out["models"] = {figures["label"]: figures for figures in out["models"]}
    for figures in out["models"].values():
        del figures["label"]
        if not figures["placement"]:
            del figures["placement"]
    if out["judge"] is None:
        del out["judge"]
    return out


def _run_from_json(data: Mapping[str, Any]) -> RunFigures:
    models = tuple(
        _known(ModelFigures, {**figures, "label": label, "placement": tuple(figures.get("placement") or ())})
        for label, figures in (data.get("models") or {}).items()
    )
    judge = _known(JudgeFigures, data["judge"]) if isinstance(data.get("judge"), dict) else None
    return RunFigures(
        bool(data.get("interrupted", False)), float(data.get("elapsed_s", 0.0)), str(data.get("failure", "")),
        models, judge,
    )  # fmt: skip


def _model_metrics(label: str, data: Mapping[str, Any]) -> ModelMetrics:
    groups = {
        view: {name: _known(GroupStats, stats) for name, stats in names.items()}
        for view, names in data["groups"].items()
    }
    values = _known(ModelMetrics, {**data, "model": label, "groups": groups}, build=False)
    values["overall"] = _known(GroupStats, data["overall"])
    values["mcq"] = _known(McqStats, data["multi_answer"] if "multi_answer" in data else data["mcq"])
    return ModelMetrics(**values)


def _comparison(data: Mapping[str, Any]) -> Comparison:
    paired = {label: _known(PairedTest, test) for label, test in (data.get("paired") or {}).items()}
    return Comparison(data["reference"], data["deltas"], data["overall_deltas"], paired)


def _known(cls: type, data: Mapping[str, Any], *, build: bool = True) -> Any:
    """``cls`` from the keys of ``data`` it knows (a newer document may have more, an older fewer)."""
    names = {f.name for f in fields(cls)}
    values = {key: value for key, value in data.items() if key in names}
    return cls(**values) if build else values


def _write_json(path: Path, payload: Mapping[str, Any], *, redacted: bool = True) -> Path:
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text((redact(text) if redacted else text) + "\n", encoding="utf-8")
    tmp.replace(path)  # readers never see half a document
    return path


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

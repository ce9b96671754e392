"""The run folder's documents, typed and versioned: config.json and metrics.json."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gmai_client.config import RunConfig
from gmai_client.errors import ConfigError, redact
from gmai_client.protocol.metrics import Comparison, GroupStats, McqStats, ModelMetrics, PairedTest
from gmai_client.results.atomic import written_whole
from gmai_client.version import __version__

#: The version of config.json and metrics.json written by this client (1: before versions were written).
SCHEMA_VERSION = 2
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
RECORDS_FILE = "records.jsonl"
#: What ``compare`` writes beside its reports (``compare_report``): a comparison's folder, not a run's.
COMPARE_FILE = "compare.json"


# --- documents: config.json and metrics.json ------------------------------------------------


@dataclass(frozen=True)
class SavedConfig:
    """config.json: the resolved configuration (no secrets), what it ran on, and with what."""

    config: Mapping[str, Any]  # ``RunConfig.as_dict()``
    data_files: tuple[str, ...] = ()
    identity: Mapping[str, Any] | None = None
    gmai_client: str = ""
    python: str = ""
    written: str = ""  # when this config.json was written: the start of the last invocation
    schema: int = 1
    started: str = ""  # when the run first started (kept by every resume); "" in folders before it was kept

    @property
    def first_started(self) -> str:
        return self.started or self.written

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
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    before = read_config(run_dir)  # a resume: the run started when this folder's first run did
    saved = SavedConfig(
        config=config.as_dict(),
        data_files=tuple(data_files),
        identity=identity,
        gmai_client=__version__,
        python=platform.python_version(),
        written=now,
        schema=SCHEMA_VERSION,
        started=before.first_started if before is not None and before.first_started else now,
    )
    payload = {**asdict(saved), "data_files": list(saved.data_files)}
    if identity is None:
        del payload["identity"]
    return _write_json(run_dir / CONFIG_FILE, payload)


def save_rules(run_dir: Path, name: str) -> Path | None:
    """Record in config.json that the folder is now scored under rule set ``name`` (``report
    --rules``); the run's identity is untouched (a rule set changes no answer)."""
    path = run_dir / CONFIG_FILE
    data = _read_json(path)
    if data is None or not isinstance(data.get("config"), dict):
        return None
    config = data["config"]
    section = config.get("protocol")
    (section if isinstance(section, dict) else config)["rules"] = name
    return _write_json(path, data)


def read_existing_config(run_dir: Path) -> SavedConfig | None:
    """The folder's config.json; None when there is none; a ``ConfigError`` when there is one that
    cannot be read (nothing can say what was run, so nothing is scored or compared as if known)."""
    saved = read_config(run_dir)
    if saved is None and (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{run_dir / CONFIG_FILE} is unreadable (not a run configuration): cannot tell what was run")
    return saved


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
        started=str(data.get("started", "")),
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
    failed_items: int = 0  # of ``fallback``: items left unjudged because every call for them failed


@dataclass(frozen=True)
class RunFigures:
    interrupted: bool = False
    elapsed_s: float = 0.0
    failure: str = ""  # why the whole run ended early, if it did
    models: tuple[ModelFigures, ...] = ()
    judge: JudgeFigures | None = None
    selected: int | None = None  # items the run selected, asked of every model (None: not counted)


@dataclass(frozen=True)
class MetricsDocument:
    """metrics.json: per-model metrics, the comparison between models, the run's own figures."""

    models: Mapping[str, ModelMetrics]
    comparison: Comparison | None = None
    run: RunFigures = field(default_factory=RunFigures)
    protocol: Mapping[str, str] = field(default_factory=dict)  # what the figures mean
    schema: int = SCHEMA_VERSION
    rule_sets: Mapping[str, Any] = field(default_factory=dict)  # the headline under every rule set
    epochs: Mapping[str, Any] = field(default_factory=dict)  # --epochs N: each model's samples summed up


def write_metrics(run_dir: Path, document: MetricsDocument) -> Path:
    models: dict[str, Any] = {}
    for label, m in document.models.items():
        counts = {"incomplete": m.incomplete, "answered": m.answered, "unanswered": m.unanswered}
        models[label] = {**asdict(m), **counts}
        models[label]["multi_answer"] = models[label].pop("mcq")
        del models[label]["model"]
        if m.incomplete:
            of = f"{m.selected} selected" if m.selected is not None else f"{m.overall.n} recorded"
            models[label]["note"] = (
                f"incomplete: {m.unanswered} of {of} item(s) got no answer ({m.overall.errored} ended in an error); "
                "'accuracy' covers the recorded items, errors counted wrong (VLMEvalKit's figure), "
                "'answered_accuracy' leaves the errors out"
            )
        if not m.has_key:
            models[label]["note"] = "no answer key in this split: predictions only, no accuracy"
    payload: dict[str, Any] = {"schema": document.schema, "protocol": dict(document.protocol), "models": models}
    if document.comparison is not None:
        payload["comparison"] = asdict(document.comparison)
    payload["run"] = run_figures_json(document.run)
    if document.rule_sets:
        payload["rule_sets"] = dict(document.rule_sets)
    if document.epochs:
        payload["epochs"] = dict(document.epochs)
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
    selected = data.get("selected")
    return RunFigures(
        bool(data.get("interrupted", False)), float(data.get("elapsed_s", 0.0)), str(data.get("failure", "")),
        models, judge, selected if isinstance(selected, int) and not isinstance(selected, bool) else None,
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
    with written_whole(path) as tmp:  # readers never see half a document
        tmp.write_text((redact(text) if redacted else text) + "\n", encoding="utf-8")
    return path


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

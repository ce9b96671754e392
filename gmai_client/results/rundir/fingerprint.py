"""The run folder's identity (its fingerprint): what it must agree with before it is reused, and its name."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gmai_client.backend import Backend
from gmai_client.config import RunConfig, flatten
from gmai_client.errors import ConfigError, redact
from gmai_client.results.rundir.documents import CONFIG_FILE, RECORDS_FILE

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
    models = config.get("models") or ()
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
        # Keyed by the label given, else the spec as written (``ModelSpec.key``): the default label
        # became the short model name, and the identities of earlier folders must not change.
        "models": {str(m.get("written") or m.get("label", "")): _model_part(m, neutral) for m in models},
        "judge": _model_part(judge, neutral) if judge else None,
        # Only when on: the identities (and folder names) of runs without it stay as they were.
        **({"multi_answer_instruction": True} if config.get("multi_answer_instruction") else {}),
        **({"system_prompt": config["system_prompt"]} if config.get("system_prompt") else {}),
        **({"epochs": int(config["epochs"])} if int(config.get("epochs") or 1) > 1 else {}),
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
            "models": {spec.key: dict(backends[spec.label].identity()) for spec in config.models},
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

"""Runs made apart, made comparable: ``python -m gmai_client compare RUN_DIR...`` (the report is ``compare_report``).

Two run folders can be set side by side only on what both asked the same way. This module reads the
folders (nothing is sent) and builds the records of one run with all their models:

- **items**: an item is compared when every run holds a record of it (any of its models) and the runs
  read the same content for it: the records' ``item_digest`` (a hash of the row as read, images
  included: ``rundir.items``) agree, or, for records written before digests, their answer cells.
  Items one run lacks are left out and counted; an item whose content differs (same index, another
  row) is named and left out. ``strict`` refuses both instead.
- **how they were asked**: the prompt template, the system prompt, the multi-answer instruction and the
  sampling parameters of each run are set side by side; what differs is said (``strict`` refuses it).
- **rules**: every record is read again under one rule set (the one asked for, else the runs' own when
  they agree, else the headline's default), each model's answers as one column of VLMEvalKit's file
  restricted to the compared items, as one run of those items would score them.
- **samples**: a run of ``--epochs N`` takes part with each model's first sample, its headline;
- **labels**: a model keeps its label; two runs of one label are told apart by the run's date (then
  its time, then its folder's name).

A folder a run is still writing is refused (its lock is held while it is read, as ``report`` does).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gmai_client.config import flatten
from gmai_client.errors import ConfigError
from gmai_client.protocol.rulesets import DEFAULT_RULES, UNNAMED_RULES, RuleSet, rule_set
from gmai_client.protocol.scoring import score_answer_set
from gmai_client.results.records import read_records
from gmai_client.results.rundir import RECORDS_FILE, RunLock, SavedConfig, holder, read_existing_config
from gmai_client.samples import extra_samples, saved_epochs
from gmai_client.types import Record

#: How many changed or missing items a message names before it counts the rest.
_NAMED = 5


@dataclass(frozen=True)
class SourceRun:
    """A run folder as read for a comparison."""

    folder: Path
    saved: SavedConfig | None
    records: tuple[Record, ...]  # the records compared: its models' (their first samples')
    labels: tuple[str, ...]  # its models, in the run's order
    rules: str  # the rule set its records were scored under
    every: tuple[Record, ...] = ()  # all its records (every sample, every label): what its status counts
    strays: tuple[str, ...] = ()  # labels its records carry that its config.json names no model of

    @property
    def started(self) -> str:
        return self.saved.first_started if self.saved is not None else ""

    @property
    def epochs(self) -> int:
        return saved_epochs(flatten(self.saved.config)) if self.saved is not None else 1

    @property
    def protocol(self) -> dict[str, Any]:
        """How this run asked its items (what must agree for a fair comparison), shown as text."""
        flat = flatten(self.saved.config) if self.saved is not None else {}
        params = flat.get("params") if isinstance(flat.get("params"), Mapping) else {}
        template = flat.get("template")
        system = flat.get("system_prompt") or ""
        return {
            "prompt template": f"custom ({_digest(template)})" if template else "the reference prompt",
            "system prompt": f"{_digest(system)}" if system else "none",
            "multi-answer instruction": "on" if flat.get("multi_answer_instruction") else "off",
            "temperature": params.get("temperature", "?"),
            "max tokens": params.get("max_tokens", "?"),
        }


@dataclass(frozen=True)
class Column:
    """One model of the comparison: its label here, its label in its run, and its run."""

    label: str
    model: str
    run: SourceRun


@dataclass(frozen=True)
class RunsCompared:
    """The records of one run with every model of the runs, on the items they share, under one rule set."""

    columns: tuple[Column, ...]
    records: tuple[Record, ...]
    items: int  # items compared
    rules: RuleSet
    left_out: Mapping[str, int]  # run folder -> its items left out (another run lacks them, or they changed)
    changed: tuple[str, ...]  # indices whose content differs between runs
    differences: tuple[str, ...]  # how the runs asked otherwise, one line each
    rescored: tuple[str, ...]  # run folders scored under another rule set, read again under ``rules``

    @property
    def runs(self) -> list[SourceRun]:
        """The runs compared, in order (each once)."""
        return list({id(c.run): c.run for c in self.columns}.values())

    def notes(self) -> list[str]:
        """What every output says about the comparison: the items, what differs, the rules."""
        lines = [f"{self.items} items compared: those every run answered, with the same content in every run."]
        for folder, count in self.left_out.items():
            if count:
                lines.append(f"{count} item(s) of {folder} left out: not in every run, or changed.")
        if self.changed:
            lines.append(
                f"{len(self.changed)} item(s) have another content in another run (same index, another row): "
                f"{_named(self.changed)}; left out."
            )
        lines += [f"The runs differ: {line}" for line in self.differences]
        for run in self.runs:
            if run.epochs > 1:
                lines.append(
                    f"{run.folder} asked {run.epochs} samples per item: compared on each model's first (its "
                    "headline); the spread over its samples is in its own report."
                )
            if run.strays:
                lines.append(
                    f"{run.folder} holds records of {', '.join(run.strays)}, which its config.json names no model of: "
                    "left out."
                )
        for folder in self.rescored:
            lines.append(
                f"{folder} was scored under another rule set: read again under {self.rules.name} (nothing sent)."
            )
        return lines


def load_run(folder: Path) -> SourceRun:
    """Read one run folder (holding its lock meanwhile: a run still writing it is refused)."""
    if not (folder / RECORDS_FILE).is_file():
        raise ConfigError(f"{folder} has no {RECORDS_FILE}: not a run folder")
    busy = "a run is still writing it; compare it when that run ends"
    if os.access(folder, os.W_OK):
        with RunLock(folder, advice=busy):
            records, saved = tuple(read_records(folder / RECORDS_FILE)), read_existing_config(folder)
    else:  # a read-only copy (another machine's runs): no lock can be taken, none is needed but a live one's
        pid = holder(folder)
        if pid is not None:
            raise ConfigError(f"the run folder {folder} is in use by another gmai_client process (pid {pid}): {busy}")
        records, saved = tuple(read_records(folder / RECORDS_FILE)), read_existing_config(folder)
    flat = flatten(saved.config) if saved is not None else {}
    # A run of --epochs N is compared on each model's first sample (its headline): ``samples``.
    samples = extra_samples({r.model for r in records}, saved_epochs(flat))
    labels = tuple(saved.model_labels) if saved is not None else tuple(dict.fromkeys(r.model for r in records))
    strays = tuple(dict.fromkeys(r.model for r in records if r.model not in labels and r.model not in samples))
    compared = tuple(r for r in records if r.model in labels)
    return SourceRun(folder, saved, compared, labels, str(flat.get("rules") or UNNAMED_RULES.name), records, strays)


def compare_runs(runs: Sequence[SourceRun], *, rules: str | None = None, strict: bool = False) -> RunsCompared:
    """The runs set side by side (see the module docstring)."""
    if len(runs) < 2:
        raise ConfigError("compare needs two run folders or more")
    seen: dict[Path, Path] = {}
    for run in runs:
        place = run.folder.resolve()
        if place in seen:
            raise ConfigError(f"{run.folder} is given twice (as {seen[place]})")
        seen[place] = run.folder
    columns = _columns(runs)
    contents = [_contents(run) for run in runs]
    shared = set(contents[0]).intersection(*contents[1:])
    changed = sorted((i for i in shared if not _same_item([c[i] for c in contents])), key=_natural)
    compared = shared - set(changed)
    left_out = {str(run.folder): len(set(c) - compared) for run, c in zip(runs, contents, strict=True)}
    differences = _differences(runs)
    if strict and (changed or any(left_out.values()) or differences):
        problems = [line for line in _strict_lines(runs, contents, compared, changed) if line] + differences
        raise ConfigError("--strict: the runs are not comparable as they are: " + "; ".join(problems))
    chosen = rule_set(rules) if rules else _common_rules(runs)
    relabelled = {(id(c.run), c.model): c.label for c in columns}
    records = [
        replace(record, model=relabelled[(id(run), record.model)])
        for run in runs
        for record in run.records
        if record.index in compared
    ]
    records = score_answer_set(records, chosen)  # every answer read again, as one run would score them
    rescored = tuple(str(run.folder) for run in runs if run.rules != chosen.name)
    return RunsCompared(
        tuple(columns), tuple(records), len(compared), chosen, left_out, tuple(changed), tuple(differences), rescored
    )


# --- labels ------------------------------------------------------------------------------------


def _columns(runs: Sequence[SourceRun]) -> list[Column]:
    """Every model of every run, a label each: its own, told apart by its run's date when needed."""
    pairs = [(run, model) for run in runs for model in run.labels]
    labels = [model for _, model in pairs]
    for tell in (
        lambda run: run.started[:10],
        lambda run: run.started[:16].replace("T", " "),
        lambda run: run.folder.name,
        lambda run: str(run.folder),  # the same command run in two places: its path tells them apart
    ):
        clashing = {label for label in labels if labels.count(label) > 1}
        if not clashing:
            break
        labels = [
            f"{model} ({tell(run) or run.folder.name})" if label in clashing else label
            for (run, model), label in zip(pairs, labels, strict=True)
        ]
    if len(set(labels)) != len(labels):  # the same folder's name twice: given twice under two paths
        raise ConfigError("two of the runs cannot be told apart (same model, date and folder name)")
    return [Column(label, model, run) for (run, model), label in zip(pairs, labels, strict=True)]


# --- items -------------------------------------------------------------------------------------


def _contents(run: SourceRun) -> dict[str, tuple[str, str]]:
    """Item index -> (digest, answer cell) as this run read it (the first model's record that has a digest)."""
    found: dict[str, tuple[str, str]] = {}
    for record in run.records:
        if record.index not in found or (record.item_digest and not found[record.index][0]):
            found[record.index] = (record.item_digest, record.answer_cell or "")
    return found


def _same_item(seen: Sequence[tuple[str, str]]) -> bool:
    digests = {digest for digest, _ in seen if digest}
    if len(digests) > 1:
        return False
    if len(digests) == 1 and all(digest for digest, _ in seen):
        return True
    # Some run kept no digest (written before digests): the answer cells must agree at least.
    return len({cell for _, cell in seen}) == 1


def _strict_lines(
    runs: Sequence[SourceRun], contents: Sequence[Mapping[str, Any]], compared: set[str], changed: Sequence[str]
) -> list[str]:
    lines = []
    for run, content in zip(runs, contents, strict=True):
        others = sorted(set(content) - compared - set(changed), key=_natural)
        if others:
            lines.append(f"{len(others)} item(s) of {run.folder} are not in every run ({_named(others)})")
    if changed:
        lines.append(f"{len(changed)} item(s) have another content in another run ({_named(changed)})")
    return lines


def _natural(index: str) -> tuple[int, int | str]:
    return (0, int(index)) if index.isdigit() else (1, index)


def _named(indices: Sequence[str]) -> str:
    shown = ", ".join(indices[:_NAMED])
    return shown + (f" and {len(indices) - _NAMED} more" if len(indices) > _NAMED else "")


# --- how the runs asked ------------------------------------------------------------------------


def _differences(runs: Sequence[SourceRun]) -> list[str]:
    """One line per way of asking that is not the same in every run."""
    protocols = [run.protocol for run in runs]
    lines = []
    for key in protocols[0]:
        values = [str(p[key]) for p in protocols]
        if len(set(values)) > 1:
            lines.append(
                f"{key}: " + ", ".join(f"{v} in {run.folder.name}" for v, run in zip(values, runs, strict=True))
            )
    return lines


def _common_rules(runs: Sequence[SourceRun]) -> RuleSet:
    names = {run.rules for run in runs}
    return rule_set(names.pop()) if len(names) == 1 else DEFAULT_RULES


def _digest(text: str) -> str:
    return "sha256 " + hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]

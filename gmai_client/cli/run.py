"""``python -m gmai_client run``: the configuration from the command line (or ``--resume``), the
run through ``api.run`` with the terminal as its console, what went wrong said in one line each,
and the exit status (the table in ``cli``'s docstring).

Options of ``run`` default to "not given" (None): a new run fills them from the defaults
(written once, in ``config``), or from a run file (``--config FILE``, ``runfile``: the options
given here override it, ``--model`` the file's whole model list). ``--resume RUN_DIR`` runs the
saved configuration, takes the pace and patience options given here as stated overrides
(``config.POLICY_FIELDS``) and refuses any other option that differs from the saved run.

Ctrl-C and SIGTERM are alike (``session.Interrupts``): the first cancels the run, which keeps what
finished and writes partial metrics; a second quits at once. Batches a ``--batch`` run sent keep
running at the vendor: whenever a run ends with batches still in progress, the commands that
collect and cancel them are printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from gmai_client.api import run
from gmai_client.backends import registry
from gmai_client.backends.families import use_model_families
from gmai_client.cli.common import (
    read_template,
    sampling_params,
)
from gmai_client.cli.session import Interrupts, saved_config, say_result
from gmai_client.config import POLICY_FIELDS, ModelSpec, RunConfig, parse_model_spec, run_default
from gmai_client.errors import ConfigError
from gmai_client.options import model_policy, text_or_file
from gmai_client.protocol.rulesets import rule_set
from gmai_client.results.report import terminal_console
from gmai_client.runfile import combined, read_run_file
from gmai_client.runner.loop import RunResult


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    if args.judge_options and not args.judge:
        raise ConfigError("-J options need a --judge SPEC")
    if args.config is not None and args.resume is not None:
        raise ConfigError(
            "--config and --resume cannot go together: --resume RUN_DIR runs that folder's saved configuration "
            "(to start from a run file instead, give --config alone)"
        )
    if args.model_families is not None:
        use_model_families(args.model_families)
    config = resumed_config(args) if args.resume is not None else new_config(args)
    if args.dry_run:
        from gmai_client.cli.plan import print_plan

        return print_plan(config, args.prices, console)
    result: RunResult = Interrupts().run(lambda: run(config, console=console))
    return say_result(result, console)


# --- the configuration ------------------------------------------------------------------------

#: argparse destinations that are RunConfig fields of the same flat name and need no conversion.
_PLAIN_FIELDS = (
    "rules",
    "epochs",
    "concurrency",
    "limit",
    "seed",
    "out",
    "run_name",
    "data_dir",
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
    "batch",
)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The fields (by flat name) this command line gives; sampling parameters apart."""
    given: dict[str, Any] = {name: getattr(args, name) for name in _PLAIN_FIELDS if getattr(args, name) is not None}
    if args.models:
        given["models"] = tuple(parse_model_spec(spec, options) for spec, options in args.models)
    if args.data:
        given["data"] = tuple(args.data)
    if args.select:
        given["select"] = tuple(args.select)
    if args.template is not None:
        given["template"] = read_template(args.template)
    if args.system_prompt is not None:
        given["system_prompt"] = text_or_file(args.system_prompt, "--system-prompt")
    if args.judge:
        given["judge"] = parse_model_spec(args.judge, args.judge_options or [])
    if args.multi_answer_prompt:
        given["multi_answer_instruction"] = True
    if args.no_progress:
        given["progress"] = False
    return given


def new_config(args: argparse.Namespace) -> RunConfig:
    given = _given(args)
    if args.config is not None:
        return file_config(args.config, given, args)
    params = sampling_params(args, seed=given.get("seed", run_default("seed")))
    return RunConfig.from_flat(**given, params=params)


def file_config(path: Path, given: dict[str, Any], args: argparse.Namespace) -> RunConfig:
    """The run file's configuration, with what this command line gives laid over it (``runfile.combined``)."""
    sampling = {name: getattr(args, name) for name in ("temperature", "max_tokens") if getattr(args, name) is not None}
    read = read_run_file(path)
    config = combined(read, {**given, **sampling})
    try:  # --rules is checked by the parser; a file's is checked here, `latest` resolved as --rules resolves it
        config = config.updated(rules=rule_set(config.protocol.rules).name)
        # The file's models' -B options, checked now so that a mistake names the file (the run checks them too).
        for spec in (*(read.get("models") or ()), *([read["judge"]] if read.get("judge") else [])):
            registry.load_class(spec.backend).parse_options(spec)
            model_policy(spec.options, owner=spec.key)  # rpm, tpm, price_in, price_out
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config


#: How the messages name a field: the option that sets it.
_FLAGS = {
    "models": "--model/-B",
    "cache": "--cache/--no-cache",
    "judge": "--judge/-J",
    "params": "--temperature",
    "multi_answer_instruction": "--multi-answer-prompt",
    "system_prompt": "--system-prompt",
    "batch": "--batch/--no-batch",
}


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def resumed_config(args: argparse.Namespace) -> RunConfig:
    """The saved configuration of RUN_DIR. Pace and patience options given here override it (and
    say so); any other option given here must agree with it (a larger --limit extends the run)."""
    saved = saved_config(args.resume, "--resume")
    overrides, notes, conflicts = _against_saved(saved, _given(args), args)
    if conflicts:
        raise ConfigError(
            f"--resume {args.resume} runs its saved configuration, and this command differs from it: "
            + "; ".join(conflicts)
            + ". Drop those options, or start a new run without --resume"
        )
    console = terminal_console(stderr=True)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    # `--resume .` or `--resume ..` names the folder by a path, not by its own name.
    folder = args.resume if args.resume.name not in ("", ".", "..") else args.resume.resolve()
    return saved.updated(
        out=folder.parent,
        run_name=folder.name,
        retry_errors=bool(args.retry_errors),
        progress=not args.no_progress,
        **{k: v for k, v in overrides.items() if k not in ("retry_errors", "progress")},
    )


def _against_saved(
    saved: RunConfig, given: dict[str, Any], args: argparse.Namespace
) -> tuple[dict[str, Any], list[str], list[str]]:
    """(the overrides to apply, the notes that say so, the conflicts that refuse the resume)."""
    before_all = saved.flat()
    overrides: dict[str, Any] = {}
    notes: list[str] = []
    conflicts = [f"{_flag(name)} (--resume names the run folder)" for name in ("out", "run_name") if name in given]
    for name, value in given.items():
        before = before_all[name]
        if name in ("out", "run_name"):
            continue
        if name in POLICY_FIELDS:
            if name not in ("retry_errors", "progress") and value != before:
                notes.append(f"{_flag(name)} {_shown(value)} overrides the saved {_shown(before)}")
            overrides[name] = value
        elif name == "limit":
            if before is not None and value > before:
                notes.append(f"--limit {value} extends the saved run's {before} items")
                overrides[name] = value
            elif value != before:
                conflicts.append(f"--limit {value} (the saved run has {_shown(before)}; a limit may only grow)")
        elif name == "template" and value != before:
            conflicts.append("--template (its text differs from the saved run's template)")
        elif _comparable(name, value) != _comparable(name, before):
            conflicts.append(f"{_flag(name)} {_shown(value)} (the saved run has {_shown(before)})")
    for name in ("temperature", "max_tokens"):
        value, before = getattr(args, name), getattr(saved.protocol.params, name)
        if value is not None and value != before:
            conflicts.append(f"--{name.replace('_', '-')} {value:g} (the saved run has {before:g})")
    return overrides, notes, conflicts


def _comparable(name: str, value: Any) -> Any:
    """A field's value as compared with the saved run (same files written two ways are equal)."""
    if name == "data":
        return tuple(str(Path(spec).resolve()) if Path(spec).exists() else spec for spec in value)
    if name == "data_dir":
        return str(Path(value).expanduser().resolve()) if value is not None else None
    if name == "models":  # by the identity's name for each model, not its (default) label
        return tuple({**spec.as_dict(), "label": spec.key, "written": ""} for spec in value)
    if name == "judge":
        return value.as_dict() if value is not None else None
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ", ".join(_shown(item) for item in value) or "none"
    if isinstance(value, ModelSpec):
        saved = value.as_dict()  # secret-looking options redacted
        return saved["label"] + "".join(f" -B {key}={option}" for key, option in sorted(saved["options"].items()))
    return f"{value:g}" if isinstance(value, float) else str(value)

"""The command line's options: one parser for every command (``cli``'s ``COMMANDS``).

Exit status of ``run`` (what a CI job reads; everything done is written whatever the status):

    0    every selected item of every model has a record that is not an error
    2    a usage error, found before anything is sent: a bad option or value, a missing file, an
         unknown tree name or backend option, a run folder that holds another run or is in use
    3    stopped by a fatal error: a model stopped early (bad key 401/403, unknown model 404,
         exhausted quota, unreachable endpoint, unreadable replay file, --max-errors, the token
         budget), the judge stopped (a fatal error, or every call failing for 3 answers in a row),
         or the whole run ended early (a full disk, unreadable data); selected items left unrecorded
    4    finished, but some items ended in an error (``--resume RUN_DIR --retry-errors`` sends them again;
         with --batch: a request its batch failed, expired or canceled), or the judge could not judge
         some answers (every call for them failed)
    5    nothing was evaluated: no item was selected (a header-only file, a --select that matches nothing)
    130  interrupted (Ctrl-C or SIGTERM): finished items are saved, the metrics cover them

A higher-listed status wins (3 over 4 over 5). ``report RUN_DIR`` exits with the status of the run it
reports (its records counted against the selection, and what metrics.json says stopped it). Every
message the user can act on is one line, never a traceback; any text that may carry vendor output
goes through ``errors.redact``.

``batches collect`` exits as ``run`` does, 3 while batches are still in progress or items were never sent.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from gmai_client.cli.common import (
    EXIT_USAGE,
)
from gmai_client.config import MAX_CONCURRENCY, MAX_EPOCHS, NOT_UTF8_PATH, non_utf8_path, run_default, run_name_problem
from gmai_client.errors import GmaiError
from gmai_client.protocol.rulesets import DEFAULT_RULES, RULE_NAMES, rule_set

#: The exit-status table of this module's docstring, shown by ``run --help``.
_EXIT_STATUS_HELP = (__doc__ or "")[(__doc__ or "").find("Exit status") : (__doc__ or "").find("A higher-listed")]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the multi-line usage block buries the message."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (--help lists the options)\n")


class _ModelAction(argparse.Action):
    """``--model SPEC`` starts a model; ``-B key=value`` options that follow belong to it."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        models = list(getattr(namespace, "models", None) or [])
        if option_string in ("--model", "-m"):
            models.append([values, []])
        else:
            if not models:
                parser.error("-B key=value must follow the --model it applies to")
            models[-1][1].append(values)
        namespace.models = models


# --- option values: each checked where it is typed, with the reason in the message ----------------


def _number(text: str, kind: Callable[[str], Any]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _int(text: str) -> int:
    return _number(text, int)


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _temperature(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _concurrency(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(
            f"must be between 1 and {MAX_CONCURRENCY} (items in flight per model; more only fills memory), got {text}"
        )
    return value


def _epochs(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= MAX_EPOCHS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_EPOCHS} (samples per item), got {text}")
    return value


def _limit(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (--limit {text} would evaluate nothing)")
    return value


def _run_name(text: str) -> str:
    problem = run_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def _rules(text: str) -> str:
    """A rule set's name, ``latest`` resolved (a run keeps the set it was scored under)."""
    try:
        return rule_set(text).name
    except GmaiError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: What ``--rules`` says, for run, plan and report.
_RULES_HELP = (
    f"the rule set the headline is scored under: {', '.join(RULE_NAMES)} (default {DEFAULT_RULES.name}, "
    "the published table's; every report also shows the other sets)"
)


def _path(text: str) -> Path:
    shown = non_utf8_path(text)
    if shown:
        raise argparse.ArgumentTypeError(f"the path '{shown}' is not UTF-8 text: {NOT_UTF8_PATH}")
    return Path(text)


def _default(name: str) -> str:
    value = run_default(name)
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m gmai_client", description="GMAI-MMBench evaluation client")
    commands = parser.add_subparsers(dest="command")
    _add_run(commands)
    _add_run(commands, "plan", "what a run would send and cost, before sending anything (run --dry-run)")
    _add_tree(commands)
    report = commands.add_parser("report", help="re-render a run folder's metrics and tables (no model calls)")
    report.add_argument("run_dir", type=_path)
    report.add_argument("--rescore", action="store_true", help="re-apply answer extraction to the raw answers")
    report.add_argument("--reference", default=None, help="model label the deltas are taken against")
    report.add_argument(
        "--rules", type=_rules, metavar="NAME", help=_RULES_HELP + "; rescores the run's answers, sends nothing"
    )
    _add_compare(commands)
    _add_runs(commands)
    commands.add_parser("backends", help="list backends, whether installed, and their options")
    _add_cache(commands)
    _add_batches(commands)
    return parser


def _add_run(commands: Any, name: str = "run", about: str = "") -> None:
    params = run_default("params")
    run = commands.add_parser(
        name,
        help=about or "evaluate models (default: random baseline on the bundled sample)",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--config",
        type=_path,
        metavar="FILE",
        help="a run file (TOML), or any run's config.json: everything the command line holds; the options "
        "given here override it",
    )
    _add_data_options(run)
    run.add_argument(
        "--model",
        "-m",
        dest="models",
        action=_ModelAction,
        metavar="SPEC",
        help="backend[:target][@endpoint], repeatable (default: random)",
    )
    run.add_argument(
        "-B",
        dest="models",
        action=_ModelAction,
        metavar="KEY=VALUE",
        help="an option of the preceding --model (see `backends`)",
    )
    run.add_argument(
        "--concurrency", "-c", type=_concurrency, help=f"in-flight items per model (default {_default('concurrency')})"
    )
    run.add_argument("--limit", "-n", type=_limit, help="first N selected items only")
    run.add_argument(
        "--seed", type=_int, help=f"seed of the random baseline and of sampling backends (default {_default('seed')})"
    )
    run.add_argument("--out", type=_path, help=f"folder of run folders (default ./{_default('out')})")
    run.add_argument(
        "--run-name",
        type=_run_name,
        help="run folder name, inside --out (default: the model labels and a hash of the configuration)",
    )
    run.add_argument("--template", help="prompt template file ({hint} {question} {options} {instruction})")
    run.add_argument(
        "--system-prompt",
        metavar="TEXT|@FILE",
        help="a system prompt every model is sent (-B system= per model; default: none, as VLMEvalKit)",
    )
    run.add_argument("--rules", type=_rules, metavar="NAME", help=_RULES_HELP)
    run.add_argument(
        "--multi-answer-prompt",
        action="store_true",
        help="items whose key has several letters get the paper's multi-answer instruction "
        "(default: VLMEvalKit's single-answer prompt for every item)",
    )
    run.add_argument(
        "--epochs",
        type=_epochs,
        metavar="N",
        help="ask every item N times (each sample its own request and cache entry), for temperature > 0 or "
        "models that cannot be made deterministic: the headline stays the first sample's; beside it the mean ± sd "
        "over samples, a majority vote and the per-item agreement (default 1)",
    )
    run.add_argument("--temperature", type=_temperature, help=f"(default {params.temperature:g})")
    run.add_argument("--max-tokens", type=_positive_int, help=f"(default {params.max_tokens})")
    run.add_argument("--retry-errors", action="store_true", default=None, help="send errored items again")
    run.add_argument("--no-progress", action="store_true", help="no progress display")
    run.add_argument("--resume", type=_path, metavar="RUN_DIR", help="continue that run with its saved configuration")
    run.add_argument("--judge", metavar="SPEC", help="LLM judge for answers no rule can read (e.g. openai:gpt-4o-mini)")
    run.add_argument("-J", dest="judge_options", action="append", metavar="KEY=VALUE", help="judge option")
    _add_policy_options(run)
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        help=f"ray: torch models run on Ray actors (default {_default('executor')})",
    )
    run.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start one)")
    run.add_argument(
        "--dry-run",
        action="store_true",
        default=name == "plan",
        help="send nothing: say what the run would send and cost (same as the `plan` command)",
    )
    run.add_argument("--prices", type=_path, metavar="FILE", help="token prices laid over the shipped table (plan)")
    run.add_argument(
        "--model-families",
        type=_path,
        metavar="FILE",
        help="request rules of model families laid over the shipped table (same as $GMAI_CLIENT_MODEL_FAMILIES)",
    )


def _add_policy_options(run: argparse.ArgumentParser) -> None:
    limits = run.add_argument_group(
        "rate limits, retries, cache and budgets (pace and patience: given with --resume, they override the saved run)"
    )
    limits.add_argument(
        "--rpm", type=_positive_float, help="requests per minute per endpoint (-B rpm= per model; default: no limit)"
    )
    limits.add_argument(
        "--tpm", type=_positive_float, help="tokens per minute per endpoint (-B tpm= per model; default: no limit)"
    )
    limits.add_argument(
        "--max-attempts",
        type=_positive_int,
        help=f"attempts per item on retryable errors (default {_default('max_attempts')})",
    )
    limits.add_argument("--attempt-timeout", type=_positive_float, help="seconds per attempt (default: the backend's)")
    limits.add_argument(
        "--item-deadline",
        type=_positive_float,
        help=f"seconds per item, all attempts and waits (default {_default('item_deadline')})",
    )
    limits.add_argument(
        "--max-errors",
        type=_positive_float,
        help="stop a model after N failed items, or a fraction of finished items such as 0.2",
    )
    limits.add_argument("--token-budget", type=_positive_int, help="stop the run after this many tokens")
    limits.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        help="read and write the response cache (default: yes; --no-cache: neither)",
    )
    limits.add_argument("--cache-path", type=_path, help="response cache file (default: user cache dir)")
    limits.add_argument(
        "--batch",
        action=argparse.BooleanOptionalAction,
        help="models with a batch API (openai, anthropic) send through it: about half price, answers within "
        "24 h (-B batch= per model; default: no)",
    )


def _add_tree(commands: Any) -> None:
    tree = commands.add_parser("tree", help="browse the lexical tree with item counts from the data")
    _add_data_options(tree)
    tree.add_argument("--view", default=None, help="only this view (task, department, granularity)")
    tree.add_argument("--depth", type=int, default=2, help="1 categories, 2 + modalities, 3 + leaf labels")
    tree.add_argument("--all", action="store_true", help="also show nodes with no items in the data")


def _add_cache(commands: Any) -> None:
    params = run_default("params")
    cache = commands.add_parser("cache", help="inspect or clear the response cache")
    cache.add_argument("action", choices=("stats", "explain", "clear"))
    cache.add_argument("--cache-path", type=_path, default=None, help="cache file (default: user cache dir)")
    cache.add_argument("--model", "-m", dest="models", action=_ModelAction, metavar="SPEC", help="explain: the model")
    cache.add_argument("-B", dest="models", action=_ModelAction, metavar="KEY=VALUE", help="explain: its options")
    cache.add_argument("--index", default=None, help="explain: the item index")
    cache.add_argument("--template", default=None, help="explain: the run's prompt template file")
    cache.add_argument("--temperature", type=_temperature, help=f"explain: the run's (default {params.temperature:g})")
    cache.add_argument("--max-tokens", type=_positive_int, help=f"explain: the run's (default {params.max_tokens})")
    cache.add_argument("--seed", type=_int, help=f"explain: the run's (default {_default('seed')})")
    cache.add_argument("--system-prompt", metavar="TEXT|@FILE", help="explain: the run's system prompt (default: none)")
    cache.add_argument("--multi-answer-prompt", action="store_true", help="explain: the run had --multi-answer-prompt")
    cache.add_argument(
        "--sample", type=_epochs, default=1, metavar="K", help="explain: the K-th sample of an --epochs run"
    )
    cache.add_argument("--data", "-d", nargs="+", action="extend", default=None, metavar="PATH")
    cache.add_argument("--data-dir", type=_path, default=None)
    cache.add_argument("--only-model", default=None, help="clear: only entries of this model name")


def _add_batches(commands: Any) -> None:
    batches = commands.add_parser(
        "batches",
        help="collect, cancel or list the batches a --batch run sent",
        description="collect: wait for the run folder's batches and record their answers (rerunning the run "
        "command does the same and also sends what is left); cancel: ask the vendors to stop them; "
        "list: what the folder's journal holds",
    )
    batches.add_argument("action", choices=("collect", "cancel", "list"))
    batches.add_argument("run_dir", type=_path, metavar="RUN_DIR")
    batches.add_argument("--no-wait", action="store_true", help="collect: only the batches that have ended")
    batches.add_argument("--no-progress", action="store_true", help="collect: no progress display")


def _add_compare(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="runs made apart, side by side in one report: paired tests on the items all answered (no model calls)",
        description="One report (console, report.md, report.html, metrics.json) of the models of several run "
        "folders, as one run with those models would show it, on the items every run answered. Says what differs "
        "between the runs (items, prompt, template, sampling); runs scored under other rules are rescored.",
    )
    compare.add_argument("run_dirs", type=_path, nargs="+", metavar="RUN_DIR")
    compare.add_argument(
        "--out", type=_path, default=None, help="the folder the report goes in (default: runs/compare-<labels>-<hash>)"
    )
    compare.add_argument("--rules", type=_rules, metavar="NAME", help=_RULES_HELP + "; every run is rescored under it")
    compare.add_argument(
        "--reference", default=None, help="model label the deltas are taken against (default: the first)"
    )
    compare.add_argument(
        "--strict",
        action="store_true",
        help="refuse runs that asked different items, or asked them otherwise (prompt, template, sampling), "
        "instead of comparing them on the items they share",
    )


def _add_runs(commands: Any) -> None:
    runs = commands.add_parser("runs", help="the run folders under --out in a table: models, items, headline, status")
    runs.add_argument("--out", type=_path, default=None, help=f"folder of run folders (default ./{_default('out')})")
    runs.add_argument("--json", action="store_true", help="one JSON document instead of the table (for scripts)")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        "-d",
        nargs="+",
        action="extend",
        default=None,
        metavar="PATH",
        help="TSV file(s), a folder, GMAI-MMBench_VAL / _TEST, or `sample` (default)",
    )
    parser.add_argument("--data-dir", type=_path, default=None, help="where named splits live (default: XDG data dir)")
    parser.add_argument(
        "--select",
        "-s",
        action="append",
        default=None,
        metavar="EXPR",
        help="lexical-tree selection, e.g. 'department=Ophthalmology & modality=Fundus Photography'",
    )

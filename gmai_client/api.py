"""The public entry points: ``run(config)`` wires a run, streams it, and writes its reports;
``compare(run_dirs)`` sets finished runs side by side.

    result = asyncio.run(gmai_client.run(config))
    result.run_dir, result.records

The three steps are three parts: ``wiring`` (config -> ready objects), ``runner`` (the loop,
which writes records) and the report writers (``report.write_reports``), called here with the
run's own figures (``run_figures``). Nothing is printed unless a console is given (the CLI gives
the terminal's); the progress display follows ``config.output.progress``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from gmai_client.backend import Backend
from gmai_client.config import RunConfig
from gmai_client.errors import redact_url
from gmai_client.protocol.rulesets import rule_set
from gmai_client.results import report, rundir
from gmai_client.results.html.gallery_items import GalleryItems
from gmai_client.results.report_rules import score_for_report
from gmai_client.runner.batch.mode import Collect
from gmai_client.runner.loop import RunResult, stream
from gmai_client.runner.wiring import Wired, wire

if TYPE_CHECKING:
    from rich.console import Console

    from gmai_client.results.run_compare import RunsCompared


async def run(
    config: RunConfig,
    *,
    backends: Mapping[str, Backend] | None = None,
    console: Console | None = None,
    collect: Collect | None = None,
) -> RunResult:
    """Run every model of ``config`` over the selected items; write the run folder; return the result.

    ``backends`` maps a model label to an already built backend (for SDK users with their own
    objects); the others are built from their specs through the registry. ``console``: where the
    tables are printed (a ``rich`` console); None prints nothing. ``collect``: send nothing, only
    collect the batches the run folder's journal holds (``batches collect``).

    Raises ``ConfigError`` before anything is sent when a value is bad, or the run folder holds
    another run, is in use by another process or cannot be written. A failure after the start (a
    full disk, a data file that breaks mid-way) ends the run at once: everything recorded stays,
    and the result says why in ``failure``.
    """
    async with wire(config, backends=backends) as wired:
        if console is not None:
            for line in start_lines(wired):
                console.print(line, markup=False, highlight=False)
        result = await stream(wired, config.policy, collect)
        # Still inside the folder's lock: no other process writes reports from half the records.
        return write_reports(result, config, console=console, gallery=wired.gallery.collected())


def start_lines(wired: Wired) -> list[str]:
    """One line per model saying where its requests go: the endpoint it will really call (after
    ``@URL``, ``base_url=``, ``OPENAI_BASE_URL``...), never a key."""
    lines = []
    for plan in wired.models:
        identity = plan.backend.identity()
        where = redact_url(identity.get("endpoint") or "") or "in this process"  # a URL's credentials: never
        model = identity.get("model") or plan.spec.target
        how = " (batch API)" if plan.batch is not None else ""
        lines.append(f"{plan.spec.label}: {identity.get('backend', plan.spec.backend)} {model} -> {where}{how}")
    return lines


def write_reports(
    result: RunResult, config: RunConfig, *, console: Console | None = None, gallery: GalleryItems | None = None
) -> RunResult:
    """The run's metrics and reports written into its folder; the result with their paths, or with
    why they could not be written (the records are kept: ``report RUN_DIR`` writes them later)."""
    order = [outcome.spec.label for outcome in result.outcomes]  # the labels the folder's records carry
    rules = rule_set(config.protocol.rules)
    try:
        # Every answer under the run's rule set (a resumed run's earlier answers too), each model's
        # read back together as VLMEvalKit's prediction file holds them.
        result = replace(result, records=tuple(score_for_report(result.run_dir, result.records, rules, rescore=True)))
        written = report.write_reports(
            result.run_dir, result.records, run_figures(result, config), order=order, console=console, gallery=gallery,
            rules=rules, epochs=config.protocol.epochs,
        )  # fmt: skip
    except OSError as exc:  # a full disk: the records are kept, the reports can be written later
        reason = (
            f"the reports could not be written ({exc}); `python -m gmai_client report {result.run_dir}` writes them"
        )
        return replace(result, failure=f"{result.failure}; {reason}" if result.failure else reason)
    return replace(result, files=tuple(written))


def run_figures(result: RunResult, config: RunConfig | None = None) -> rundir.RunFigures:
    """What only the run knew, as the run folder's schema keeps it (``config``: for the judge's label)."""
    models = tuple(
        rundir.ModelFigures(
            label=o.spec.label,
            done=o.done,
            errors=o.errors,
            skipped=o.skipped,
            stopped=o.stopped,
            requests_sent=o.sent,
            cache_hits=o.cache_hits,
            throttled=o.throttled,
            placement=tuple(o.placement),
        )
        for o in result.outcomes
    )
    judge = None
    if result.judge is not None:
        label = config.protocol.judge.label if config is not None and config.protocol.judge is not None else ""
        judge = rundir.JudgeFigures(model=label, **asdict(result.judge))
    return rundir.RunFigures(result.interrupted, result.elapsed_s, result.failure, models, judge, result.selected)


def compare(
    run_dirs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    rules: str | None = None,
    strict: bool = False,
    reference: str | None = None,
    console: Console | None = None,
) -> RunsCompared:
    """Runs made apart, side by side (``python -m gmai_client compare``): their reports as one run
    with all their models would write them, into ``out`` (default: ``compare-<labels>-<hash>``
    beside the first run); what was compared, left out and found different is in the result."""
    from gmai_client.protocol.prices import load_prices
    from gmai_client.results.compare_report import default_out, write_comparison
    from gmai_client.results.run_compare import compare_runs, load_run

    runs = [load_run(Path(folder)) for folder in run_dirs]
    compared = compare_runs(runs, rules=rules, strict=strict)
    folder = Path(out) if out is not None else default_out(runs)
    write_comparison(folder, compared, load_prices(), reference=reference, console=console)
    return compared

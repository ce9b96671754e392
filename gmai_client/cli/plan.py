"""``python -m gmai_client plan`` (and ``run --dry-run``): what a run would send and cost, as a table.

Takes every option ``run`` takes; sends nothing and writes nothing (``plan.plan_run``). The prices
come from the shipped table, laid over by ``--prices FILE`` (or ``$GMAI_CLIENT_PRICES``) and
``-B price_in= price_out=``; the output says which prices each model got and how old they are.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gmai_client.cli.common import EXIT_OK
from gmai_client.config import RunConfig
from gmai_client.protocol.prices import load_prices
from gmai_client.protocol.rulesets import rule_set
from gmai_client.runner.plan import ModelPlan, plan_run

_HEADER = (
    "model", "items", "finished", "cached", "to send", "input tokens / item", "input tokens", "output tokens (max)",
    "output tokens (expected)", "cost live: expected / max", "cost batch: expected / max", "minutes at the limits",
)  # fmt: skip


def print_plan(config: RunConfig, prices_file: Path | None, console: Console) -> int:
    plans = plan_run(config, load_prices(prices_file))
    table = Table(title="What the run would send (nothing was sent)")
    for column in _HEADER:
        table.add_column(column, justify="left" if column == "model" else "right")
    for plan in plans:
        table.add_row(*_row(plan))
    console.print(table)
    for plan in plans:
        console.print(escape(_price_line(plan)), highlight=False)
        console.print(escape(_output_line(plan)), highlight=False, soft_wrap=True)
    rules = rule_set(config.protocol.rules)
    console.print(
        f"Scored under {rules.name} (VLMEvalKit {rules.vlmevalkit}); the rule set changes only the scoring: "
        "the same requests under every set, and `report --rules NAME` rescores a finished run without sending.",
        highlight=False,
    )
    console.print(
        "Input tokens follow each provider's documented rules (text: ~4 characters a token; images: OpenAI's "
        "tiles or patches, Anthropic's pixels); the max costs assume every answer uses its whole output bound "
        "(--max-tokens, or the larger bound a reasoning model needs), the expected ones the expected output. "
        "After a run, metrics.json puts the estimate beside the tokens reported.",
        highlight=False,
    )
    return EXIT_OK


def _row(plan: ModelPlan) -> list[str]:
    per_item = plan.input_tokens_per_item
    minutes = plan.minutes
    return [
        plan.label,
        f"{plan.selected:,}",
        f"{plan.finished:,}",
        f"{plan.cached:,}",
        f"{plan.to_send:,}",
        "—" if per_item is None else f"{per_item:,.0f}",
        f"{plan.input_tokens:,}",
        f"{plan.output_tokens_max:,}",
        "—" if plan.output_tokens_expected is None else f"{plan.output_tokens_expected:,}",
        _costs(plan, batch=False),
        _costs(plan, batch=True),
        "no limit set" if minutes is None else f"{minutes:,.1f}",
    ]


def _money(value: float | None) -> str:
    return "no price" if value is None else f"${value:,.2f}"


def _costs(plan: ModelPlan, *, batch: bool) -> str:
    bound = _money(plan.cost(batch=batch))
    if plan.price is None or plan.expected is None:
        return bound
    return f"{_money(plan.cost(batch=batch, expected=True))} / {bound}"


def _output_line(plan: ModelPlan) -> str:
    """What one answer is expected to take beside its bound, and where that figure comes from."""
    bound = plan.output_tokens_max / plan.to_send if plan.to_send else None
    bounded = f"; the bound is {bound:,.0f} an item" if bound is not None else ""
    if plan.expected is None:
        return f"{plan.label}: no expected output known (no earlier answer, no family figure){bounded}"
    expected = plan.expected
    return f"{plan.label}: expected output {expected.per_item:,.0f} tokens an item, {expected.source}{bounded}"


def _price_line(plan: ModelPlan) -> str:
    price = plan.price
    if price is None:
        return f"{plan.label}: no price known (give -B price_in=USD_PER_1M -B price_out=USD_PER_1M, or --prices FILE)"
    age = price.age_days()
    dated = f", {age} days old" if age is not None else ""
    return (
        f"{plan.label}: ${price.input_per_m:g} / ${price.output_per_m:g} per 1M input / output tokens, "
        f"batch x{price.batch_discount:g}, from {price.source}{dated}"
    )

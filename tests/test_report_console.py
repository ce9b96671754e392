"""The tables a run prints, read on terminals of the widths people have: nothing cut to an ellipsis."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

import gmai_client
from gmai_client.config import RunConfig, parse_model_spec
from gmai_client.results.report_format import pct


def printed(tmp_path: Path, data: Path, width: int, models: int) -> tuple[str, dict]:
    specs = [parse_model_spec("random", [f"label=random-{n}", f"seed={n}"]) for n in range(models)]
    config = RunConfig.build(specs, data=[str(data)], out=tmp_path / "runs", progress=False)
    console = Console(file=io.StringIO(), width=width, color_system=None)
    result = asyncio.run(gmai_client.run(config, console=console))
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["models"]
    return console.file.getvalue(), metrics


@pytest.mark.parametrize("width", [80, 120, 200])
@pytest.mark.parametrize("models", [1, 2, 5])
def test_the_headline_is_readable_at_any_terminal_width(
    tmp_path: Path, small_tsv: Path, width: int, models: int
) -> None:
    # At 80 columns the thirteen-column headline came out as `ra…` and `23…`.
    text, metrics = printed(tmp_path, small_tsv, width, models)
    headline = text.split("by clinical VQA task")[0]
    assert "…" not in headline
    assert max(len(line) for line in headline.splitlines()) <= width
    for label, figures in metrics.items():
        overall = figures["overall"]
        for value in (label, pct(overall["accuracy"]), pct(overall["lenient_accuracy"]), str(overall["n"])):
            assert value in headline, (label, value)
    assert "lenient acc % (not comparable)" in headline

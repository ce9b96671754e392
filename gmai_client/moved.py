"""Where the modules of the flat 0.1 layout went when the package was laid out in part folders.

Importing an old path (``gmai_client.balance``, ``gmai_client.cli_run`` ...) raises an ImportError that
names the new one, instead of a bare "No module named". Kept for one release, then removed.
"""

from __future__ import annotations

import importlib.abc
import sys
from importlib.machinery import ModuleSpec
from typing import Any

MOVED: dict[str, str] = {
    "gmai_client.asking": "gmai_client.runner.asking",
    "gmai_client.atomic": "gmai_client.results.atomic",
    "gmai_client.balance": "gmai_client.policy.balance",
    "gmai_client.batch": "gmai_client.runner.batch.mode",
    "gmai_client.batch_follow": "gmai_client.runner.batch.follow",
    "gmai_client.batch_journal": "gmai_client.results.batch_journal",
    "gmai_client.batch_ledger": "gmai_client.runner.batch.ledger",
    "gmai_client.batch_records": "gmai_client.runner.batch.records",
    "gmai_client.cache": "gmai_client.policy.cache",
    "gmai_client.charts": "gmai_client.results.charts",
    "gmai_client.cli_batches": "gmai_client.cli.batches",
    "gmai_client.cli_commands": "gmai_client.cli (one module a command: tree, report, backends, cache)",
    "gmai_client.cli_common": "gmai_client.cli.common",
    "gmai_client.cli_plan": "gmai_client.cli.plan",
    "gmai_client.cli_run": "gmai_client.cli.run (and gmai_client.cli.session)",
    "gmai_client.completeness": "gmai_client.results.completeness",
    "gmai_client.dataset": "gmai_client.data.dataset",
    "gmai_client.dispatch": "gmai_client.policy.dispatch",
    "gmai_client.gallery_items": "gmai_client.results.html.gallery_items",
    "gmai_client.html_gallery": "gmai_client.results.html.gallery",
    "gmai_client.html_page": "gmai_client.results.html.page",
    "gmai_client.html_paper": "gmai_client.results.html.paper",
    "gmai_client.html_report": "gmai_client.results.html.report",
    "gmai_client.html_results": "gmai_client.results.html.results",
    "gmai_client.html_run": "gmai_client.results.html.run",
    "gmai_client.html_tree": "gmai_client.results.html.tree",
    "gmai_client.images": "gmai_client.backends.images",
    "gmai_client.judge": "gmai_client.runner.judge",
    "gmai_client.limiter": "gmai_client.policy.limiter",
    "gmai_client.metrics": "gmai_client.protocol.metrics",
    "gmai_client.normalize": "gmai_client.protocol.normalize",
    "gmai_client.plan": "gmai_client.runner.plan",
    "gmai_client.plots": "gmai_client.results.plots",
    "gmai_client.predictions": "gmai_client.results.predictions",
    "gmai_client.prices": "gmai_client.protocol.prices",
    "gmai_client.progress": "gmai_client.runner.progress",
    "gmai_client.prompt": "gmai_client.protocol.prompt",
    "gmai_client.readback": "gmai_client.protocol.readback",
    "gmai_client.records": "gmai_client.results.records",
    "gmai_client.reference": "gmai_client.protocol.reference",
    "gmai_client.registry": "gmai_client.backends.registry",
    "gmai_client.report": "gmai_client.results.report",
    "gmai_client.report_console": "gmai_client.results.report_console",
    "gmai_client.report_format": "gmai_client.results.report_format",
    "gmai_client.report_rules": "gmai_client.results.report_rules",
    "gmai_client.retry": "gmai_client.policy.retry",
    "gmai_client.rulesets": "gmai_client.protocol.rulesets",
    "gmai_client.rundir": "gmai_client.results.rundir",
    "gmai_client.runner": "gmai_client.runner.loop",
    "gmai_client.scoring": "gmai_client.protocol.scoring",
    "gmai_client.select": "gmai_client.data.select",
    "gmai_client.splits": "gmai_client.data.splits",
    "gmai_client.tsv": "gmai_client.data.tsv",
    "gmai_client.wiring": "gmai_client.runner.wiring",
}


class _MovedFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: asked only about a module nothing else found."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is not None:
            raise ImportError(f"{fullname} moved to {new} (the package is laid out in part folders)", name=fullname)
        return None


def install() -> None:
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())

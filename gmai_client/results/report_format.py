"""How figures are written in every report (console, Markdown, CSV, HTML, plots): one helper each.

Owns escaping for HTML and SVG, the text forms of a percentage, a 95% interval and a signed
difference in points, the slug that turns a view name into a file name or an HTML id, the order of
item indexes, and the version strings a report states. Pure functions of their arguments, no I/O.
"""

from __future__ import annotations

import html
from typing import Protocol

from gmai_client.version import __version__


class _Interval(Protocol):
    ci_low: float | None
    ci_high: float | None


def esc(value: object) -> str:
    """``value`` as text safe in HTML and SVG, attribute values included."""
    return html.escape(str(value), quote=True)


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage without the sign: 0.1234 -> "12.34"; unknown -> "—"."""
    return "—" if value is None else f"{100 * value:.{digits}f}"


def interval(stats: _Interval, *, plain: bool = False) -> str:
    """A 95% interval in percent: "12.3–45.6" (HTML; "—" when unknown), or with ``plain`` the
    text tables' "[12.3, 45.6]" ("" when unknown, so that a CSV cell stays empty)."""
    if stats.ci_low is None or stats.ci_high is None:
        return "" if plain else "—"
    low, high = f"{100 * stats.ci_low:.1f}", f"{100 * stats.ci_high:.1f}"
    return f"[{low}, {high}]" if plain else f"{low}–{high}"


def signed(value: float | None) -> str:
    """A difference in percentage points with its sign: 0.031 -> "+3.10"; unknown -> ""."""
    return "" if value is None else f"{100 * value:+.2f}"


def slug(text: str) -> str:
    """``text`` safe in a file name and an HTML id: "clinical VQA task" -> "clinical_VQA_task"."""
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def index_key(index: str) -> tuple[int, int, str]:
    """Sort key of item indexes: integers in numeric order, then any other index as text."""
    # isascii: "²".isdigit() is true, but int("²") fails.
    return (0, int(index), "") if index.isascii() and index.isdigit() else (1, 0, index)


def version() -> str:
    """This package's version."""
    return __version__


def package_version(name: str) -> str:
    """An installed distribution's version, or "not installed"."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(name)
    except PackageNotFoundError:
        return "not installed"


def markdown_cell(text: str) -> str:
    """A Markdown table cell: a ``|`` escaped, line breaks made spaces (either would end the cell's row)."""
    return " ".join(text.replace("|", "\\|").splitlines()) if text else text

"""report_format: the one text form of each figure, shared by every report."""

from __future__ import annotations

from gmai_client.protocol.metrics import GroupStats
from gmai_client.results.report_format import esc, index_key, interval, pct, signed, slug


def test_percentages_intervals_and_differences() -> None:
    assert (pct(0.12345), pct(0.12345, 1), pct(None)) == ("12.35", "12.3", "—")
    stats = GroupStats(ci_low=0.0951, ci_high=0.9049)
    assert interval(stats) == "9.5–90.5" and interval(stats, plain=True) == "[9.5, 90.5]"
    assert interval(GroupStats()) == "—" and interval(GroupStats(), plain=True) == ""
    assert (signed(0.031), signed(-0.5), signed(0.0), signed(None)) == ("+3.10", "-50.00", "+0.00", "")


def test_slugs_and_escaping() -> None:
    assert slug("clinical VQA task") == "clinical_VQA_task"
    assert slug("Otolaryngology (ENT)/Head and Neck Surgery") == "Otolaryngology__ENT__Head_and_Neck_Surgery"
    assert esc("<b>&'\"") == "&lt;b&gt;&amp;&#x27;&quot;"


def test_index_order_is_numeric_then_text() -> None:
    indexes = ["10", "b", "9", "²", "a", "100"]
    assert sorted(indexes, key=index_key) == ["9", "10", "100", "a", "b", "²"]


def test_a_markdown_cell_keeps_its_row_whole() -> None:
    from gmai_client.results.report_format import markdown_cell

    assert markdown_cell("a|b\nc\r\nd") == "a\\|b c d"
    assert markdown_cell("") == ""

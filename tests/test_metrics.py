"""Metrics as a pure function of records: counts, intervals, macro, multi-answer, comparisons."""

from __future__ import annotations

import math

import pytest

from gmai_client.metrics import compare, compute_metrics, group_stats, mcnemar_exact, wilson_interval
from gmai_client.types import Record


def rec(
    index: str,
    model: str = "m",
    *,
    status="ok",
    correct=True,
    task="Bone",
    department="N/A",
    answer=("A",),
    letters=("A",),
) -> Record:
    return Record(
        index=index,
        model=model,
        status=status,
        prediction=None if status == "error" else "A",
        letters=letters,
        answer=answer,
        correct=None if status == "error" else correct,
        task=task,
        department=department,
        granularity="Image Level",
        modality="CT",
        category="x",
    )


def test_errors_are_excluded_and_counted_unparsed_is_wrong() -> None:
    stats = group_stats(
        [
            rec("1"),
            rec("2", correct=False),
            rec("3", status="unparsed", correct=False, letters=()),
            rec("4", status="error"),
            rec("5", status="refused", correct=False, letters=("Z",)),
        ]
    )
    assert (stats.n, stats.scored, stats.correct, stats.errored, stats.unparsed, stats.refused) == (5, 4, 1, 1, 1, 1)
    assert stats.accuracy == pytest.approx(0.25)
    assert stats.ci_low < 0.25 < stats.ci_high


def test_wilson_interval_known_value() -> None:
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 0) == (None, None)


def test_groups_macro_and_na_department() -> None:
    records = [
        rec("1", task="Bone"),
        rec("2", task="Bone", correct=False),
        rec("3", task="Muscle"),
        rec("4", task="Muscle", department="Urology"),
    ]
    metrics = compute_metrics(records)["m"]
    assert metrics.groups["clinical VQA task"]["Bone"].accuracy == 0.5
    assert metrics.groups["clinical VQA task"]["Muscle"].accuracy == 1.0
    assert metrics.macro["clinical VQA task"] == pytest.approx(0.75)
    assert metrics.overall.accuracy == pytest.approx(0.75)
    assert metrics.groups["department"]["N/A"].n == 3


def test_multi_answer_acc_and_recall() -> None:
    records = [
        rec("1", answer=("A", "C"), letters=("A",), correct=False),  # precision 1, recall 1/2
        rec("2", answer=("A", "C"), letters=("A", "B", "C"), correct=False),  # precision 2/3, recall 1
        rec("3", answer=("B",), letters=("B",)),  # single-answer: not in mcq stats
    ]
    mcq = compute_metrics(records)["m"].mcq
    assert mcq.n == 2
    assert mcq.acc_mcq == pytest.approx((1 + 2 / 3) / 2)
    assert mcq.recall_mcq == pytest.approx((0.5 + 1) / 2)


def test_no_key_means_no_accuracy() -> None:
    metrics = compute_metrics([rec("1", answer=None, correct=None)])["m"]
    assert not metrics.has_key and metrics.overall.accuracy is None and metrics.overall.n == 1


def test_comparison_deltas_and_paired_test() -> None:
    records = [rec(str(i), "a", correct=i < 30) for i in range(40)]
    records += [rec(str(i), "b", correct=i < 10) for i in range(40)]
    metrics = compute_metrics(records)
    comparison = compare(metrics, records, reference="a")
    assert comparison.overall_deltas["b"] == pytest.approx(-0.5)
    assert comparison.deltas["b"]["clinical VQA task"]["Bone"] == pytest.approx(-0.5)
    paired = comparison.paired["b"]
    assert (paired.shared, paired.model_only_correct, paired.reference_only_correct) == (40, 0, 20)
    assert paired.p_value == pytest.approx(2 * 0.5**20)


def test_mcnemar_exact_matches_binomial() -> None:
    b, c = 3, 9
    n = b + c
    expected = 2 * sum(math.comb(n, i) for i in range(b + 1)) / 2**n
    assert mcnemar_exact(b, c) == pytest.approx(expected)
    assert mcnemar_exact(0, 0) == 1.0
    assert 0 < mcnemar_exact(9000, 9400) < 0.01  # large n stays finite

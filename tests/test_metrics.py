"""Metrics as a pure function of records: counts, intervals, macro, multi-answer, comparisons."""

from __future__ import annotations

import math

import pytest

from gmai_client.protocol.metrics import compare, compute_metrics, group_stats, mcnemar_exact, wilson_interval
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
    lenient_letters=None,
    lenient_correct=None,
    latency_s=0.0,
    cached=False,
) -> Record:
    return Record(
        index=index,
        model=model,
        status=status,
        prediction=None if status == "error" else "A",
        letters=letters,
        answer=answer,
        correct=None if answer is None else (False if status == "error" else correct),
        lenient_letters=letters if lenient_letters is None else lenient_letters,
        lenient_correct=(correct if lenient_correct is None else lenient_correct) if status != "error" else False,
        task=task,
        department=department,
        granularity="Image Level",
        modality="CT",
        category="x",
        latency_s=latency_s,
        cached=cached,
    )


def test_errors_count_wrong_in_the_headline_and_are_left_out_of_answered_accuracy() -> None:
    stats = group_stats(
        [
            rec("1"),
            rec("2", correct=False),
            rec("3", status="unparsed", correct=False, letters=()),
            rec("4", status="error"),
            rec("5", status="refused", correct=False, letters=("Z",)),
        ]
    )
    assert (stats.n, stats.keyed, stats.scored, stats.correct) == (5, 5, 4, 1)
    assert (stats.errored, stats.unparsed, stats.refused) == (1, 1, 1)
    assert stats.accuracy == pytest.approx(1 / 5)  # VLMEvalKit's figure: the failure is wrong
    assert stats.answered_accuracy == pytest.approx(1 / 4)
    assert stats.ci_low < 0.2 < stats.ci_high


def test_lenient_accuracy_and_differences_beside_the_headline() -> None:
    stats = group_stats(
        [
            rec("1"),
            rec("2", status="unparsed", correct=False, letters=(), lenient_letters=("B",), lenient_correct=True),
            rec("3", correct=False, lenient_correct=False),
            rec("4", status="error"),
        ]
    )
    assert (stats.correct, stats.accuracy) == (1, pytest.approx(1 / 4))
    assert (stats.lenient_correct, stats.lenient_accuracy) == (2, pytest.approx(2 / 4))
    assert stats.differs == 1


def test_an_unreadable_row_counts_wrong_overall_and_in_no_group() -> None:
    bad = Record(index="f.tsv:row9", model="m", status="error", prediction=None, error_kind="bad_row")
    metrics = compute_metrics([rec("1"), rec("2"), bad])["m"]
    assert (metrics.overall.n, metrics.overall.keyed, metrics.overall.accuracy) == (3, 3, pytest.approx(2 / 3))
    assert metrics.groups["clinical VQA task"]["Bone"].n == 2
    assert metrics.incomplete


def test_macro_is_the_mean_over_categories_not_items() -> None:
    # Unbalanced groups: 9 Bone items all right, 1 Muscle item wrong -> micro 0.9, macro 0.5.
    records = [rec(str(i), task="Bone") for i in range(9)] + [rec("9", task="Muscle", correct=False)]
    metrics = compute_metrics(records)["m"]
    assert metrics.overall.accuracy == pytest.approx(0.9)
    assert metrics.macro["clinical VQA task"] == pytest.approx(0.5)


def test_mean_latency_leaves_out_cached_and_errored_items() -> None:
    records = [
        rec("1", latency_s=2.0),
        rec("2", latency_s=4.0),
        rec("3", latency_s=0.001, cached=True),
        rec("4", status="error", latency_s=30.0),
    ]
    metrics = compute_metrics(records)["m"]
    assert metrics.mean_latency_s == pytest.approx(3.0)
    assert metrics.cached == 1


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


def test_multi_answer_acc_and_recall_from_the_lenient_letters() -> None:
    records = [  # precision 1, recall 1/2; then precision 2/3, recall 1; the third is single-answer
        rec("1", answer=("A", "C"), letters=(), lenient_letters=("A",), correct=False),
        rec("2", answer=("A", "C"), letters=(), lenient_letters=("A", "B", "C"), correct=False),
        rec("3", answer=("B",), letters=("B",)),
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

"""Accuracy as a pure function of records: overall and per lexical-tree group, per model.

Definitions (stated here because the numbers are compared with a published leaderboard):
- The headline ``accuracy`` is VLMEvalKit's: reference hits / items with a key, where an item
  that got no answer (``errored``) counts as wrong, as VLMEvalKit scores its failure text. It is
  the number comparable with the paper's tables. ``answered_accuracy`` is the same over the items
  that got an answer (``scored``); the two differ only when something errored.
- A model's run is incomplete (``ModelMetrics.incomplete``) when some item the run selected has no
  answer: it ended in an error, or it was never recorded (the model stopped early, the run was
  interrupted or killed). That count, ``unanswered``, is taken against the selection (``selected``,
  which only the run or the data know), not against the records: the headline figures cover the
  records only.
- Micro accuracy per question, overall and per category of each view (clinical VQA task,
  department incl. N/A, perceptual granularity, modality) and per leaf label (``category``), with
  a 95% Wilson interval.
- Macro accuracy of a view: the unweighted mean over its categories that have keyed items.
- ``lenient_accuracy``: the lenient extraction's hits over the same items (multi-answer items by
  exact set match), and ``differs``, the answers it reads differently from the reference. It is
  shown beside the headline, never in it.
- Multi-answer items (several letters in the key) are never a reference hit (VLMEvalKit compares
  one letter with the whole key); their ACC_mcq (matches / predicted letters) and Recall_mcq
  (matches / true letters), from the lenient extraction, are reported separately, as in the paper.
- Unreadable rows (no trustworthy group) count in the overall figures of a keyed run, as errors,
  and in no group.
- With several models: per-group deltas against a reference model, and an exact McNemar test on
  the items both models answered.
Records without a key (TEST split) get counts but no accuracy: ``has_key`` says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gmai_client.types import Record

#: (record attribute, view name) for the four views of the lexical tree.
VIEW_FIELDS: tuple[tuple[str, str], ...] = (
    ("task", "clinical VQA task"),
    ("department", "department"),
    ("granularity", "perceptual granularity"),
    ("modality", "modality"),
)
#: Every grouping reported: the views, then the leaf label (VLMEvalKit's ``category`` table).
GROUP_FIELDS: tuple[tuple[str, str], ...] = (*VIEW_FIELDS, ("category", "category"))
Z95 = 1.959963984540054


@dataclass(frozen=True)
class GroupStats:
    n: int = 0  # records in the group
    scored: int = 0  # keyed records that got an answer
    correct: int = 0  # reference hits
    unparsed: int = 0
    refused: int = 0
    errored: int = 0
    accuracy: float | None = None  # correct / keyed records, errors wrong: VLMEvalKit's figure
    ci_low: float | None = None
    ci_high: float | None = None
    keyed: int = 0  # records with an answer key (the headline's denominator)
    answered_accuracy: float | None = None  # correct / scored
    lenient_correct: int = 0
    lenient_accuracy: float | None = None  # lenient hits / keyed records
    differs: int = 0  # answers the lenient extraction reads differently from the reference


@dataclass(frozen=True)
class McqStats:
    n: int
    acc_mcq: float | None
    recall_mcq: float | None


@dataclass(frozen=True)
class ModelMetrics:
    model: str
    has_key: bool
    overall: GroupStats
    groups: dict[str, dict[str, GroupStats]]  # view (or "category") -> category -> stats
    macro: dict[str, float | None]
    mcq: McqStats
    input_tokens: int = 0
    output_tokens: int = 0
    # The estimate and the reported count over the same answers (those with both): the estimator's error.
    estimated_input_tokens: int = 0
    reported_input_tokens: int = 0
    mean_latency_s: float | None = None
    cached: int = 0
    thinking_cut: int = 0  # answers never given: the output bound ran out while the model thought
    reasoning_tokens: int = 0  # the part of output_tokens spent thinking, where servers report it
    selected: int | None = None  # items the run selected (None: not known, e.g. records alone)

    @property
    def answered(self) -> int:
        """Items with a record that is not an error (ok, unparsed or refused)."""
        return self.overall.n - self.overall.errored

    @property
    def unanswered(self) -> int:
        """Selected items without an answer: errored, or never recorded."""
        return unanswered(self.selected, self.overall.n, self.overall.errored)

    @property
    def incomplete(self) -> bool:
        """Some selected item got no answer: a rerun (``--resume``, ``--retry-errors``) can finish it."""
        return self.unanswered > 0


def unanswered(selected: int | None, recorded: int, errored: int) -> int:
    """Selected items without an answer, of ``recorded`` records (``errored`` of them errors). Unknown
    selection: the errors alone (what the records can tell)."""
    if selected is None:
        return errored
    return max(errored, selected - (recorded - errored))


@dataclass(frozen=True)
class PairedTest:
    model: str
    reference: str
    shared: int  # items both models scored
    model_only_correct: int
    reference_only_correct: int
    delta: float | None  # accuracy difference on shared items, model - reference
    p_value: float | None


@dataclass(frozen=True)
class Comparison:
    reference: str
    deltas: dict[str, dict[str, dict[str, float | None]]]  # model -> view -> category -> delta
    overall_deltas: dict[str, float | None]
    paired: dict[str, PairedTest] = field(default_factory=dict)


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float | None, float | None]:
    if total == 0:
        return None, None
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def group_stats(records: Iterable[Record], *, keyed_run: bool = False) -> GroupStats:
    """Counts and accuracies of ``records``. ``keyed_run``: the split has a key, so an error record
    without one (an unreadable row) still counts in the denominator, as wrong."""
    n = scored = keyed = correct = unparsed = refused = errored = lenient = differs = 0
    for record in records:
        n += 1
        has_key = record.answer is not None
        if record.status == "error":
            errored += 1
            keyed += has_key or keyed_run
            continue
        unparsed += record.status == "unparsed"
        refused += record.status == "refused"
        differs += record.lenient_letters != record.letters
        if has_key:
            keyed += 1
            scored += 1
            correct += bool(record.correct)
            lenient += bool(record.lenient_correct)
    if keyed == 0:
        return GroupStats(n, scored, correct, unparsed, refused, errored, differs=differs)
    low, high = wilson_interval(correct, keyed)
    return GroupStats(
        n=n,
        scored=scored,
        correct=correct,
        unparsed=unparsed,
        refused=refused,
        errored=errored,
        accuracy=correct / keyed,
        ci_low=low,
        ci_high=high,
        keyed=keyed,
        answered_accuracy=correct / scored if scored else None,
        lenient_correct=lenient,
        lenient_accuracy=lenient / keyed,
        differs=differs,
    )


def mcq_stats(records: Iterable[Record]) -> McqStats:
    precisions, recalls = [], []
    for record in records:
        if record.status == "error" or not record.is_multi_answer or record.answer is None:
            continue
        truth, predicted = set(record.answer), set(record.lenient_letters) - {"Z"}
        matches = len(truth & predicted)
        precisions.append(matches / len(predicted) if predicted else 0.0)
        recalls.append(matches / len(truth))
    if not precisions:
        return McqStats(0, None, None)
    return McqStats(len(precisions), sum(precisions) / len(precisions), sum(recalls) / len(recalls))


def model_metrics(model: str, records: Sequence[Record], selected: int | None = None) -> ModelMetrics:
    groups: dict[str, dict[str, GroupStats]] = {}
    macro: dict[str, float | None] = {}
    grouped = [r for r in records if not (r.status == "error" and r.error_kind == "bad_row")]
    has_key = any(r.answer is not None for r in records)
    for attribute, view in GROUP_FIELDS:
        buckets: dict[str, list[Record]] = defaultdict(list)
        for record in grouped:  # an unreadable row has no trustworthy group
            buckets[getattr(record, attribute) or "(none)"].append(record)
        groups[view] = {name: group_stats(bucket) for name, bucket in sorted(buckets.items())}
        accuracies = [s.accuracy for s in groups[view].values() if s.accuracy is not None]
        macro[view] = sum(accuracies) / len(accuracies) if accuracies else None
    latencies = [r.latency_s for r in records if r.status != "error" and not r.cached]
    both = [r for r in records if r.estimated_input_tokens is not None and r.input_tokens is not None and not r.cached]
    return ModelMetrics(
        model=model,
        has_key=has_key,
        overall=group_stats(records, keyed_run=has_key),
        groups=groups,
        macro=macro,
        mcq=mcq_stats(records),
        input_tokens=sum(r.input_tokens or 0 for r in records),
        output_tokens=sum(r.output_tokens or 0 for r in records),
        estimated_input_tokens=sum(r.estimated_input_tokens or 0 for r in both),
        reported_input_tokens=sum(r.input_tokens or 0 for r in both),
        mean_latency_s=sum(latencies) / len(latencies) if latencies else None,
        cached=sum(r.cached for r in records),
        thinking_cut=sum(r.status == "thinking_length" for r in records),
        reasoning_tokens=sum(r.reasoning_tokens or 0 for r in records),
        selected=selected,
    )


def compute_metrics(records: Iterable[Record], selected: int | None = None) -> dict[str, ModelMetrics]:
    """Model label -> metrics, models in order of first appearance. ``selected``: how many items the
    run selected (every model is asked the same items), for ``ModelMetrics.unanswered``."""
    by_model: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_model[record.model].append(record)
    return {model: model_metrics(model, rows, selected) for model, rows in by_model.items()}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (binomial, p=0.5)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # Sum the binomial tail in log space: n can be tens of thousands.
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)
    ]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return min(1.0, 2 * tail)


def paired_test(model: str, reference: str, records: Sequence[Record]) -> PairedTest:
    outcome: dict[str, dict[str, bool]] = defaultdict(dict)
    for record in records:
        if record.model in (model, reference) and record.status != "error" and record.correct is not None:
            outcome[record.index][record.model] = record.correct
    shared = [pair for pair in outcome.values() if len(pair) == 2]
    b = sum(1 for pair in shared if pair[model] and not pair[reference])
    c = sum(1 for pair in shared if pair[reference] and not pair[model])
    if not shared:
        return PairedTest(model, reference, 0, 0, 0, None, None)
    delta = (sum(p[model] for p in shared) - sum(p[reference] for p in shared)) / len(shared)
    return PairedTest(model, reference, len(shared), b, c, delta, mcnemar_exact(b, c))


def compare(metrics: dict[str, ModelMetrics], records: Sequence[Record], reference: str | None = None) -> Comparison:
    """Deltas of every model against ``reference`` (default: the first model)."""
    models = list(metrics)
    reference = reference or models[0]
    ref = metrics[reference]
    deltas: dict[str, dict[str, dict[str, float | None]]] = {}
    overall: dict[str, float | None] = {}
    paired: dict[str, PairedTest] = {}
    for model in models:
        if model == reference:
            continue
        mine = metrics[model]
        overall[model] = _delta(mine.overall.accuracy, ref.overall.accuracy)
        deltas[model] = {
            view: {
                name: _delta(stats.accuracy, ref.groups[view].get(name, GroupStats()).accuracy)
                for name, stats in mine.groups[view].items()
            }
            for view in mine.groups
        }
        paired[model] = paired_test(model, reference, records)
    return Comparison(reference, deltas, overall, paired)


def _delta(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else value - reference

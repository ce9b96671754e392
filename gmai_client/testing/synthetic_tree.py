"""The lexical tree the synthetic items are drawn from, indexed by (modality, label) (see ``synthetic``).

Owns the three views' names, the package's copy of the GMAI-MMBench lexical tree, which
(task, department, granularity, modality, label) combinations are consistent with it, and the
order in which the generator visits them (every prefix covers the tree evenly).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

TASK_VIEW = "clinical VQA task"
DEPARTMENT_VIEW = "department"
GRANULARITY_VIEW = "perceptual granularity"
_VIEWS = (TASK_VIEW, DEPARTMENT_VIEW, GRANULARITY_VIEW)

#: The tree's bucket for items of no department; the TSV stores it as an empty cell.
NO_DEPARTMENT = "N/A"


@dataclass(frozen=True)
class LeafCombo:
    """One consistent (task, department, granularity, modality, label) combination of the tree."""

    task: str
    department: str  # NO_DEPARTMENT for the N/A bucket
    granularity: str
    modality: str
    label: str


@lru_cache(maxsize=1)
def load_lexical_tree() -> dict[str, dict[str, dict[str, list[str]]]]:
    """The package's copy of the lexical tree ``{view: {category: {modality: [labels]}}}``."""
    text = resources.files("gmai_client").joinpath("data/lexical_tree.json").read_text(encoding="utf-8")
    return json.loads(text)


class TreeIndex:
    """Which tasks / departments / granularities each (modality, label) pair appears under.

    An item is consistent when its label sits under its modality in each of its three categories, so
    the valid combinations are, per (modality, label), the product of the three category sets.
    """

    def __init__(self, tree: dict[str, dict[str, dict[str, list[str]]]]) -> None:
        where: dict[tuple[str, str], dict[str, set[str]]] = {}
        for view in _VIEWS:
            for category, modalities in tree[view].items():
                for modality, labels in modalities.items():
                    for label in labels:
                        where.setdefault((modality, label), {v: set() for v in _VIEWS})[view].add(category)
        self.where = where
        # Sorted so that the combination order (and hence every seeded choice) never depends on dict order.
        self.combos: list[LeafCombo] = sorted(
            (
                LeafCombo(task, dept, gran, modality, label)
                for (modality, label), cats in where.items()
                for task in cats[TASK_VIEW]
                for dept in cats[DEPARTMENT_VIEW]
                for gran in cats[GRANULARITY_VIEW]
            ),
            key=lambda c: (c.task, c.department, c.granularity, c.modality, c.label),
        )
        self.tasks = sorted(tree[TASK_VIEW])
        self.departments = sorted(tree[DEPARTMENT_VIEW])
        self.granularities = sorted(tree[GRANULARITY_VIEW])
        self.modalities = sorted({m for m, _ in where})
        self.all_labels = sorted({label for _, label in where})
        by_mod_task: dict[tuple[str, str], set[str]] = {}
        by_mod: dict[str, set[str]] = {}
        by_task: dict[str, set[str]] = {}
        siblings: dict[tuple[str, str, str, str], set[str]] = {}
        for c in self.combos:
            by_mod_task.setdefault((c.modality, c.task), set()).add(c.label)
            by_mod.setdefault(c.modality, set()).add(c.label)
            by_task.setdefault(c.task, set()).add(c.label)
            siblings.setdefault((c.task, c.department, c.granularity, c.modality), set()).add(c.label)
        self.labels_by_mod_task = {k: sorted(v) for k, v in by_mod_task.items()}
        self.labels_by_mod = {k: sorted(v) for k, v in by_mod.items()}
        self.labels_by_task = {k: sorted(v) for k, v in by_task.items()}
        self.siblings = {k: sorted(v) for k, v in siblings.items()}

    def is_consistent(self, task: str, department: str, granularity: str, modality: str, label: str) -> bool:
        cats = self.where.get((modality, label))
        return bool(
            cats
            and task in cats[TASK_VIEW]
            and (department or NO_DEPARTMENT) in cats[DEPARTMENT_VIEW]
            and granularity in cats[GRANULARITY_VIEW]
        )


@lru_cache(maxsize=1)
def tree_index() -> TreeIndex:
    return TreeIndex(load_lexical_tree())


def coverage_order(index: TreeIndex, rng: random.Random) -> Iterator[LeafCombo]:
    """All combinations, each once, greedily ordered so that every prefix covers the tree evenly.

    Each step first prefers combinations that bring a task, department, granularity or modality not seen
    yet (the more the better), then those whose values have been used least so far (usage scaled by the
    number of values in the view, i.e. distance from a fair share), ties broken at random. Deliberate
    cycling rather than pure sampling is what lets ~30 items already touch all 18 tasks, 19 departments
    and 4 granularities, and ~45 items all 38 modalities.
    """
    dims = (
        ([c.task for c in index.combos], index.tasks),
        ([c.department for c in index.combos], index.departments),
        ([c.granularity for c in index.combos], index.granularities),
        ([c.modality for c in index.combos], index.modalities),
    )
    keys: list[tuple[int, ...]] = []
    for values, universe in dims:
        pos = {v: i for i, v in enumerate(universe)}
        keys.append(tuple(pos[v] for v in values))
    per_combo = list(zip(*keys, strict=True))
    usage = [[0] * len(universe) for _, universe in dims]
    t_u, d_u, g_u, m_u = usage
    # Fair-share weights x4, except modality at x1: balancing 38 modalities at full weight would starve
    # the single-modality tasks (surgical workflow is endoscopy-only, counting histopathology-only).
    t_w, d_w, g_w, m_w = (
        4 * len(index.tasks),
        4 * len(index.departments),
        4 * len(index.granularities),
        len(index.modalities),
    )
    novelty = 1 << 40  # dominates any fair-share score
    remaining = list(range(len(index.combos)))
    while remaining:
        best_score = None
        best: list[int] = []
        for pos, ci in enumerate(remaining):
            t, d, g, m = per_combo[ci]
            tu, du, gu, mu = t_u[t], d_u[d], g_u[g], m_u[m]
            score = tu * t_w + du * d_w + gu * g_w + mu * m_w
            score -= novelty * ((tu == 0) + (du == 0) + (gu == 0) + (mu == 0))
            if best_score is None or score < best_score:
                best_score, best = score, [pos]
            elif score == best_score:
                best.append(pos)
        pos = rng.choice(best)
        ci = remaining.pop(pos)
        for dim, value in enumerate(per_combo[ci]):
            usage[dim][value] += 1
        yield index.combos[ci]

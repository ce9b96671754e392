"""The lexical tree and the selection language built on it (the same for the CLI and the SDK).

The tree (shipped as package data, from the benchmark's project page) has three views, each
``{category: {modality: [leaf labels]}}``: clinical VQA task, department, perceptual granularity.
Modality and leaf label are shared by all three views, which makes five *fields* to select on.

Selection language. One expression is an intersection of terms joined by ``&``; one term is
``field=value`` with alternatives joined by ``|``; a bare ``value`` is looked up in every field::

    department=Ophthalmology & modality=Fundus Photography & granularity=Box Level
    task=Disease Diagnosis|Severity Grading
    Ophthalmology

Several expressions (``--select`` given twice, or a list in the SDK) are a union: an item is kept
when any expression matches it. Names match case-insensitively; an unknown name is an error that
lists the closest valid names, never a silently empty run. Matching reads only the group columns,
so selection never decodes an image.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from itertools import islice

from gmai_client.errors import SelectionError
from gmai_client.types import BadRow, Item

#: Selectable fields, with the Item attribute each reads and the aliases users may type.
FIELDS: dict[str, tuple[str, ...]] = {
    "task": ("task", "clinical vqa task", "clinical task"),
    "department": ("department", "dept"),
    "granularity": ("granularity", "perceptual granularity"),
    "modality": ("modality",),
    "category": ("category", "label", "leaf"),
}
#: The tree's view name for each field that is a view of the tree.
VIEW_OF_FIELD = {
    "task": "clinical VQA task",
    "department": "department",
    "granularity": "perceptual granularity",
}
#: What a user may type for a field (any alias, lower case) -> the field's name.
FIELD_OF_ALIAS: dict[str, str] = {alias: name for name, aliases in FIELDS.items() for alias in aliases}


@dataclass(frozen=True, eq=False)  # compared by identity: it is cached per tree object
class LexicalTree:
    """The benchmark's tree: ``views[view][category][modality] -> labels``."""

    views: Mapping[str, Mapping[str, Mapping[str, tuple[str, ...]]]]

    def names(self, field: str) -> tuple[str, ...]:
        """Every valid value of a field, sorted."""
        if field in VIEW_OF_FIELD:
            return tuple(sorted(self.views[VIEW_OF_FIELD[field]]))
        found: set[str] = set()
        for categories in self.views.values():
            for modalities in categories.values():
                if field == "modality":
                    found.update(modalities)
                else:
                    for labels in modalities.values():
                        found.update(labels)
        return tuple(sorted(found))


@lru_cache(maxsize=1)
def load_tree() -> LexicalTree:
    text = resources.files("gmai_client").joinpath("data/lexical_tree.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    return LexicalTree(
        {
            view: {cat: {mod: tuple(labels) for mod, labels in mods.items()} for cat, mods in cats.items()}
            for view, cats in raw.items()
        }
    )


@dataclass(frozen=True)
class Conjunction:
    """Field -> accepted values (lower-cased); an item matches when every field accepts it."""

    terms: tuple[tuple[str, frozenset[str]], ...]

    def matches(self, item: Item) -> bool:
        return all(getattr(item, field).lower() in values for field, values in self.terms)

    def __str__(self) -> str:
        return " & ".join(f"{field}={'|'.join(sorted(values))}" for field, values in self.terms)


@dataclass(frozen=True)
class Selection:
    """A union of conjunctions. The empty selection keeps every item."""

    alternatives: tuple[Conjunction, ...] = ()
    expressions: tuple[str, ...] = ()  # as the user wrote them, for the run's config

    def matches(self, item: Item) -> bool:
        return not self.alternatives or any(alt.matches(item) for alt in self.alternatives)

    @property
    def is_everything(self) -> bool:
        return not self.alternatives


def selected_entries(
    entries: Iterable[Item | BadRow], selection: Selection, limit: int | None = None
) -> Iterator[Item | BadRow]:
    """The entries a run asks: the items ``selection`` keeps and every bad row (it must be reported),
    the first ``limit`` of them. A run streams these; its report counts them (``rundir.count_selected``)."""
    kept = (e for e in entries if isinstance(e, BadRow) or selection.matches(e))
    return islice(kept, limit) if limit is not None else kept


def parse_selection(expressions: Sequence[str] | str | None, tree: LexicalTree | None = None) -> Selection:
    """Parse ``--select`` expressions against the tree; raise SelectionError on unknown names."""
    if expressions is None:
        return Selection()
    if isinstance(expressions, str):
        expressions = [expressions]
    tree = tree or load_tree()
    index = _name_index(tree)
    alternatives = tuple(_parse_expression(expr, tree, index) for expr in expressions if expr.strip())
    return Selection(alternatives, tuple(expressions))


@lru_cache(maxsize=4)
def _name_index(tree: LexicalTree) -> dict[str, dict[str, str]]:
    """field -> lower-cased name -> canonical name."""
    return {field: {name.lower(): name for name in tree.names(field)} for field in FIELDS}


def _parse_expression(expression: str, tree: LexicalTree, index: dict[str, dict[str, str]]) -> Conjunction:
    terms: dict[str, frozenset[str]] = {}
    for raw_term in expression.split("&"):
        term = raw_term.strip()
        if not term:
            raise SelectionError(f"empty term in selection {expression!r}")
        field, values = _parse_term(term, index)
        # Two terms on one field intersect (task=A & task=A|B keeps A).
        terms[field] = terms[field] & values if field in terms else values
    return Conjunction(tuple(sorted(terms.items())))


def _parse_term(term: str, index: dict[str, dict[str, str]]) -> tuple[str, frozenset[str]]:
    key, sep, rest = term.partition("=")
    if sep:
        field = FIELD_OF_ALIAS.get(key.strip().lower())
        if field is None:
            raise SelectionError(
                f"unknown field {key.strip()!r} in {term!r}; fields are: {', '.join(sorted(FIELD_OF_ALIAS))}"
            )
        values = [value.strip() for value in rest.split("|")]
        for value in values:
            if value.lower() not in index[field]:
                raise SelectionError(_unknown_message(value, field, index[field].values()))
        return field, frozenset(value.lower() for value in values)
    # A bare name: find the one field that has it.
    values = [value.strip() for value in term.split("|")]
    fields = {field for field in FIELDS for value in values if value.lower() in index[field]}
    if len(fields) == 1 and all(value.lower() in index[next(iter(fields))] for value in values):
        return fields.pop(), frozenset(value.lower() for value in values)
    if len(fields) > 1:
        raise SelectionError(
            f"{term!r} names a value of several fields ({', '.join(sorted(fields))}): "
            f"write it as field=value, e.g. {sorted(fields)[0]}={values[0]}"
        )
    all_names = [name for names in index.values() for name in names.values()]
    missing = next(value for value in values if not any(value.lower() in names for names in index.values()))
    raise SelectionError(_unknown_message(missing, "any field", all_names))


def _unknown_message(value: str, where: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    by_lower = {name.lower(): name for name in candidates}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=5, cutoff=0.5)
    # Substring hits help with long names ("Fundus" -> "Fundus Photography").
    close += [name for name in by_lower if value.lower() in name and name not in close][: 5 - len(close)]
    hint = f"; closest: {', '.join(repr(by_lower[name]) for name in close)}" if close else ""
    return f"unknown name {value!r} in {where}{hint}"

"""The selection language over the lexical tree."""

from __future__ import annotations

import pytest

from gmai_client.data.select import load_tree, parse_selection
from gmai_client.errors import SelectionError
from gmai_client.types import Item


def item(
    task="Disease Diagnosis",
    department="Ophthalmology",
    granularity="Box Level",
    modality="Fundus Photography",
    category="glaucoma",
) -> Item:
    return Item("1", "q", (("A", "a"), ("B", "b")), ("A",), ("x",), category, task, department, granularity, modality)


def test_tree_has_the_benchmark_shape() -> None:
    tree = load_tree()
    assert len(tree.names("task")) == 18
    assert len(tree.names("department")) == 19 and "N/A" in tree.names("department")
    assert tree.names("granularity") == ("Box Level", "Contour Level", "Image Level", "Mask Level")
    assert len(tree.names("modality")) == 38


def test_intersection_across_views() -> None:
    selection = parse_selection("department=Ophthalmology & modality=Fundus Photography & granularity=Box Level")
    assert selection.matches(item())
    assert not selection.matches(item(granularity="Image Level"))
    assert not selection.matches(item(department="Dermatology"))


def test_alternatives_and_union_of_expressions() -> None:
    selection = parse_selection(["task=Counting|Disease Diagnosis", "department=Dermatology"])
    assert selection.matches(item())
    assert selection.matches(item(task="Bone", department="Dermatology"))
    assert not selection.matches(item(task="Bone"))


def test_bare_names_and_case_insensitivity() -> None:
    assert parse_selection("ophthalmology").matches(item())
    assert not parse_selection("Dermatology").matches(item())
    assert parse_selection("label=GLAUCOMA").matches(item())


def test_no_selection_keeps_everything() -> None:
    assert parse_selection(None).matches(item()) and parse_selection([]).is_everything


@pytest.mark.parametrize(
    ("expression", "suggestion"),
    [
        ("department=Opthalmology", "Ophthalmology"),
        ("modality=Fundus", "Fundus Photography"),
        ("task=Disease Diagnosys", "Disease Diagnosis"),
        ("Dermatolgy", "Dermatology"),
    ],
)
def test_unknown_names_suggest_the_closest(expression: str, suggestion: str) -> None:
    with pytest.raises(SelectionError, match="unknown name") as info:
        parse_selection(expression)
    assert suggestion in str(info.value)


def test_unknown_field() -> None:
    with pytest.raises(SelectionError, match="unknown field 'organ'"):
        parse_selection("organ=heart")

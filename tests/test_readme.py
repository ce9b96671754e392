"""The README as a new user reads it: every example that runs on the bundled sample selects items
there and finishes, and the sample is never presented as real data."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gmai_client.cli import main
from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.select import parse_selection
from gmai_client.data.splits import sample_path
from gmai_client.types import Item

README = Path(__file__).resolve().parents[1] / "README.md"


def bash_commands() -> list[tuple[str, str]]:
    """(command, its comment) of every line of the README's bash blocks, continuations joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    commands: list[tuple[str, str]] = []
    for block in blocks:
        pending = ""
        for line in block.splitlines():
            code, _, comment = line.partition("  #")
            code = code.rstrip()
            if code.endswith("\\"):
                pending += code[:-1] + " "
                continue
            commands.append(((pending + code).strip(), comment.strip()))
            pending = ""
    return commands


def sample_runs() -> list[tuple[str, str]]:
    """The README's `run` commands that take no --data: they run on the bundled sample."""
    runs = []
    for line, comment in bash_commands():
        for command in line.split(" && "):  # `pip install . && python -m gmai_client run`
            is_run = re.match(r"python -m gmai_client run(\s|$)", command)  # not `runs`
            if is_run and "--data" not in command and "<" not in command:
                runs.append((command, comment))
    return runs


def test_the_readme_has_sample_runs_to_check() -> None:
    commands = [command for command, _ in sample_runs()]
    assert "python -m gmai_client run" in commands and any("--select" in command for command in commands)


@pytest.mark.parametrize("command", sorted({command for command, _ in sample_runs()}))
def test_each_readme_run_on_the_sample_selects_items_and_finishes(command: str, tmp_path: Path) -> None:
    # The README's own --select example matched nothing on the sample (exit 5, "no item selected").
    argv = shlex.split(command)[3:]  # after "python -m gmai_client"
    assert main([*argv, "--no-progress", "--out", str(tmp_path / "runs")]) == 0


def test_every_readme_run_on_the_sample_says_the_sample_is_synthetic() -> None:
    for command, comment in sample_runs():
        assert "synthetic" in comment, command


def test_the_selection_examples_in_the_prose_select_items_on_the_sample() -> None:
    text = README.read_text(encoding="utf-8")
    examples = re.findall(r"`((?:task|department|granularity|modality|category)=[^`]+)`", text)
    assert examples
    items = [e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item)]
    for example in examples:
        selection = parse_selection([example])
        assert any(selection.matches(item) for item in items), example

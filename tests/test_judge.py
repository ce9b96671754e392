"""The judge is asked exactly where VLMEvalKit asks its judge: where the reference rules found no
letter. An answer they read as a refusal (Z) is a finding, never a question for the judge.
(The judge end to end, through the command line, is in test_side_by_side.)"""

from __future__ import annotations

from typing import Any, cast

import pytest

from gmai_client.data.dataset import iter_items, open_dataset
from gmai_client.data.splits import sample_path
from gmai_client.protocol.reference import REFUSAL_PHRASES
from gmai_client.protocol.scoring import score_answer
from gmai_client.runner.judge import Judge
from gmai_client.types import Item, Response


@pytest.mark.parametrize(
    ("answer", "asked"),
    [
        ("Hard to say, more or less.", True),  # no letter found: VLMEvalKit asks its judge
        ("B", False),
        *[(phrase, False) for phrase in REFUSAL_PHRASES],  # refused (Z) by the rules
        ("I would say Z.", False),  # a Z token and no option letter: refused too
    ],
)
def test_the_judge_is_asked_only_where_the_rules_found_nothing(answer: str, asked: bool) -> None:
    item = next(e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item) and not e.is_multi_answer)
    judge = Judge(cast(Any, None), "judge")  # deciding whom to ask sends nothing
    record = score_answer(item, "model", Response(answer))
    assert judge.wants(item, record) is asked


class _Recording:
    """A dispatcher that records the judge's prompts and answers a fixed reply."""

    def __init__(self, reply: str) -> None:
        self.reply, self.prompts = reply, []

    async def send(self, request: Any) -> Any:
        from types import SimpleNamespace

        self.prompts.append(request.text)
        return SimpleNamespace(response=Response(self.reply), attempts=1, cached=False)


@pytest.mark.parametrize(
    ("rules", "shown"), [("vlmevalkit-2025", "Answer: 0\n"), ("vlmevalkit-2026", "Answer: => B\n")]
)
def test_the_judge_sees_the_answer_as_the_rule_sets_prediction_file_reads_it_back(rules: str, shown: str) -> None:
    """Up to 2025 VLMEvalKit's writer turns "=> B" into a formula (read back as 0); 2026's keeps it."""
    import asyncio

    from gmai_client.protocol.rulesets import rule_set

    item = next(e for e in iter_items(open_dataset([sample_path()])) if isinstance(e, Item) and not e.is_multi_answer)
    dispatcher = _Recording("B")
    judge = Judge(cast(Any, dispatcher), "judge", rule_set(rules))
    record = score_answer(item, "model", Response("=> B"), rules=rule_set("vlmevalkit-2025"))
    assert judge.wants(item, record)  # read back as "0": no letter under 2025
    judged = asyncio.run(judge.rescue(item, record))
    assert shown in dispatcher.prompts[0] and judged.letters == ("B",)

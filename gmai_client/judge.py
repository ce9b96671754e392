"""The LLM judge: a second model maps an answer the rules could not read to an option, or to none.

Follows the reference protocol (``normalize.judge_prompt``, VLMEvalKit's matching prompt): the judge
sees the question, the options and the model's answer and replies with one letter, or Z when no
option matches. Only single-answer items the rules left ``unparsed`` are judged; the judge's reply
goes through the same extraction rules as any answer.

The judge is any configured backend (``--judge openai:gpt-4o-mini``), sent through its own
``Dispatcher``, so its calls are rate-limited, retried and cached like the models' own, and they
are counted apart from them. A judge that fails or answers Z leaves the item ``unparsed`` (wrong,
visibly): never a guessed letter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gmai_client.dispatch import Dispatcher
from gmai_client.errors import BackendError
from gmai_client.normalize import extract, judge_prompt
from gmai_client.types import Item, Record, Request, SamplingParams

#: The judge replies with one letter; a few tokens leave room for "Z" or "B." without rambling.
JUDGE_PARAMS = SamplingParams(temperature=0.0, max_tokens=16)


@dataclass
class JudgeCounts:
    asked: int = 0  # items sent to the judge
    requests: int = 0  # requests sent (retries included, cache hits excluded)
    cache_hits: int = 0
    rescued: int = 0  # items the judge mapped to an option
    no_match: int = 0  # the judge answered Z
    failed: int = 0  # the judge's call failed or its reply was unreadable


class Judge:
    def __init__(self, dispatcher: Dispatcher, label: str):
        self.dispatcher = dispatcher
        self.label = label
        self.counts = JudgeCounts()

    def wants(self, item: Item, record: Record) -> bool:
        return record.status == "unparsed" and not item.is_multi_answer and bool(record.prediction)

    async def rescue(self, item: Item, record: Record) -> Record:
        """The record with the judge's verdict applied (``rule`` says what the judge did)."""
        self.counts.asked += 1
        request = Request(
            item_index=f"judge:{item.index}",
            text=judge_prompt(item.question, item.options, record.prediction or ""),
            params=JUDGE_PARAMS,
        )
        try:
            sent = await self.dispatcher.send(request)
        except BackendError as exc:
            self.counts.failed += 1
            return replace(record, rule=f"judge {self.label} failed: {exc.kind}")
        self.counts.requests += sent.attempts
        self.counts.cache_hits += sent.cached
        verdict = extract(sent.response.text, item.options)
        if verdict.status == "ok" and len(verdict.letters) == 1:
            self.counts.rescued += 1
            correct = None if item.answer is None else set(verdict.letters) == set(item.answer)
            return replace(record, status="ok", letters=verdict.letters, correct=correct, rule=f"judge {self.label}")
        if sent.response.text.strip().upper().rstrip(".") == "Z":
            self.counts.no_match += 1
            return replace(record, rule=f"judge {self.label}: no option matches")
        self.counts.failed += 1
        return replace(record, rule=f"judge {self.label}: unreadable verdict")

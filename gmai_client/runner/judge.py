"""The LLM judge: a second model maps an answer the reference rules could not read to an option.

It is asked exactly where VLMEvalKit asks its judge: for every answer whose reference reading found
nothing (``status == "unparsed"``), with VLMEvalKit's prompt (``reference.judge_prompt``, the
answer as read back), and its reply is read with the same reference rules. Like VLMEvalKit it
gets up to ``TRIES`` tries per item (each a distinct request, so the cache does not replay the
first). A reply of Z means no option matches: the item stays wrong, with rule "no option matches".

The one deliberate difference: where all tries fail VLMEvalKit draws a random letter; here the
item stays unparsed (wrong) and ``JudgeCounts.fallback`` says how many such items there were.

The judge is any configured backend (``--judge openai:gpt-4o-mini``), sent through its own
``Dispatcher``, so its calls are rate-limited, retried and cached like the models' own, and they
are counted apart from them. An error that means no later call can succeed (a bad key, an unknown
model) stops the judge for the rest of the run, once, with its reason in ``JudgeCounts.stopped``;
so do ``STOP_AFTER_FAILED_ITEMS`` items in a row whose every call failed (a judge answering only 500s
or timeouts), rather than spend every retry on every item. Items whose every call failed are
counted (``failed_items``): a run with any is not reported as complete.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gmai_client.errors import BackendError, redact
from gmai_client.policy.dispatch import Dispatcher
from gmai_client.protocol.reference import NO_LETTER, infer, judge_prompt_as_read_back, options_as_read_back
from gmai_client.protocol.rulesets import DEFAULT_RULES, RuleSet
from gmai_client.protocol.scoring import with_reference
from gmai_client.types import Extraction, Item, Record, Request, SamplingParams

#: VLMEvalKit asks its judge up to three times before giving up on an item.
TRIES = 3
#: Room for a letter, or a short sentence around it, without rambling.
JUDGE_PARAMS = SamplingParams(temperature=0.0, max_tokens=32)
#: Items in a row whose every call failed that stop the judge: it is down, not unlucky.
STOP_AFTER_FAILED_ITEMS = 3


@dataclass
class JudgeCounts:
    asked: int = 0  # items sent to the judge
    requests: int = 0  # requests sent (retries included, cache hits excluded)
    cache_hits: int = 0
    rescued: int = 0  # items the judge mapped to an option
    no_match: int = 0  # the judge answered Z: no option matches
    fallback: int = 0  # no usable verdict after all tries: VLMEvalKit would draw a random letter here
    failed_calls: int = 0  # calls that ended in an error
    stopped: str = ""  # why the judge was stopped for the rest of the run
    failed_items: int = 0  # of ``fallback``: items whose every call failed (none was answered)


class Judge:
    def __init__(self, dispatcher: Dispatcher, label: str, rules: RuleSet = DEFAULT_RULES):
        self.dispatcher = dispatcher
        self.label = label
        self.rules = rules  # the run's rule set: what the prompt shows, how the reply is read
        self.counts = JudgeCounts()
        self._failing = 0  # items in a row whose every call failed
        self._last_error = ""

    def wants(self, item: Item, record: Record) -> bool:
        """VLMEvalKit asks its judge whenever its rules find no letter."""
        return record.status == "unparsed"

    async def rescue(self, item: Item, record: Record) -> Record:
        """The record with the judge's verdict applied (``rule`` says what the judge did)."""
        self.counts.asked += 1
        # What VLMEvalKit's judge is shown: the question, options and answer read back from its file.
        prompt = judge_prompt_as_read_back(item.question, item.options, record.prediction or "", self.rules)
        options = options_as_read_back(item.options, self.rules)  # what its reply is matched against
        calls = failed = 0
        for attempt in range(TRIES):
            if self.counts.stopped:
                break
            reply = await self._ask(item, prompt, attempt)
            calls, failed = calls + 1, failed + (reply is None)
            if reply is None:
                continue
            self._failing = 0
            letter = infer(reply, options, self.rules)
            if letter == NO_LETTER:
                self.counts.no_match += 1
                verdict = Extraction((NO_LETTER,), "refused", f"judge {self.label}: no option matches")
                return with_reference(record, verdict)
            if letter is not None:
                self.counts.rescued += 1
                return with_reference(record, Extraction((letter,), "ok", f"judge {self.label}"))
        self.counts.fallback += 1
        why = f"no usable verdict in {TRIES} tries"
        if calls and failed == calls:
            why = f"every call failed ({self._last_error})"
            self._count_failed_item()
        why = f"stopped ({self.counts.stopped})" if self.counts.stopped else why
        return replace(record, rule=f"judge {self.label}: {why}")

    def _count_failed_item(self) -> None:
        self.counts.failed_items += 1
        self._failing += 1
        if self._failing >= STOP_AFTER_FAILED_ITEMS and not self.counts.stopped:
            self.counts.stopped = f"every call failed for {self._failing} items in a row (the last: {self._last_error})"

    async def _ask(self, item: Item, prompt: str, attempt: int) -> str | None:
        """The judge's reply, or None when the call failed."""
        request = Request(
            item_index=f"judge:{item.index}",
            text=prompt,
            params=replace(JUDGE_PARAMS, repeat=attempt),
        )
        try:
            sent = await self.dispatcher.send(request)
        except BackendError as exc:
            self.counts.failed_calls += 1
            self._last_error = redact(str(exc))
            self.counts.requests += max(1, int(getattr(exc, "attempts", 1) or 1))
            if exc.stops_model and not self.counts.stopped:
                self.counts.stopped = redact(str(exc))
            return None
        self.counts.requests += sent.attempts  # 0 for a cache hit
        self.counts.cache_hits += sent.cached
        return sent.response.text

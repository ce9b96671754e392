"""The fake API enforces what the vendors enforce for reasoning models, seen through the real SDKs
(so a client test against it fails where the vendor would refuse), and answers as they answer:
reasoning-token usage, thinking blocks, reasoning_content, <think> text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")

import anthropic
import openai

from gmai_client.testing.fake_api import FakeAPI
from gmai_client.testing.fake_reasoning import OPEN_THINKING_TOKENS, OPENAI_REASONING_TOKENS

USER = [{"role": "user", "content": "Which option?"}]


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    with FakeAPI(fallback="B") as server:
        yield server


@pytest.fixture
def gpt(api: FakeAPI) -> Iterator[Any]:
    client = openai.OpenAI(api_key="sk-test", base_url=api.base_url_openai, max_retries=0)
    yield client
    client.close()


@pytest.fixture
def claude(api: FakeAPI) -> Iterator[Any]:
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=api.base_url_anthropic, max_retries=0)
    yield client
    client.close()


@pytest.mark.parametrize(
    ("model", "fields", "said"),
    [
        ("o4-mini", {"max_tokens": 100}, "Use 'max_completion_tokens' instead"),
        ("gpt-5", {"max_completion_tokens": 100, "temperature": 0}, "Only the default (1) value is supported"),
        ("gpt-5.1", {"reasoning_effort": "minimal"}, "Supported values are: 'none', 'low', 'medium', and 'high'"),
        ("gpt-4o", {"reasoning_effort": "high"}, "'reasoning_effort' is not supported with this model"),
        ("gpt-4o", {"extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}, "chat_template_kwargs"),
    ],
)
def test_openai_refuses_what_reasoning_models_refuse(gpt: Any, model: str, fields: dict, said: str) -> None:
    with pytest.raises(openai.BadRequestError, match=re.escape(said)):
        gpt.chat.completions.create(model=model, messages=USER, **fields)


@pytest.mark.parametrize(
    ("model", "fields", "said"),
    [
        ("claude-sonnet-4-5", {"max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 2048}},
         "must be greater than `thinking.budget_tokens`"),
        ("claude-sonnet-4-5", {"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 512}},
         "greater than or equal to 1024"),
        ("claude-sonnet-4-5", {"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048},
                               "temperature": 0}, "may only be set to 1 when thinking"),
        ("claude-sonnet-4-5", {"max_tokens": 4096, "thinking": {"type": "adaptive"}}, "adaptive thinking is not"),
        ("claude-opus-4-7", {"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048}},
         "thinking.type.enabled"),
        ("claude-haiku-4-5", {"max_tokens": 512, "output_config": {"effort": "low"}}, "does not support effort"),
    ],
)  # fmt: skip
def test_anthropic_refuses_what_thinking_models_refuse(claude: Any, model: str, fields: dict, said: str) -> None:
    with pytest.raises(anthropic.BadRequestError, match=re.escape(said)):
        claude.messages.create(model=model, messages=USER, extra_body=fields, max_tokens=fields.pop("max_tokens"))


def test_openai_reasoning_usage_and_a_bound_spent_on_reasoning(gpt: Any) -> None:
    answer = gpt.chat.completions.create(model="o4-mini", messages=USER, max_completion_tokens=5000)
    medium = OPENAI_REASONING_TOKENS["medium"]
    assert answer.choices[0].message.content == "B"
    assert answer.usage.completion_tokens_details.reasoning_tokens == medium
    assert answer.usage.completion_tokens == medium + 1  # the reasoning is part of the output
    starved = gpt.chat.completions.create(model="o4-mini", messages=USER, max_completion_tokens=100)
    assert (starved.choices[0].message.content, starved.choices[0].finish_reason) == ("", "length")


def test_open_thinking_models_think_in_content_or_a_reasoning_field(api: FakeAPI, gpt: Any) -> None:
    tags = gpt.chat.completions.create(model="zai-org/GLM-4.5V", messages=USER, max_tokens=4000)
    content = tags.choices[0].message.content
    assert content.startswith("<think>\nOption A") and content.endswith("</think>\n\nB")
    opened = gpt.chat.completions.create(model="Qwen/Qwen3-VL-8B-Thinking", messages=USER, max_tokens=4000)
    assert opened.choices[0].message.content.startswith("Option A")  # Qwen3's template opened <think>
    assert opened.usage.completion_tokens == OPEN_THINKING_TOKENS + 1
    off = gpt.chat.completions.create(
        model="Qwen/Qwen3-VL-8B-Thinking", messages=USER, max_tokens=4000,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )  # fmt: skip
    assert off.choices[0].message.content == "B"
    api.reasoning_field = "reasoning_content"
    try:
        parsed = gpt.chat.completions.create(model="Qwen/Qwen3-VL-8B-Thinking", messages=USER, max_tokens=4000)
    finally:
        api.reasoning_field = None
    assert parsed.choices[0].message.content == "B"
    assert parsed.choices[0].message.reasoning_content.startswith("Option A")


def test_claude_answers_with_thinking_blocks_first(api: FakeAPI, claude: Any) -> None:
    api.redact_thinking = True
    try:
        message = claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=4096, messages=USER,
            extra_body={"thinking": {"type": "enabled", "budget_tokens": 2048}},
        )  # fmt: skip
    finally:
        api.redact_thinking = False
    assert [block.type for block in message.content] == ["thinking", "redacted_thinking", "text"]
    assert message.content[0].thinking.startswith("Option A") and message.content[-1].text == "B"
    assert message.usage.output_tokens > 800  # the thinking is billed as output

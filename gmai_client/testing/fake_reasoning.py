"""What the vendor APIs enforce for reasoning models, and how their answers carry thinking: the
fake API's half for today's frontier models.

Written from the vendors' references, apart from the client's own model families table, so that a
test of the client against this fake checks the table rather than repeating it:

* OpenAI's reasoning models (``o1``, ``o3``, ``o4-mini``, ``gpt-5*``) refuse ``max_tokens`` (they
  take ``max_completion_tokens``) and any temperature but 1, and take ``reasoning_effort`` only
  from their own values; other OpenAI models refuse ``reasoning_effort``; OpenAI's own models
  refuse ``chat_template_kwargs`` (a vLLM / SGLang field). A reasoning model spends reasoning
  tokens by its effort, reports them in ``completion_tokens_details.reasoning_tokens`` (a part of
  ``completion_tokens``) and returns none of their text; a bound too small for them is an empty
  answer with ``finish_reason: length``.
* Open thinking models (a name with ``thinking``, ``qwen3`` or ``glm-4.``) think before
  answering unless ``chat_template_kwargs.enable_thinking`` is false: ``<think>...</think>`` in
  ``content`` (Qwen3's chat template opens ``<think>`` itself, so its output holds only the close),
  or the thinking in ``reasoning_content`` / ``reasoning`` when the server runs a reasoning parser
  (``FakeAPI.reasoning_field``).
* Anthropic: ``thinking: {type: enabled, budget_tokens}`` needs a budget of at least 1,024 and
  below ``max_tokens``; with thinking on, a temperature other than 1 or any ``top_k`` is refused;
  Claude Opus 4.7 (and Mythos, Fable) take only ``{type: adaptive}`` and no temperature at all;
  models before 4.6 refuse the adaptive form; ``output_config.effort`` is refused by the models
  without it and checked against the values of those with it. A thinking answer starts with a
  ``thinking`` block (and a ``redacted_thinking`` one when ``FakeAPI.redact_thinking``); its
  output tokens count the thinking.

The thinking text names option letters on purpose: a client that scored it would read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_OPENAI_REASONING = re.compile(r"^(o\d|gpt-5)")
_OPENAI_OWN = re.compile(r"^(o\d|gpt-|chatgpt-)")
_OPEN_THINKING = re.compile(r"thinking|qwen3|glm-4\.")
_OPENAI_EFFORTS = (
    (re.compile(r"^gpt-5\.1"), ("none", "low", "medium", "high")),
    (re.compile(r"^gpt-5\.2"), ("none", "low", "medium", "high", "xhigh")),
    (re.compile(r"^gpt-5(-mini|-nano)?(-\d{4}-\d\d-\d\d)?$"), ("minimal", "low", "medium", "high")),
    (re.compile(r"^o\d"), ("low", "medium", "high")),
)
#: Reasoning tokens an OpenAI reasoning model spends per effort (medium is the default).
OPENAI_REASONING_TOKENS = {"none": 0, "minimal": 16, "low": 200, "medium": 600, "high": 1500, "xhigh": 3000}
#: Tokens an open thinking model thinks before answering (more than a 512-token bound holds).
OPEN_THINKING_TOKENS = 1200
#: Tokens Claude thinks, at most its budget (adaptive: by effort).
CLAUDE_THINKING_TOKENS = {"low": 150, "medium": 400, "high": 800, "xhigh": 1200, "max": 1600}
_ADAPTIVE_ONLY = re.compile(r"claude-(opus-4-7|mythos|fable)")
_ADAPTIVE = re.compile(r"claude-((opus|sonnet)-4-[6-9]|[a-z]+-[5-9]|mythos|fable)")
_EFFORT = re.compile(r"claude-(opus-4-5|(opus|sonnet)-4-[6-9]|[a-z]+-[5-9]|mythos|fable)")
_CLAUDE_EFFORTS = (
    (re.compile(r"claude-opus-4-5"), ("low", "medium", "high")),
    (re.compile(r"claude-(opus|sonnet)-4-6"), ("low", "medium", "high", "max")),
    (re.compile(r"claude-"), ("low", "medium", "high", "xhigh", "max")),
)
_DOCS = "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


class Refused(Exception):
    """A request field the vendor refuses for this model: answered with a 400 and this message."""


def check(api: str, body: dict[str, Any]) -> None:
    """Raise ``Refused`` as the vendor would for ``body`` (an ``api`` request)."""
    model = str(body.get("model", "")).lower()
    if api == "openai":
        _check_openai(model, body)
    else:
        _check_anthropic(model, body)


def _check_openai(model: str, body: dict[str, Any]) -> None:
    if _OPENAI_OWN.match(model) and "chat_template_kwargs" in body:
        raise Refused("Unrecognized request argument supplied: chat_template_kwargs")
    effort = body.get("reasoning_effort")
    if not _OPENAI_REASONING.match(model):
        if effort is not None and _OPENAI_OWN.match(model):
            raise Refused("Unsupported parameter: 'reasoning_effort' is not supported with this model.")
        return
    if "max_tokens" in body:
        raise Refused(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
        )
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        raise Refused(
            f"Unsupported value: 'temperature' does not support {temperature} with this model. "
            "Only the default (1) value is supported."
        )
    accepted = next((values for pattern, values in _OPENAI_EFFORTS if pattern.search(model)), None)
    if effort is not None and accepted is not None and effort not in accepted:
        quoted = [f"'{value}'" for value in accepted]
        listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]  # OpenAI's words
        raise Refused(
            f"Unsupported value: '{effort}' is not supported with the '{model}' model. Supported values are: {listed}."
        )


def _check_anthropic(model: str, body: dict[str, Any]) -> None:
    thinking = body.get("thinking") if isinstance(body.get("thinking"), dict) else None
    kind = (thinking or {}).get("type")
    if _ADAPTIVE_ONLY.search(model):
        if "temperature" in body:
            raise Refused("temperature: this model does not support the temperature parameter")
        if kind in ("enabled", "disabled"):
            raise Refused(
                f'"thinking.type.{kind}" is not supported for this model. '
                'Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.'
            )
    if kind == "adaptive" and not _ADAPTIVE.search(model):
        raise Refused("thinking.type: adaptive thinking is not supported on this model; use thinking.type.enabled")
    if kind == "enabled":
        budget = thinking.get("budget_tokens") if thinking else None
        if not isinstance(budget, int) or budget < 1024:
            raise Refused("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if budget >= int(body.get("max_tokens", 0)):
            raise Refused(f"`max_tokens` must be greater than `thinking.budget_tokens`. {_DOCS}")
    if kind in ("enabled", "adaptive"):
        if body.get("temperature", 1) != 1:
            raise Refused(f"`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. {_DOCS}")
        if "top_k" in body:
            raise Refused(f"`top_k` may not be set when thinking is enabled. {_DOCS}")
    effort = (body.get("output_config") or {}).get("effort") if isinstance(body.get("output_config"), dict) else None
    if effort is not None:
        if not _EFFORT.search(model):
            raise Refused("output_config.effort: Extra inputs are not permitted: this model does not support effort")
        accepted = next(values for pattern, values in _CLAUDE_EFFORTS if pattern.search(model))
        if effort not in accepted:
            raise Refused(f"output_config.effort: Input should be {', '.join(repr(v) for v in accepted)}")


# -------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Thought:
    """What a model thinks before answering: how many tokens, the text, and where it goes."""

    tokens: int
    text: str  # "" when the vendor returns no text of it (OpenAI's reasoning models)
    where: str  # "hidden" (OpenAI), "tags" (<think> in content), "open" (only </think>), a message
    # field name ("reasoning_content", "reasoning"), or "blocks" (Anthropic)


def thought(api: str, body: dict[str, Any], reasoning_field: str | None = None) -> Thought | None:
    """What the model of ``body`` thinks before answering, if it thinks (None: it does not)."""
    model = str(body.get("model", "")).lower()
    if api == "anthropic":
        thinking = body.get("thinking") if isinstance(body.get("thinking"), dict) else {}
        effort = str((body.get("output_config") or {}).get("effort", "high"))
        if thinking.get("type") == "enabled":
            count = min(int(thinking["budget_tokens"]), CLAUDE_THINKING_TOKENS["high"])
        elif thinking.get("type") == "adaptive":
            count = CLAUDE_THINKING_TOKENS.get(effort, CLAUDE_THINKING_TOKENS["high"])
        else:
            return None
        return Thought(count, thinking_text(count), "blocks")
    if _OPENAI_REASONING.match(model):
        effort = str(body.get("reasoning_effort") or "medium")
        return Thought(OPENAI_REASONING_TOKENS.get(effort, 600), "", "hidden")
    switch = body.get("chat_template_kwargs") or {}
    if not _OPEN_THINKING.search(model) or switch.get("enable_thinking") is False:
        return None
    where = reasoning_field or ("open" if "qwen3" in model else "tags")
    return Thought(OPEN_THINKING_TOKENS, thinking_text(OPEN_THINKING_TOKENS), where)


def thinking_text(tokens: int) -> str:
    """About ``tokens`` tokens (four characters each) of deliberation that names option letters."""
    line = "Option A looks plausible, but B and C fit the image too; check D. "
    return (line * (tokens * 4 // len(line) + 1))[: tokens * 4]

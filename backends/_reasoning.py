"""What the OpenAI and Anthropic backends share for reasoning models and per-model prompts:
options, the output bound, temperature, reasoning effort, the model's own system prompt, and what
of them joins the backend's identity.

The model's family (``families``) gives the defaults; the model's own ``-B`` options override them:

    -B max_tokens=N            the output bound, thinking included; default: the run's --max-tokens,
                               raised to the family's bound (room for the thinking)
    -B temperature=omit|send   omit: send no temperature (models that take only their default)
    -B reasoning_effort=VALUE  how hard the model thinks; checked against the values the family
                               table lists for the model, before anything is sent
    -B system=TEXT|@FILE       this model's system prompt instead of the run's --system-prompt
                               (some models need one; some open models switch thinking on by one)

What changes an answer joins ``identity()`` (so the run folder and the cache key) only when it
differs from what a plain model gets, so the cache keys of GPT-4o-style models stay as they were.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Literal

from gmai_client.backends.families import Family, family_of
from gmai_client.errors import ConfigError
from gmai_client.options import BackendOptions, option, text_or_file
from gmai_client.types import Request, Usage

_BOUND_DEFAULT = "--max-tokens, raised to the model family's bound where it has one"


@dataclass(frozen=True)
class ReasoningOptions(BackendOptions):
    max_tokens: int | None = option(
        None, "this model's output bound, thinking included (replaces --max-tokens)", minimum=1,
        default_text=_BOUND_DEFAULT,
    )  # fmt: skip
    temperature: Literal["send", "omit"] | None = option(
        None, "omit: send no temperature, for models that take only their default",
        default_text="the model family table's, else send",
    )  # fmt: skip
    reasoning_effort: str = option(
        "", "how hard a reasoning model thinks (OpenAI reasoning_effort; Anthropic output_config.effort)",
        default_text="not sent: the model's default",
    )  # fmt: skip
    system: str | None = option(
        None, "this model's system prompt, TEXT or @FILE, replacing --system-prompt (empty: none)", blank=True,
        default_text="--system-prompt's (none unless given)",
    )  # fmt: skip


class ReasoningControls:
    """The reasoning half of an API backend (mixed into ``ApiBackend`` subclasses)."""

    name: str
    model: str
    options: Any
    family_backend: str = ""  # whose rules the model follows ("openai" for Azure's deployments), else ``name``

    @cached_property
    def family(self) -> Family:
        return family_of(self.family_backend or self.name, self.model)

    @cached_property
    def own_system(self) -> str | None:
        """The model's own system prompt (``-B system=``, a file read once), None: the run's."""
        given = self.options.system
        return None if given is None else text_or_file(given, f"{self.name}:{self.model}: -B system")

    def system_prompt(self, request: Request) -> str:
        """The system prompt sent with ``request``: the model's own, else the run's ("" for none)."""
        return request.system if self.own_system is None else self.own_system

    def estimate_input_tokens(self, request: Request) -> int:
        if self.own_system is not None and self.own_system != request.system:
            request = replace(request, system=self.own_system)
        return super().estimate_input_tokens(request)  # type: ignore[misc]

    @property
    def reasoning_effort(self) -> str:
        return str(self.options.reasoning_effort or "").strip()

    @property
    def omits_temperature(self) -> bool:
        return (self.options.temperature or self.family.temperature or "send") == "omit"

    def family_bound(self) -> int | None:
        """The output bound the family needs (None: the run's is enough)."""
        return self.family.max_tokens

    def output_bound(self, request: Request) -> int:
        """The output bound sent for ``request``: ``-B max_tokens``, else the run's raised to the family's."""
        if self.options.max_tokens is not None:
            return int(self.options.max_tokens)
        return max(request.params.max_tokens, self.family_bound() or 0)

    def typical_output(self) -> tuple[int, str] | None:
        """(output tokens of one short answer, where the figure comes from) by the family table, for
        ``plan`` when no answer of this model was seen yet; None when the table has no figure."""
        figure = self.family.thinking_typical_output if self.thinks else self.family.typical_output
        if not figure:
            return None
        return figure, f"the model families table's typical figure ({self.family.source})"

    @property
    def thinks(self) -> bool:
        """Whether the model was asked to think (Anthropic's thinking options)."""
        return False

    def check_reasoning(self) -> None:
        """Refuse, before anything is sent, a reasoning effort the family table says the model refuses."""
        _ = self.own_system  # a system prompt file that cannot be read fails now
        effort, accepted = self.reasoning_effort, self.family.reasoning_effort
        if not effort or accepted is None:
            return
        where = f"the model families table ({self.family.source}; {self.family.patterns[-1]})"
        if not accepted:
            raise ConfigError(f"{self.name}:{self.model} takes no reasoning_effort ({where}); drop -B reasoning_effort")
        if effort not in accepted:
            raise ConfigError(
                f"{self.name}:{self.model}: reasoning_effort={effort!r} is not one it takes ({', '.join(accepted)}) "
                f"({where}); if the vendor now takes it, add it in a --model-families file"
            )

    def reasoning_identity(self) -> dict[str, str]:
        """The answer-changing settings that differ from a plain model's, for ``identity()``."""
        identity: dict[str, str] = {}
        if self.options.max_tokens is not None:
            identity["output_bound"] = str(self.options.max_tokens)
        elif self.family_bound():
            identity["output_bound"] = f"at least {self.family_bound()}"
        if self.omits_temperature:
            identity["temperature"] = "omitted"
        if self.reasoning_effort:
            identity["reasoning_effort"] = self.reasoning_effort
        if self.own_system is not None:  # the text itself is in the cache key's request; here its digest
            digest = hashlib.sha256(self.own_system.encode("utf-8")).hexdigest()[:16]
            identity["system"] = f"sha256 {digest}" if self.own_system else "none"
        return identity


def field_of(obj: Any, *path: str) -> Any:
    """``obj.a.b`` (or ``obj["a"]["b"]``, as SDK objects keep fields they do not model), else None."""
    for name in path:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return obj


def usage_of(input_tokens: Any, output_tokens: Any, reasoning_tokens: Any) -> Usage:
    """A Usage; the reasoning tokens are a part of the output tokens (billed as output), never added."""
    reasoning = int(reasoning_tokens) if isinstance(reasoning_tokens, int) and reasoning_tokens > 0 else None
    return Usage(input_tokens=int(input_tokens or 0), output_tokens=int(output_tokens or 0), reasoning_tokens=reasoning)

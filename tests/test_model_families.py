"""The model families table: what GPT-5, o-series, Claude and open thinking models need in their
requests, shipped as dated data, laid over by the user's file and overridden per model by -B.

Requests go through the real ``openai`` / ``anthropic`` SDKs to the fake API, which refuses what the
vendors refuse (``testing/fake_reasoning``), so a wrong table entry fails here as it would live.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")

from gmai_client import errors
from gmai_client.backends import registry
from gmai_client.backends.families import FAMILIES_ENV, load_families, use_model_families
from gmai_client.config import parse_model_spec
from gmai_client.testing.fake_api import FakeAPI
from gmai_client.types import Request, SamplingParams
from tests.api_backend_kit import fails, generate, serve

RUN_BOUND = SamplingParams(temperature=0.0, max_tokens=512)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAPI]:
    yield from serve()


@pytest.fixture
def api(server: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.delenv(FAMILIES_ENV, raising=False)
    server.reset()
    server.answers, server.fallback = {}, "B"
    return server


def model(api: FakeAPI, spec: str, *options: str):  # type: ignore[no-untyped-def]
    url = api.base_url_openai if spec.startswith("openai:") else api.base_url_anthropic
    return registry.create(parse_model_spec(f"{spec}@{url}", list(options)))


def ask(api: FakeAPI, spec: str, *options: str) -> dict:
    generate(model(api, spec, *options), Request("q1", "Which?", params=RUN_BOUND))
    return dict(api.requests[-1].params)


# ---------------------------------------------------------------------- the table


def test_shipped_table_is_dated_and_names_gpt5_rules() -> None:
    table = load_families()
    assert table.as_of is not None
    gpt5 = table.lookup("openai", "gpt-5")
    assert gpt5.output_field == "max_completion_tokens" and gpt5.temperature == "omit"
    assert gpt5.reasoning_effort == ("minimal", "low", "medium", "high")
    assert "model_families.json" in gpt5.source
    assert not table.lookup("openai", "llava-hf/llava-1.5-7b-hf").known  # an open model: plain defaults


def test_the_most_specific_pattern_applies_last() -> None:
    table = load_families()
    assert table.lookup("openai", "gpt-5.1").reasoning_effort == ("none", "low", "medium", "high")
    assert table.lookup("openai", "gpt-5.1-codex-max").reasoning_effort == ("low", "medium", "high", "xhigh")
    assert table.lookup("openai", "gpt-5.1-chat-latest").reasoning_effort == ("medium",)
    codex = table.lookup("openai", "gpt-5.1-codex")
    assert codex.reasoning_effort == ("low", "medium", "high") and codex.output_field == "max_completion_tokens"
    assert table.lookup("anthropic", "claude-opus-4-7").thinking == "adaptive_only"
    assert table.lookup("anthropic", "claude-sonnet-4-5-20250929").thinking == "budget"
    assert table.lookup("anthropic", "claude-sonnet-4-6").thinking == "adaptive"


def test_a_user_table_is_laid_over_the_shipped_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "families.json"
    mine.write_text(json.dumps({"families": {
        "openai:gpt-5*": {"max_tokens": 4000},
        "openai:in-house-reasoner*": {"output_field": "max_completion_tokens", "temperature": "omit"},
    }}))  # fmt: skip
    monkeypatch.setenv(FAMILIES_ENV, str(mine))
    table = load_families()
    gpt5 = table.lookup("openai", "gpt-5")
    assert gpt5.max_tokens == 4000 and gpt5.output_field == "max_completion_tokens"  # the rest stays shipped
    assert str(mine) in gpt5.source
    assert table.lookup("openai", "in-house-reasoner-2").temperature == "omit"


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"output_feild": "max_tokens"}, "unknown key 'output_feild'"),
        ({"temperature": "zero"}, "temperature must be one of send, omit"),
        ({"max_tokens": -1}, "max_tokens must be a positive integer"),
        ({"reasoning_effort": "high"}, "reasoning_effort must be a list"),
    ],
)
def test_a_bad_user_table_names_file_pattern_and_key(tmp_path: Path, entry: dict, named: str) -> None:
    mine = tmp_path / "families.json"
    mine.write_text(json.dumps({"families": {"openai:x*": entry}}))
    with pytest.raises(errors.ConfigError, match=named) as caught:
        use_model_families(mine)
    assert str(mine) in str(caught.value) and "'openai:x*'" in str(caught.value)


# ---------------------------------------------------------------------- requests by family


@pytest.mark.parametrize("spec", ["openai:gpt-5", "openai:o4-mini", "openai:gpt-5-mini-2025-08-07"])
def test_openai_reasoning_models_get_their_fields_with_no_option(api: FakeAPI, spec: str) -> None:
    sent = ask(api, spec)
    assert "max_tokens" not in sent and "temperature" not in sent
    assert sent["max_completion_tokens"] == load_families().lookup("openai", spec.split(":")[1]).max_tokens


def test_plain_models_are_sent_as_before(api: FakeAPI) -> None:
    sent = ask(api, "openai:gpt-4o")
    assert sent["max_tokens"] == 512 and sent["temperature"] == 0.0
    assert set(model(api, "openai:gpt-4o").identity()) == {"backend", "model", "endpoint"}  # cache keys unchanged
    assert "max_tokens" in ask(api, "anthropic:claude-sonnet-4-5") and "thinking" not in api.requests[-1].params


def test_minus_b_options_override_the_family(api: FakeAPI) -> None:
    backend = model(api, "openai:gpt-5", "max_tokens=3000")
    assert backend.identity()["output_bound"] == "3000"
    assert ask(api, "openai:gpt-5", "max_tokens=3000")["max_completion_tokens"] == 3000
    # Forced back to the plain fields, gpt-5 refuses them as the vendor does, naming the fix.
    error = fails(model(api, "openai:gpt-5", "max_tokens_field=max_tokens"), Request("q", "Which?", params=RUN_BOUND))
    assert isinstance(error, errors.BadRequest) and "-B max_tokens_field=max_completion_tokens" in str(error)


def test_answer_changing_settings_join_the_identity(api: FakeAPI) -> None:
    plain = model(api, "openai:gpt-5").identity()
    assert plain["temperature"] == "omitted" and plain["output_bound"] == "at least 25000"
    assert model(api, "openai:gpt-5", "reasoning_effort=high").identity()["reasoning_effort"] == "high"
    assert model(api, "openai:gpt-5", "max_tokens=900").identity() != plain


# ---------------------------------------------------------------------- unknown models


def test_an_unknown_model_gets_one_line_naming_each_option_it_needs(api: FakeAPI) -> None:
    request = Request("q", "Which?", params=RUN_BOUND)
    first = fails(model(api, "openai:o9-preview"), request)  # no pattern knows it; the vendor refuses
    assert "-B max_tokens_field=max_completion_tokens" in str(first) and "\n" not in str(first)
    second = fails(model(api, "openai:o9-preview", "max_tokens_field=max_completion_tokens"), request)
    assert "-B temperature=omit" in str(second) and "\n" not in str(second)
    fixed = ("max_tokens_field=max_completion_tokens", "temperature=omit")
    starved = generate(model(api, "openai:o9-preview", *fixed), request)
    assert (starved.text, starved.finish_reason) == ("", "length")  # 512 tokens: all spent reasoning
    answered = generate(model(api, "openai:o9-preview", *fixed, "max_tokens=4000"), request)
    assert answered.text == "B" and answered.usage is not None and answered.usage.reasoning_tokens == 600


def test_a_model_forced_to_send_temperature_is_told_to_omit_it(api: FakeAPI) -> None:
    error = fails(model(api, "anthropic:claude-opus-4-7", "temperature=send"), Request("q", "?", params=RUN_BOUND))
    assert "-B temperature=omit" in str(error)


def test_a_user_table_teaches_an_unknown_model(tmp_path: Path, api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "families.json"
    rules = {"output_field": "max_completion_tokens", "temperature": "omit", "max_tokens": 8000}
    mine.write_text(json.dumps({"families": {"openai:o9*": rules}}))
    monkeypatch.setenv(FAMILIES_ENV, "")  # restored after the test: --model-families sets it for the process
    use_model_families(mine)
    sent = ask(api, "openai:o9-preview")
    assert "temperature" not in sent and sent["max_completion_tokens"] == 8000


# ---------------------------------------------------------------------- thinking controls


def test_an_open_model_s_thinking_switch_is_sent_as_chat_template_kwargs(api: FakeAPI) -> None:
    qwen = "openai:Qwen/Qwen3-VL-8B-Thinking"
    sent = ask(api, qwen, "enable_thinking=false")
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    assert model(api, qwen, "enable_thinking=false").identity()["enable_thinking"] == "false"
    error = fails(model(api, "openai:gpt-4o", "enable_thinking=false"), Request("q", "?", params=RUN_BOUND))
    assert "drop -B enable_thinking" in str(error)  # OpenAI's own API has no such field


def test_claude_s_thinking_budget_raises_the_bound_and_drops_the_temperature(api: FakeAPI) -> None:
    sent = ask(api, "anthropic:claude-sonnet-4-5", "thinking_budget=4096")
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert sent["max_tokens"] == 4096 + RUN_BOUND.max_tokens and "temperature" not in sent
    adaptive = ask(api, "anthropic:claude-opus-4-7", "thinking=adaptive", "reasoning_effort=xhigh")
    assert adaptive["thinking"] == {"type": "adaptive"} and adaptive["output_config"] == {"effort": "xhigh"}


@pytest.mark.parametrize(
    ("spec", "options", "said"),
    [
        ("anthropic:claude-sonnet-4-5", ["thinking_budget=2048", "max_tokens=2048"], "must be below max_tokens=2048"),
        ("anthropic:claude-sonnet-4-5", ["thinking_budget=512"], "at least 1024"),
        ("anthropic:claude-opus-4-7", ["thinking_budget=2048"], "use -B thinking=adaptive"),
        ("anthropic:claude-sonnet-4-5", ["thinking=adaptive"], "use -B thinking_budget=N"),
        ("anthropic:claude-opus-4-7", ["thinking=off"], "cannot have thinking disabled"),
        ("anthropic:claude-haiku-4-5", ["reasoning_effort=low"], "takes no reasoning_effort"),
        ("openai:gpt-5.1", ["reasoning_effort=minimal"], "not one it takes (none, low, medium, high)"),
        ("openai:gpt-4o", ["reasoning_effort=high"], "takes no reasoning_effort"),
    ],
)
def test_a_setting_the_model_cannot_take_fails_before_anything_is_sent(
    api: FakeAPI, spec: str, options: list[str], said: str
) -> None:
    with pytest.raises(errors.ConfigError, match=re.escape(said)):
        model(api, spec, *options)
    assert api.requests == []

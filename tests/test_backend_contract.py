"""The backend contract (gmai_client.backend): what is required, the optional abilities' defaults,
backends of the earlier duck-typed protocol, and every built-in backend held to it."""

from __future__ import annotations

import asyncio
import importlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

import gmai_client
from gmai_client.backend import DEFAULT_IMAGE_TOKENS, Backend, as_backend
from gmai_client.backends import registry
from gmai_client.config import RunConfig, parse_model_spec
from gmai_client.errors import ConfigError, MissingExtra
from gmai_client.options import BackendOptions, option, option_fields
from gmai_client.results.records import read_records
from gmai_client.types import Image, Request, Response


@dataclass(frozen=True)
class EchoOptions(BackendOptions):
    prefix: str = option("", "text put before every answer")


class Echo(Backend):
    """Answers the request's first option letter."""

    name = "echo"
    Options = EchoOptions

    def __init__(self, spec: Any, options: EchoOptions, *, seed: int = 0):
        self.model, self.options, self.seed = spec.target, options, seed

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "model": self.model, "endpoint": "http://echo:1"}

    async def generate(self, request: Request) -> Response:
        return Response(self.options.prefix + request.options[0][0])


def png(width: int, height: int) -> Image:
    out = io.BytesIO()
    PILImage.new("RGB", (width, height), "white").save(out, format="PNG")
    return Image(out.getvalue())


def test_identity_and_generate_are_required() -> None:
    class Half(Backend):
        name = "half"

        def identity(self) -> dict[str, str]:
            return {}

    with pytest.raises(TypeError, match="generate"):
        Half()  # type: ignore[abstract]


def test_the_default_from_spec_parses_the_options_and_passes_the_clients_own_over() -> None:
    backend = Echo.from_spec(parse_model_spec("echo:m", ["prefix=>", "rpm=60"]), seed=4)
    assert isinstance(backend, Echo) and backend.options == EchoOptions(prefix=">") and backend.seed == 4
    with pytest.raises(ConfigError, match="echo:m: unknown option -B prefx; did you mean prefix\\?"):
        Echo.from_spec(parse_model_spec("echo:m", ["prefx=>"]))


def test_the_optional_abilities_default_to_doing_nothing_special() -> None:
    backend = Echo.from_spec(parse_model_spec("echo:m"))
    asyncio.run(backend.start())
    asyncio.run(backend.close())
    assert backend.cacheable() is True
    assert backend.limit_scope() == ("echo", "http://echo:1", "")  # no key variable
    assert backend.placement() == []
    request = Request("1", "x" * 400, (png(8, 8), png(8, 8)), system="Be brief.")
    assert backend.estimate_input_tokens(request) == (400 // 4 + 1) + (9 // 4 + 1) + 2 * DEFAULT_IMAGE_TOKENS
    assert Echo.answer_neutral_options == frozenset()


class OldStyle:
    """A backend written to the earlier protocol: no base class, abilities as attributes."""

    name = "old"
    cacheable = False
    api_key_env = "OLD_KEY"

    def __init__(self) -> None:
        self.calls = 0

    def identity(self) -> dict[str, str]:
        return {"backend": "old", "model": "m", "endpoint": "http://old:2"}

    async def generate(self, request: Request) -> Response:
        self.calls += 1
        return Response("A")

    def placement(self) -> list[dict[str, Any]]:
        return [{"endpoint": "http://old:2", "sent": self.calls}]


def test_a_duck_typed_backend_is_wrapped_into_the_whole_contract() -> None:
    old = OldStyle()
    backend = as_backend(old)
    assert isinstance(backend, Backend) and backend.name == "old"
    assert backend.cacheable() is False and backend.limit_scope() == ("old", "http://old:2", "OLD_KEY")
    asyncio.run(backend.start())  # it has none: nothing to do
    assert asyncio.run(backend.generate(Request("1", "?"))).text == "A"
    assert backend.placement() == [{"endpoint": "http://old:2", "sent": 1}]
    assert backend.calls == 1  # anything else is the object's own
    assert as_backend(backend) is backend and as_backend(Echo.from_spec(parse_model_spec("echo:m"))).name == "echo"
    with pytest.raises(ConfigError, match="str is not a backend: it has no identity or generate method"):
        as_backend("openai:gpt-4o")


def test_a_duck_typed_backend_runs_through_the_runner(tmp_path: Path, small_tsv: Path) -> None:
    old = OldStyle()
    config = RunConfig.build(["old"], data=str(small_tsv), out=str(tmp_path), progress=False, cache=False, limit=5)
    result = asyncio.run(gmai_client.run(config, backends={"old": old}))
    assert old.calls == 5
    assert [r.prediction for r in read_records(result.run_dir / "records.jsonl")] == ["A"] * 5


@pytest.mark.parametrize("name", sorted(registry.builtin_targets()))
def test_every_built_in_backend_holds_to_the_contract(name: str) -> None:
    module_name, _, class_name = registry.builtin_targets()[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except MissingExtra as exc:
        pytest.skip(str(exc))
    assert issubclass(cls, Backend) and cls.name == name == module_name.rsplit(".", 1)[1]
    assert cls.__doc__, "the first line is what `python -m gmai_client backends` shows"
    for field in option_fields(cls.Options):
        assert field.help, f"{name}: option {field.name} has no help text"


def test_api_backends_estimate_images_by_their_providers_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openai")
    pytest.importorskip("anthropic")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")

    def tokens(spec: str, *options: str) -> int:
        request = Request("1", "", (png(1024, 1024),))  # no text: the image alone
        return registry.create(parse_model_spec(spec, list(options))).estimate_input_tokens(request)

    assert tokens("openai:gpt-4o") == 765  # OpenAI's worked example: 4 tiles of 170 + 85
    assert tokens("openai:gpt-4o", "detail=low") == 85
    assert tokens("openai:gpt-4o", "max_image_side=512") == 255  # sent as 512 px: one tile
    assert tokens("openai:gpt-4o-mini") == 2833 + 4 * 5667
    assert tokens("anthropic:claude-x") == 1399  # ceil(1024 * 1024 / 750 = 1398.1)
    unreadable = Request("1", "", (Image(b"not an image"),))
    assert registry.create(parse_model_spec("anthropic:c")).estimate_input_tokens(unreadable) == DEFAULT_IMAGE_TOKENS


def test_api_backends_share_a_rate_limit_budget_by_the_keys_variable_never_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("openai")
    monkeypatch.setenv("GATEWAY_KEY", "sk-test-never-in-a-scope")
    backend = registry.create(parse_model_spec("openai:m@http://gw:8000/v1", ["api_key_env=GATEWAY_KEY"]))
    assert backend.limit_scope() == ("openai", "http://gw:8000/v1", "GATEWAY_KEY")

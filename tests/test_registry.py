"""The registry: built-ins found by reading backends/*.py, plugins by entry point (never under a
built-in's name), options checked and listed, and which options leave a run folder's identity."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from gmai_client.backend import Backend
from gmai_client.backends import registry
from gmai_client.cli import main
from gmai_client.config import parse_model_spec
from gmai_client.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> list[EntryPoint]:
    """The entry points the registry sees: whatever the test puts in this list."""
    points: list[EntryPoint] = []
    monkeypatch.setattr(registry, "entry_points", lambda group: [p for p in points if p.group == group])
    registry.answer_neutral_options.cache_clear()
    yield points
    registry.answer_neutral_options.cache_clear()


def plugin(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP)


def test_the_built_ins_are_found_by_reading_their_modules() -> None:
    targets = registry.builtin_targets()
    assert set(targets) == {
        "anthropic", "azure", "bedrock", "gemini", "openai", "random", "replay", "scripted", "torch", "triton",
        "vertex",
    }  # fmt: skip
    assert targets["openai"] == "gmai_client.backends.openai:OpenAIBackend"
    # Helpers (_api, token_rules) and the Ray executor (its class is named "torch") are not backends.


def test_adding_a_backend_is_adding_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins) -> None:
    package = tmp_path / "more_backends"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_shared.py").write_text("name = 'shared'\n")
    (package / "other.py").write_text("class Misnamed:\n    name = 'something_else'\n")
    (package / "constant.py").write_text(
        textwrap.dedent(
            '''
            from dataclasses import dataclass

            from gmai_client import Backend, BackendOptions, Response, option


            @dataclass(frozen=True)
            class ConstantOptions(BackendOptions):
                letter: str = option("A", "the letter it always answers")


            class ConstantBackend(Backend):
                """Always the same letter."""

                name = "constant"
                Options = ConstantOptions

                def __init__(self, spec, options, *, seed=0):
                    self.letter = options.letter

                def identity(self):
                    return {"backend": self.name, "model": self.letter, "endpoint": ""}

                async def generate(self, request):
                    return Response(self.letter)
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "BUILTIN_PACKAGE", "more_backends")
    registry.builtin_targets.cache_clear()
    try:
        assert dict(registry.builtin_targets()) == {"constant": "more_backends.constant:ConstantBackend"}
        backend = registry.create(parse_model_spec("constant", ["letter=C"]))
        assert isinstance(backend, Backend) and backend.identity()["model"] == "C"
        [info] = registry.describe()
        assert info.options == {"letter": "the letter it always answers; default: A"}
    finally:
        registry.builtin_targets.cache_clear()
        sys.modules.pop("more_backends.constant", None)


def test_a_plugin_with_a_built_ins_name_is_an_error_naming_both(plugins: list[EntryPoint]) -> None:
    plugins.append(plugin("openai", "my_package.fast:FastOpenAI"))
    for attempt in (lambda: registry.create(parse_model_spec("random")), registry.describe):
        with pytest.raises(ConfigError) as caught:
            attempt()
        message = str(caught.value)
        assert "my_package.fast:FastOpenAI" in message and "gmai_client.backends.openai:OpenAIBackend" in message
        assert "rename the plugin's entry point" in message


def test_a_plugin_is_built_checked_and_listed_like_a_built_in(
    plugins: list[EntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("httpx")
    monkeypatch.syspath_prepend(str(EXAMPLES))  # examples/custom_backend.py, as a package would ship it
    plugins.append(plugin("inhouse", "custom_backend:InHouseBackend"))

    backend = registry.create(parse_model_spec("inhouse:radiology@http://models:9000/", ["timeout=5", "rpm=30"]))
    assert type(backend).__name__ == "InHouseBackend"
    assert backend.identity() == {"backend": "inhouse", "model": "radiology", "endpoint": "http://models:9000"}
    with pytest.raises(ConfigError, match="unknown option -B timout; did you mean timeout\\?"):
        registry.create(parse_model_spec("inhouse:radiology@http://models:9000", ["timout=5"]))
    with pytest.raises(ConfigError, match="option timeout must be a positive finite number, got 'nan'"):
        registry.create(parse_model_spec("inhouse:radiology@http://models:9000", ["timeout=nan"]))
    info = next(i for i in registry.describe() if i.name == "inhouse")
    assert info.available and info.options == {"timeout": "seconds to wait for one answer; number > 0; default: 60"}
    assert "timeout" in registry.answer_neutral_options("inhouse")


class EarlierPlugin:
    """A plugin written to the earlier protocol: ``from_spec`` and an ``OPTIONS`` mapping."""

    name = "earlier"
    OPTIONS = {"level": "how hard to think"}  # noqa: RUF012 - the earlier protocol's spelling
    ANSWER_NEUTRAL_OPTIONS = ("level",)

    @classmethod
    def from_spec(cls, spec: Any, *, seed: int = 0) -> EarlierPlugin:
        return cls()

    def identity(self) -> dict[str, str]:
        return {"backend": "earlier", "model": "m", "endpoint": ""}

    async def generate(self, request: Any) -> Any:
        raise NotImplementedError


def test_a_plugin_of_the_earlier_protocol_still_works(plugins: list[EntryPoint]) -> None:
    plugins.append(plugin("earlier", f"{__name__}:EarlierPlugin"))
    backend = registry.create(parse_model_spec("earlier", ["level=3"]))
    assert isinstance(backend, Backend) and isinstance(backend.inner, EarlierPlugin)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="unknown option -B levl; did you mean level\\?"):
        registry.create(parse_model_spec("earlier", ["levl=3"]))
    assert registry.answer_neutral_options("earlier") == {"label", "rpm", "tpm", "price_in", "price_out", "level"}


def test_an_unknown_backend_names_the_closest(plugins: list[EntryPoint]) -> None:
    with pytest.raises(ConfigError, match=r"unknown backend 'opnai'.*did you mean openai\?"):
        registry.create(parse_model_spec("opnai:gpt-4o"))


def test_answer_neutral_options_come_from_the_option_dataclasses(plugins: list[EntryPoint]) -> None:
    every = {"label", "rpm", "tpm", "price_in", "price_out"}
    assert registry.answer_neutral_options("random") == every
    assert registry.answer_neutral_options("scripted") == every | {"latency"}
    if importlib.util.find_spec("openai") is not None:
        batch = {"batch", "batch_size", "batch_mb", "batch_queue", "batch_poll"}  # how, never what, is asked
        account = {"timeout", "api_key_env", "organization_env"}
        assert registry.answer_neutral_options("openai") == every | batch | account


def test_torch_models_leave_rays_placement_options_out_of_the_identity(plugins: list[EntryPoint]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("ray")
    neutral = registry.answer_neutral_options("torch")
    assert {"max_batch_size", "max_wait_ms", "actors", "gpus_per_actor", "max_restarts"} <= neutral
    assert not {"dtype", "device", "max_new_tokens", "image_max_side"} & neutral  # these change answers


def test_the_backends_command_lists_every_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    for name in registry.builtin_targets():
        assert name in out
    assert "rpm" in out and "max_image_side" in out


def test_the_backends_command_learns_what_is_installed_without_importing_torch(tmp_path: Path) -> None:
    # Importing torch and transformers took 22-30 s of every `backends`; finding them is enough.
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("torch's extra is not installed: the listing has nothing to find")
    script = (
        "import sys\n"
        "from gmai_client.cli import main\n"
        "code = main(['backends'])\n"
        "print('IMPORTED:', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "IMPORTED: []" in done.stdout
    torch_row = next(line for line in done.stdout.splitlines() if line.strip("│ ").startswith("torch "))
    assert "yes" in torch_row  # found installed, and its options still listed
    assert "max_batch_size" in done.stdout


class NeedsAbsentPackage(Backend):
    """A backend whose heavy package is imported only when a model is built."""

    name = "needy"
    requires = {"gmai_no_such_package": "needy"}  # noqa: RUF012 - a class attribute of the contract

    def identity(self) -> dict[str, str]:
        return {"backend": self.name, "model": "", "endpoint": ""}

    async def generate(self, request: Any) -> Any:
        raise AssertionError("never built here")


def test_a_backend_whose_package_is_missing_is_listed_with_the_extra_to_install(plugins: list[EntryPoint]) -> None:
    plugins.append(plugin("needy", f"{__name__}:NeedsAbsentPackage"))
    info = next(i for i in registry.describe() if i.name == "needy")
    assert not info.available
    assert "gmai_no_such_package" in info.problem and "pip install 'gmai-client[needy]'" in info.problem


def test_the_backends_command_shows_the_install_hint_with_its_brackets(
    plugins: list[EntryPoint], capsys: pytest.CaptureFixture[str]
) -> None:
    # "[needy]" is console markup to rich: printed unescaped, the hint read "pip install 'gmai-client'".
    plugins.append(plugin("needy", f"{__name__}:NeedsAbsentPackage"))
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = next(n for n, line in enumerate(lines) if line.startswith("│ needy "))
    row = [lines[first], *itertools.takewhile(lambda line: line.startswith("│  "), lines[first + 1 :])]
    installed = " ".join(line.split("│")[2].strip() for line in row)  # the column's wrapped lines
    assert "pip install 'gmai-client[needy]'" in installed

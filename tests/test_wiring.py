"""Wiring: a config turned into ready objects before anything is sent, and everything closed after."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path

import pytest

from gmai_client.backends import registry
from gmai_client.backends.random import RandomBackend
from gmai_client.backends.scripted import ScriptedBackend
from gmai_client.config import ModelSpec, RunConfig, parse_model_spec
from gmai_client.errors import ConfigError
from gmai_client.policy.dispatch import Dispatcher
from gmai_client.protocol.prompt import MULTI_ANSWER_SUFFIX
from gmai_client.runner.wiring import wire
from gmai_client.testing.synthetic import write_tsv
from gmai_client.types import Item

ROOT = Path(__file__).resolve().parents[1]


class Closing(ScriptedBackend):
    """A scripted backend that remembers being closed."""

    closed = False

    async def close(self) -> None:
        self.closed = True


def config(tmp_path: Path, data: Path, models=("scripted:x",), **kwargs) -> RunConfig:
    return RunConfig.build(list(models), data=[str(data)], out=tmp_path / "runs", progress=False, **kwargs)


def test_wiring_readies_the_run_folder_and_closes_everything_after(tmp_path: Path, small_tsv: Path) -> None:
    backend = Closing(lambda request: "A")
    cfg = config(tmp_path, small_tsv, run_name="r", limit=7)

    async def scenario() -> None:
        async with wire(cfg, backends={"scripted:x": backend}) as wired:
            saved = json.loads((wired.run_dir / "config.json").read_text())
            assert saved["config"]["data"]["limit"] == 7 and saved["identity"]["models"]["scripted:x"]
            assert wired.items.count() == 7 and len(list(wired.items.entries())) == 7
            [plan] = wired.models
            assert plan.spec.label == "x" and plan.backend is backend
            assert isinstance(plan.dispatcher(None), Dispatcher)
            assert wired.judge is None and wired.previous == ()
            # The folder is locked while the run holds it.
            with pytest.raises(ConfigError, match="in use by another gmai_client process"):
                async with wire(cfg, backends={"scripted:x": Closing(lambda request: "A")}):
                    pass
            assert not backend.closed

    asyncio.run(scenario())
    assert backend.closed

    async def again() -> None:  # the lock was let go
        async with wire(cfg, backends={"scripted:x": Closing(lambda request: "A")}):
            pass

    asyncio.run(again())


def test_a_bad_rate_option_fails_before_any_folder_is_made(tmp_path: Path, small_tsv: Path) -> None:
    cfg = config(tmp_path, small_tsv, models=[parse_model_spec("random", ["rpm=fast"])])

    async def scenario() -> None:
        async with wire(cfg):
            pass

    with pytest.raises(ConfigError, match="rpm"):
        asyncio.run(scenario())
    assert not (tmp_path / "runs").exists()


def test_the_request_carries_the_multi_answer_instruction_only_when_asked(tmp_path: Path) -> None:
    data = write_tsv(tmp_path / "multi.tsv", 40, seed=2, image_size=16, multi_answer_fraction=0.5)

    async def requests(**kwargs) -> dict[bool, list[str]]:
        async with wire(config(tmp_path, data, models=("random",), **kwargs)) as wired:
            texts: dict[bool, list[str]] = {True: [], False: []}
            for entry in wired.items.entries():
                assert isinstance(entry, Item)
                texts[entry.is_multi_answer].append(wired.ask(entry).text)
            return texts

    plain = asyncio.run(requests(run_name="plain"))
    paper = asyncio.run(requests(run_name="paper", multi_answer_instruction=True))
    assert plain[True] and plain[False]  # the file has both kinds of item
    assert not any(MULTI_ANSWER_SUFFIX in text for text in plain[True] + plain[False])
    assert all(MULTI_ANSWER_SUFFIX in text for text in paper[True])
    assert paper[False] == plain[False]  # single-answer items are asked as before


class PlacedRandom(RandomBackend):
    """Stands in for a backend served by another executor: remembers where it was sent."""

    address: str | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, seed: int = 0, address: str | None = None) -> PlacedRandom:
        backend = cls(seed=seed)
        backend.address = address
        return backend


def test_the_executor_is_looked_up_by_name(tmp_path: Path, small_tsv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.EXECUTORS, "ray", {"random": f"{__name__}:PlacedRandom"})

    async def backends(**kwargs) -> list:
        async with wire(config(tmp_path, small_tsv, models=("random",), **kwargs)) as wired:
            return [plan.backend for plan in wired.models]

    [placed] = asyncio.run(backends(executor="ray", ray_address="10.0.0.1:6379", run_name="ray"))
    assert isinstance(placed, PlacedRandom) and placed.address == "10.0.0.1:6379"
    [local] = asyncio.run(backends(run_name="local"))
    assert type(local) is RandomBackend


def test_the_loop_and_the_wiring_name_no_backend() -> None:
    from gmai_client.backends import registry

    backend_modules = {target.split(":")[0] for target in registry.builtin_targets().values()}
    for name in ("runner/loop", "runner/asking", "runner/wiring", "api"):
        tree = ast.parse((ROOT / "gmai_client" / f"{name}.py").read_text(encoding="utf-8"))
        imported = [
            f"{node.module}.{alias.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        ] + [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        # The registry (backends' part, looked up by name) is fine; a specific backend's module is not.
        named = [module for module in imported if {module, module.rsplit(".", 1)[0]} & backend_modules]
        assert not named, name

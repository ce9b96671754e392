"""The Ray executor (``--executor ray``) on a real local Ray instance with 2 CPUs and a tiny random
Llava built offline: the same records as the local executor, both actors used, actors dying
mid-run (restarted by Ray, or replaced) without losing or duplicating an item, clear errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'gmai-client[ray]')")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from gmai_client import cli  # noqa: E402
from gmai_client.api import run  # noqa: E402
from gmai_client.backends import ray as ray_backend  # noqa: E402
from gmai_client.backends.ray import RayTorchBackend  # noqa: E402
from gmai_client.backends.torch import TorchBackend  # noqa: E402
from gmai_client.config import RunConfig, parse_model_spec  # noqa: E402
from gmai_client.errors import ConfigError, ConnectionLost, ModelNotFound  # noqa: E402
from gmai_client.results.records import RECORDS_FILE  # noqa: E402
from gmai_client.testing.ray_hooks import CrashingActor  # noqa: E402
from gmai_client.testing.tiny_models import build_tiny_llava  # noqa: E402
from gmai_client.types import Response, SamplingParams  # noqa: E402

ITEMS = 20
MAX_TOKENS = 8


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray instance (2 CPUs, loopback only) for the whole session."""
    if ray.is_initialized():  # someone else's instance: use it, leave it running
        yield
        return
    ray_backend.acquire_ray(None, num_cpus=2)
    try:
        yield
    finally:
        ray_backend.release_ray()


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)  # the local executor's runs share the 2 cores with the actors
    return build_tiny_llava(tmp_path_factory.mktemp("ray_models") / "llava")


def spec_text(model: Path) -> str:
    return f"torch:{model}"


def raw_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every line of records.jsonl (read_records keeps only the last per index: duplicates hide)."""
    lines = (run_dir / RECORDS_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def only_run_dir(out: Path) -> Path:
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def reporting_close(reports: list[dict[str, Any]]):
    """A RayTorchBackend.close that first saves what the backend and its actors report."""
    original = RayTorchBackend.close

    async def close(self: RayTorchBackend) -> None:
        reports.append({"summary": self.placement(), "actors": await self.actor_info(), "identity": self.identity()})
        await original(self)

    return close


@pytest.fixture
def closing_reports(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each RayTorchBackend the runner built reported just before the runner closed it."""
    reports: list[dict[str, Any]] = []
    monkeypatch.setattr(RayTorchBackend, "close", reporting_close(reports))
    return reports


@pytest.fixture(scope="module")
def both_runs(ray_cluster: None, llava: Path, small_tsv: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same 20 items through the CLI with the local executor, then with the Ray executor."""
    out = tmp_path_factory.mktemp("ray_runs")
    reports: list[dict[str, Any]] = []
    common = ["run", "--model", spec_text(llava), "--data", str(small_tsv), "--limit", str(ITEMS)]
    common += ["--max-tokens", str(MAX_TOKENS), "--no-cache", "--no-progress", "--concurrency", "8"]
    assert cli.main([*common, "--out", str(out / "local")]) == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RayTorchBackend, "close", reporting_close(reports))
        assert cli.main([*common, "-B", "actors=2", "--executor", "ray", "--out", str(out / "ray")]) == 0
    [report] = reports
    return only_run_dir(out / "local"), only_run_dir(out / "ray"), report


def test_ray_records_equal_local_records(both_runs, llava: Path) -> None:
    local_dir, ray_dir, report = both_runs
    local, remote = raw_records(local_dir), raw_records(ray_dir)
    assert len(local) == len(remote) == ITEMS
    assert all(r["status"] != "error" for r in remote), [r["error"] for r in remote]
    by_index = {r["index"]: r for r in local}
    for record in remote:
        twin = by_index[record["index"]]
        assert (record["prediction"], record["letters"], record["status"]) == (
            twin["prediction"],
            twin["letters"],
            twin["status"],
        ), record["index"]
        assert (record["input_tokens"], record["output_tokens"]) == (twin["input_tokens"], twin["output_tokens"])
    # The cache key does not depend on the executor.
    assert report["identity"] == dict(TorchBackend.from_spec(parse_model_spec(spec_text(llava))).identity())


def test_both_actors_received_work(both_runs) -> None:
    _, _, report = both_runs
    actors = report["actors"]
    assert len(actors) == 2
    assert len({a["pid"] for a in actors}) == 2  # two processes, one model each
    assert all(a["served"] > 0 for a in actors), actors
    assert sum(a["served"] for a in actors) == ITEMS
    assert all(a["torch_threads"] == 1 and a["node"] == "127.0.0.1" for a in actors)
    assert [s["sent"] for s in report["summary"]] == [a["served"] for a in actors]
    assert any(max(a["batch_sizes"]) > 1 for a in actors), "requests to one actor are micro-batched"
    ray_dir = both_runs[1]
    [figures] = json.loads((ray_dir / "metrics.json").read_text())["run"]["models"].values()
    assert [p["sent"] for p in figures["placement"]] == [a["served"] for a in actors]  # in metrics.json too


def test_an_actor_dying_mid_run_loses_no_item(
    ray_cluster: None, llava: Path, small_tsv: Path, tmp_path: Path, closing_reports: list[dict[str, Any]]
) -> None:
    # Actor 0 exits (os._exit) when its 3rd request arrives: the requests it held are lost.
    spec = parse_model_spec(spec_text(llava), ["actors=2"])
    config = RunConfig.build(
        [spec],
        data=[str(small_tsv)],
        out=tmp_path / "runs",
        limit=ITEMS,
        concurrency=8,
        params=SamplingParams(max_tokens=MAX_TOKENS),
        progress=False,
        cache=False,
        executor="ray",
    )
    crashing = RayTorchBackend(spec, first_actor=CrashingActor)
    result = asyncio.run(run(config, backends={spec.label: crashing}))
    records = raw_records(result.run_dir)
    indices = [r["index"] for r in records]
    assert len(indices) == len(set(indices)) == ITEMS  # every item exactly once
    assert all(r["status"] != "error" for r in records), [r["error"] for r in records]
    assert any("connection" in r["retries"] for r in records), "the lost requests were sent again"
    [report] = closing_reports
    crashed = report["summary"][0]
    assert crashed["lost"] >= 1 and crashed["state"] in ("recovering", "ready"), report["summary"]


def requests(n: int, small_tsv: Path):
    from gmai_client.data.dataset import iter_items, open_dataset
    from gmai_client.protocol.prompt import build_request
    from gmai_client.types import Item

    items = [e for e in iter_items(open_dataset([small_tsv])) if isinstance(e, Item)][:n]
    return [build_request(item, params=SamplingParams(max_tokens=MAX_TOKENS)) for item in items]


async def burst(backend: RayTorchBackend, small_tsv: Path) -> list[Any]:
    return await asyncio.gather(*(backend.generate(r) for r in requests(8, small_tsv)), return_exceptions=True)


async def until_ready(backend: RayTorchBackend, slot: int) -> None:
    for _ in range(600):  # Ray restarts it, or a new actor replaces it; the model loads again
        if backend.slots[slot].state == "ready":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"actor {slot} did not come back: {backend.placement()}")


def test_a_dead_actor_is_restarted_by_ray_then_replaced_when_it_cannot_be(
    ray_cluster: None, llava: Path, small_tsv: Path
) -> None:
    # One restart allowed: the first death (os._exit mid-request) is a Ray restart; the second
    # (killed for good, as when a node is lost) needs a new actor in its place.
    spec = parse_model_spec(spec_text(llava), ["actors=2", "max_restarts=1"])
    backend = RayTorchBackend(spec, first_actor=CrashingActor)

    async def scenario() -> list[list[dict[str, Any]]]:
        await backend.start()
        reports = []
        try:
            first = await burst(backend, small_tsv)
            assert any(isinstance(o, ConnectionLost) for o in first), first
            assert all(isinstance(o, (Response, ConnectionLost)) for o in first), first
            await until_ready(backend, 0)
            assert all(isinstance(o, Response) for o in await burst(backend, small_tsv))
            reports.append(await backend.actor_info())

            ray.kill(backend.slots[0].handle, no_restart=True)
            second = await burst(backend, small_tsv)
            assert any(isinstance(o, ConnectionLost) for o in second), second
            await until_ready(backend, 0)
            assert all(isinstance(o, Response) for o in await burst(backend, small_tsv))
            reports.append(await backend.actor_info())
        finally:
            await backend.close()
        return reports

    restarted, replaced = asyncio.run(scenario())
    summary = backend.placement()
    assert (summary[0]["restarts"], summary[0]["replacements"]) == (1, 1), summary
    assert summary[1]["lost"] == 0 and summary[1]["restarts"] == summary[1]["replacements"] == 0
    assert restarted[0]["restarted"] and restarted[0]["served"] > 0, restarted
    assert not replaced[0]["restarted"] and replaced[0]["served"] > 0, replaced  # a new actor
    assert replaced[0]["pid"] != restarted[0]["pid"]
    assert replaced[1]["pid"] == restarted[1]["pid"] and not replaced[1]["restarted"]  # untouched


def test_a_model_that_cannot_load_is_a_clear_start_error(ray_cluster: None, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    backend = RayTorchBackend.from_spec(parse_model_spec(f"torch:{missing}", ["actors=1"]))
    with pytest.raises(ModelNotFound, match=f"ray actor 0 of torch:{missing}: torch: no model directory at"):
        asyncio.run(backend.start())
    asyncio.run(backend.close())
    assert all(slot.state == "dead" for slot in backend.slots)


def test_more_actors_than_the_cluster_holds_is_a_config_error(ray_cluster: None, llava: Path) -> None:
    backend = RayTorchBackend.from_spec(parse_model_spec(spec_text(llava), ["actors=5"]))
    with pytest.raises(ConfigError, match=r"5 actors x 1 CPU need 5 CPUs; the cluster has 2"):
        asyncio.run(backend.start())
    asyncio.run(backend.close())


def test_executor_options_are_validated(llava: Path) -> None:
    with pytest.raises(ConfigError, match="executor must be local or ray"):
        RunConfig.build(["random"], executor="dask")
    with pytest.raises(ConfigError, match="actors must be an integer at least 1"):
        RayTorchBackend.from_spec(parse_model_spec(spec_text(llava), ["actors=0"]))
    with pytest.raises(ConfigError, match="serves torch models only"):
        RayTorchBackend(parse_model_spec("random"))
    # Ray options stay on the driver: the actors' torch backend gets only its own options.
    backend = RayTorchBackend.from_spec(parse_model_spec(spec_text(llava), ["actors=2", "max_batch_size=4", "rpm=60"]))
    assert dict(backend.spec.options) == {"max_batch_size": "4"}

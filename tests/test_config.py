"""RunConfig: five sections, flat names for scripts and config.json, every default written once."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from gmai_client.config import (
    DEFAULT_ITEM_DEADLINE_S,
    DEFAULT_MAX_ATTEMPTS,
    FLAT_NAMES,
    POLICY_FIELDS,
    SECTIONS,
    PolicySection,
    RunConfig,
    flatten,
    parse_model_spec,
    run_default,
)
from gmai_client.errors import ConfigError
from gmai_client.policy.retry import RetryPolicy
from gmai_client.types import SamplingParams


def test_flat_keywords_land_in_their_sections() -> None:
    config = RunConfig.build(
        ["openai:gpt-4o", "random"],
        data="GMAI-MMBench_VAL",
        select=["department=Ophthalmology"],
        limit=5,
        rpm=500,
        tpm=300_000,
        out="results",
        executor="ray",
        seed=3,
        judge="openai:gpt-4o-mini",
        multi_answer_instruction=True,
    )
    assert [spec.label for spec in config.models] == ["gpt-4o", "random"]
    assert (config.data.files, config.data.select, config.data.limit) == (
        ("GMAI-MMBench_VAL",), ("department=Ophthalmology",), 5,
    )  # fmt: skip
    assert (config.policy.rpm, config.policy.tpm) == (500, 300_000)
    assert config.output.out == Path("results")
    assert (config.execution.executor, config.execution.seed) == ("ray", 3)
    assert config.protocol.judge is not None and config.protocol.judge.target == "gpt-4o-mini"
    assert config.protocol.multi_answer_instruction is True
    # Sampling backends draw with the run's seed unless the parameters say otherwise.
    assert config.protocol.params.seed == 3
    assert RunConfig.build(seed=3, params=SamplingParams(seed=9)).protocol.params.seed == 9


def test_each_flat_name_belongs_to_exactly_one_section_field() -> None:
    every_field = {(section, f.name) for section, cls in SECTIONS.items() for f in fields(cls)}
    assert set(FLAT_NAMES.values()) == every_field
    assert FLAT_NAMES["data"] == ("data", "files")


def test_every_default_is_written_once_and_read_everywhere() -> None:
    config = RunConfig()
    for name, value in config.flat().items():
        if name not in ("models", "params"):  # params: its seed is the run's
            assert value == run_default(name), name
    assert run_default("max_attempts") == DEFAULT_MAX_ATTEMPTS == RetryPolicy().max_attempts
    assert run_default("item_deadline") == DEFAULT_ITEM_DEADLINE_S == RetryPolicy().deadline
    assert run_default("multi_answer_instruction") is False


def test_policy_fields_change_no_answer() -> None:
    assert {f.name for f in fields(PolicySection)} <= POLICY_FIELDS
    answer_changing = {"data", "select", "limit", "template", "params", "judge", "multi_answer_instruction", "seed"}
    assert not POLICY_FIELDS & answer_changing


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"concurrency": 0}, "concurrency must be between 1 and"),
        ({"rpm": float("nan")}, "rpm must be a positive finite number"),
        ({"max_errors": -1}, "max-errors must be a positive finite number"),
        ({"max_attempts": 0}, "max-attempts must be at least 1"),
        ({"limit": -1}, "limit must be >= 0"),
        ({"params": SamplingParams(temperature=-1)}, "temperature must be a finite number >= 0"),
        ({"params": SamplingParams(max_tokens=0)}, "max-tokens must be at least 1"),
        ({"executor": "slurm"}, "executor must be local or ray, got 'slurm'"),
        ({"concurency": 4}, "unknown configuration field 'concurency'"),
        ({"models": []}, "no model given"),
    ],
)
def test_a_bad_value_is_refused_naming_the_field(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        RunConfig.from_flat(**values)


def test_two_models_with_one_label_are_refused() -> None:
    with pytest.raises(ConfigError, match="two models share the label 'random'"):
        RunConfig.build(["random", "random"])


def test_updated_changes_only_the_named_fields() -> None:
    base = RunConfig.build(["random"], limit=10, rpm=60, seed=4)
    grown = base.updated(limit=20, concurrency=3)
    assert (grown.data.limit, grown.policy.concurrency, grown.policy.rpm) == (20, 3, 60)
    assert grown.protocol == base.protocol and grown.execution == base.execution and grown.models == base.models
    with pytest.raises(ConfigError, match="unknown configuration field 'limt'"):
        base.updated(limt=3)


def test_config_json_reads_back_written_flat_or_by_sections() -> None:
    config = RunConfig.build(
        [parse_model_spec("random", ["label=baseline", "seed=7"])],
        data=["a.tsv", "b.tsv"],
        select=["task=Counting"],
        limit=9,
        cache_path="/tmp/cache.sqlite",
        judge="random",
        multi_answer_instruction=True,
        params=SamplingParams(temperature=0.5, max_tokens=64),
    )
    sectioned = json.loads(json.dumps(config.as_dict()))  # config.json's form
    flat = json.loads(json.dumps(config.as_dict(flat=True)))  # the form of run folders written before
    assert list(sectioned) == ["models", *SECTIONS]
    assert sectioned["data"]["files"] == ["a.tsv", "b.tsv"] and sectioned["data"]["limit"] == 9
    assert sectioned["policy"]["cache_path"] == "/tmp/cache.sqlite"
    assert sectioned["protocol"]["judge"]["label"] == "random"
    assert flat["limit"] == 9 and flat["data"] == ["a.tsv", "b.tsv"]
    assert flatten(sectioned) == flat and flatten(flat) == flat
    assert RunConfig.from_dict(sectioned) == config
    assert RunConfig.from_dict(flat) == config


def test_a_config_json_written_before_the_sections_still_resumes() -> None:
    # config.json as an earlier version wrote it: flat, without the fields added since.
    old = {
        "models": [{"backend": "random", "target": "", "endpoint": "", "options": {}, "label": "random"}],
        "data": ["sample"], "select": [], "concurrency": 8, "limit": 3, "seed": 0, "out": "runs",
        "run_name": "r", "template": None, "data_dir": None, "retry_errors": False, "progress": True,
        "params": {"temperature": 0.0, "max_tokens": 512, "seed": 0, "repeat": 0}, "cache": True,
        "cache_path": None, "rpm": 6000.0, "tpm": None, "max_attempts": 3, "attempt_timeout": None,
        "item_deadline": 60.0, "max_errors": None, "token_budget": None, "judge": None,
        "executor": "local", "ray_address": None,
    }  # fmt: skip
    config = RunConfig.from_dict(old)
    assert (config.data.limit, config.policy.rpm, config.policy.max_attempts, config.output.run_name) == (
        3, 6000.0, 3, "r",
    )  # fmt: skip
    assert config.protocol.multi_answer_instruction is False


def test_a_secret_option_that_was_not_saved_cannot_come_back() -> None:
    saved = RunConfig.build([parse_model_spec("openai:gpt-4o", ["api_key=sk-abc"])]).as_dict()
    assert saved["models"][0]["options"]["api_key"] == "[REDACTED]"
    with pytest.raises(ConfigError, match="option api_key was not saved"):
        RunConfig.from_dict(saved)


@pytest.mark.parametrize("name", ["..", ".", "../x", "/abs/x", "a/b"])
def test_a_script_cannot_name_a_run_folder_outside_out(name: str) -> None:
    with pytest.raises(ConfigError, match="run name"):
        RunConfig.build(run_name=name)


def test_a_script_cannot_give_an_out_folder_whose_name_is_not_utf8() -> None:
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        RunConfig.build(out="/tmp/runs\udcff")  # the byte 0xff, as Python holds a non-UTF-8 file name

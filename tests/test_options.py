"""The one option parser: ``-B key=value`` text -> a backend's typed options dataclass, and its help."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from gmai_client.errors import ConfigError
from gmai_client.options import (
    POLICY_OPTIONS,
    BackendOptions,
    ModelPolicy,
    model_policy,
    neutral_options,
    option,
    option_fields,
    option_help,
    parse_options,
)


@dataclass(frozen=True)
class Sample(BackendOptions):
    timeout: float = option(60.0, "seconds to wait", above=0, neutral=True)
    replicas: int | None = option(None, "how many", minimum=1, default_text="one per GPU")
    ratio: float = option(0.5, "a plain number")
    verbose: bool = option(False, "say more")
    style: Literal["short", "long"] = option("short", "answer length")
    folder: Path | None = option(None, "where to look")
    tensor: str | None = option(None, "an input name; empty: never send", blank=True, default_text="prompt")
    key_env: str = option("MY_KEY", "variable holding the key", neutral=True)


def parse(**raw: str) -> Sample:
    return parse_options(Sample, raw, owner="inhouse:m", backend="inhouse")


def test_text_is_converted_to_each_fields_type() -> None:
    got = parse(timeout="5", replicas="3", ratio="-2.5", verbose="yes", style="long", folder="/tmp/x", tensor="t")
    assert got == Sample(5.0, 3, -2.5, True, "long", Path("/tmp/x"), "t", "MY_KEY")
    assert parse(verbose="OFF").verbose is False and parse(verbose="1").verbose is True
    assert parse() == Sample()  # nothing given: every default


def test_an_empty_value_means_the_default_unless_the_field_takes_blank() -> None:
    assert parse(timeout="", style="", key_env="") == Sample()
    assert parse(tensor="").tensor == ""  # "never send", distinct from "not given" (None)
    assert parse(key_env="  OTHER ").key_env == "OTHER"  # surrounding blanks dropped, as -B key=value does


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"timeout": "soon"}, "inhouse:m: option timeout='soon' is not a number"),
        ({"replicas": "2.5"}, "option replicas='2.5' is not an integer"),
        ({"timeout": "nan"}, "option timeout must be a positive finite number, got 'nan'"),
        ({"timeout": "inf"}, "option timeout must be a positive finite number, got 'inf'"),
        ({"timeout": "0"}, "option timeout must be a positive finite number, got '0'"),
        ({"ratio": "-inf"}, "option ratio must be a finite number, got '-inf'"),
        ({"replicas": "0"}, "option replicas must be an integer at least 1, got '0'"),
        ({"verbose": "maybe"}, "option verbose must be true or false, got 'maybe'"),
        ({"style": "medium"}, "option style='medium'; choose one of short, long"),
    ],
)
def test_bad_values_name_the_option_and_the_rule(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(**raw)
    assert message in str(caught.value)


def test_an_unknown_key_names_the_closest_valid_ones_never_its_value() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(timout="sk-secret-value")
    message = str(caught.value)
    assert message.startswith("inhouse:m: unknown option -B timout; did you mean timeout?")
    assert "(inhouse takes: folder, key_env, ratio, replicas, style, tensor, timeout, verbose)" in message
    assert "sk-secret-value" not in message
    with pytest.raises(ConfigError, match="unknown option -B colour \\(inhouse takes:"):
        parse(colour="red")


def test_keys_of_someone_else_are_passed_over() -> None:
    raw = {"timeout": "5", "rpm": "not checked here"}
    assert parse_options(Sample, raw, owner="m", also=POLICY_OPTIONS).timeout == 5.0


def test_options_built_in_code_obey_the_same_rules() -> None:
    assert Sample(timeout=1.0).timeout == 1.0
    with pytest.raises(ConfigError, match="option timeout must be a positive finite number, got -1"):
        Sample(timeout=-1.0)
    with pytest.raises(ConfigError, match="option style must be one of short, long"):
        Sample(style="medium")  # type: ignore[arg-type]


def test_help_is_rendered_from_the_fields() -> None:
    help_lines = option_help(Sample)
    assert list(help_lines) == ["timeout", "replicas", "ratio", "verbose", "style", "folder", "tensor", "key_env"]
    assert help_lines["timeout"] == "seconds to wait; number > 0; default: 60"
    assert help_lines["replicas"] == "how many; integer >= 1; default: one per GPU"
    assert help_lines["verbose"] == "say more; true | false; default: false"
    assert help_lines["style"] == "answer length; short | long; default: short"
    assert help_lines["folder"] == "where to look"  # no default to show
    assert neutral_options(Sample) == {"timeout", "key_env"}


def test_a_field_of_an_unsupported_type_is_refused() -> None:
    @dataclass(frozen=True)
    class Odd(BackendOptions):
        pairs: list[int] | None = option(None, "not a -B value")

    with pytest.raises(TypeError, match="option pairs: type"):
        option_fields(Odd)


def test_the_clients_own_options_of_a_model() -> None:
    assert model_policy({"rpm": "60", "tpm": "1e5", "detail": "low"}, owner="gpt") == ModelPolicy(rpm=60.0, tpm=1e5)
    assert model_policy({}, owner="gpt") == ModelPolicy()
    for raw, message in (
        ({"rpm": "nan"}, "gpt: option rpm must be a positive finite number, got 'nan'"),
        ({"tpm": "-5"}, "gpt: option tpm must be a positive finite number, got '-5'"),
        ({"price_in": "cheap"}, "gpt: option price_in='cheap' is not a number"),
        ({"price_out": "-1"}, "gpt: option price_out must be a finite number at least 0, got '-1'"),
    ):
        with pytest.raises(ConfigError) as caught:
            model_policy(raw, owner="gpt")
        assert message in str(caught.value)
    assert set(POLICY_OPTIONS) == {"rpm", "tpm", "price_in", "price_out"}
    assert neutral_options(ModelPolicy) == set(POLICY_OPTIONS)

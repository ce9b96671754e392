"""Self-test of the fake OpenAI/Anthropic server: oracle, records, seeded faults, retry-hint checker.

Talks to it with plain HTTP (httpx), not the vendor SDKs, so that what is tested is the server.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("aiohttp")

from gmai_client.backends._hints import retry_after_seconds
from gmai_client.testing.fake_api import FAULT_KINDS, FakeAPI, Faults, item_key

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNoAAAAggCBd81ytgAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAPI]:
    with FakeAPI() as api:
        yield api


@pytest.fixture
def api(server: FakeAPI) -> Iterator[FakeAPI]:
    server.reset()
    yield server
    server.answers, server.fallback, server.faults, server.latency = {}, "A", Faults(), 0.0
    server.require_key, server.rate_limit, server.rate_window, server.models = None, None, 60.0, None
    server.echo_key = False


@pytest.fixture(scope="module")
def http() -> Iterator[Any]:
    with httpx.Client(timeout=5.0) as client:
        yield client


def openai_body(text: str, images: tuple[bytes, ...] = (), **params: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(i).decode()}}
        for i in images
    ]
    parts.append({"type": "text", "text": text})
    return {"model": "m", "messages": [{"role": "user", "content": parts}], **params}


def anthropic_body(text: str, images: tuple[bytes, ...] = (), **params: Any) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(i).decode()}}
        for i in images
    ]
    blocks.append({"type": "text", "text": text})
    return {"model": "c", "max_tokens": 16, "messages": [{"role": "user", "content": blocks}], **params}


def post_openai(http: Any, api: FakeAPI, body: dict[str, Any], **headers: str) -> Any:
    return http.post(f"{api.base_url_openai}/chat/completions", json=body, headers=headers)


def post_anthropic(http: Any, api: FakeAPI, body: dict[str, Any], **headers: str) -> Any:
    return http.post(f"{api.base_url_anthropic}/v1/messages", json=body, headers=headers)


def test_item_key_covers_text_and_images_in_order() -> None:
    other = PNG + b"\x00"
    key = item_key("q", [PNG, other])
    assert key == item_key("q", [PNG, other])
    assert len({key, item_key("q", [other, PNG]), item_key("q", [PNG]), item_key("q2", [PNG, other])}) == 4


def test_oracle_answers_and_response_bodies(api: FakeAPI, http: Any) -> None:
    api.answers = {item_key("Question 1", [PNG]): "B"}
    reply = post_openai(http, api, openai_body("Question 1", (PNG,), max_tokens=8)).json()
    assert reply["object"] == "chat.completion" and reply["model"] == "m" and reply["id"].startswith("chatcmpl-")
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "B", "refusal": None}
    assert reply["choices"][0]["finish_reason"] == "stop"
    usage = reply["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    unknown = post_anthropic(http, api, anthropic_body("Question 2", (PNG,))).json()
    assert unknown["type"] == "message" and unknown["role"] == "assistant" and unknown["model"] == "c"
    assert unknown["content"] == [{"type": "text", "text": "A"}]  # the fallback
    assert unknown["stop_reason"] == "end_turn" and set(unknown["usage"]) == {"input_tokens", "output_tokens"}

    api.answers = lambda received: f"{received.api}:{len(received.image_sha256)}"
    reply = post_openai(http, api, openai_body("Question 3", (PNG, PNG))).json()
    assert reply["choices"][0]["message"]["content"] == "openai:2"


def test_records_requests_without_credentials(api: FakeAPI, http: Any) -> None:
    post_openai(http, api, openai_body("q", (PNG,), temperature=0.5), Authorization="Bearer sk-test-AAAAAAAAAA")
    post_anthropic(http, api, anthropic_body("q", (PNG,)), **{"x-api-key": "sk-ant-BBBBBBBBBB"})
    post_anthropic(http, api, anthropic_body("q", (PNG,), system="sys"))

    first, second, third = api.requests
    assert (first.api, first.auth_schemes, first.params["temperature"]) == ("openai", ("bearer",), 0.5)
    assert (second.api, second.auth_schemes, third.auth_schemes) == ("anthropic", ("x-api-key",), ())
    assert third.system == "sys" and third.content_types == ("image", "text")
    assert first.image_sha256 == (hashlib.sha256(PNG).hexdigest(),)
    for seen in (first, second):
        assert "authorization" not in seen.headers and "x-api-key" not in seen.headers
        assert not any("AAAAAAAAAA" in v or "BBBBBBBBBB" in v for v in seen.headers.values())
    key = item_key("q", [PNG])
    # count() is per item; attempts are per (api, model, item): two models are two clients
    assert api.count(key) == 3 and [r.attempt for r in api.requests_for(key)] == [1, 1, 2]


def test_required_key_and_vendor_error_bodies(api: FakeAPI, http: Any) -> None:
    api.require_key = "sk-test-right-0000"
    wrong = post_openai(http, api, openai_body("q"), Authorization="Bearer sk-test-wrong-0000")
    assert wrong.status_code == 401
    assert set(wrong.json()["error"]) == {"message", "type", "param", "code"}
    missing = post_anthropic(http, api, anthropic_body("q"))
    assert missing.status_code == 401
    assert missing.json()["type"] == "error" and missing.json()["error"]["type"] == "authentication_error"
    assert post_anthropic(http, api, anthropic_body("q"), **{"x-api-key": "sk-test-right-0000"}).status_code == 200
    assert post_openai(http, api, openai_body("q"), Authorization="Bearer sk-test-right-0000").status_code == 200


def test_echo_key_puts_the_key_sent_in_errors_and_answers(api: FakeAPI, http: Any) -> None:
    api.echo_key = True
    answer = post_openai(http, api, openai_body("q"), Authorization="Bearer sk-test-ECHOED-0001").json()
    assert answer["choices"][0]["message"]["content"] == "[your key is sk-test-ECHOED-0001] A"
    api.inject("status", status=400)
    error = post_anthropic(http, api, anthropic_body("q"), **{"x-api-key": "sk-ant-ECHOED-0002"}).json()
    assert error["error"]["message"].endswith("(key sent: sk-ant-ECHOED-0002)")
    api.inject("502")
    gateway = post_openai(http, api, openai_body("q"), Authorization="Bearer sk-test-ECHOED-0003")
    assert gateway.status_code == 502 and "sk-test-ECHOED-0003" in gateway.text
    assert post_openai(http, api, openai_body("q")).json()["choices"][0]["message"]["content"] == "A"  # no key, no echo
    assert not any("ECHOED" in v for r in api.requests for v in r.headers.values())  # still never recorded


def test_forced_outcomes(api: FakeAPI, http: Any) -> None:
    api.inject("quota")
    quota = post_openai(http, api, openai_body("q"))
    assert quota.status_code == 429 and quota.json()["error"]["code"] == "insufficient_quota"
    assert quota.json()["error"]["type"] == "insufficient_quota"

    api.inject("529")
    overloaded = post_anthropic(http, api, anthropic_body("q"))
    assert overloaded.status_code == 529 and overloaded.json()["error"]["type"] == "overloaded_error"

    target = item_key("only me", [])
    api.inject("status", status=404, key=target)
    assert post_openai(http, api, openai_body("someone else")).status_code == 200  # not for this key
    assert post_openai(http, api, openai_body("only me")).json()["error"]["code"] == "model_not_found"

    api.inject("empty")
    assert post_openai(http, api, openai_body("q")).json()["choices"] == []
    api.inject("malformed")
    with pytest.raises(ValueError):
        post_openai(http, api, openai_body("q")).json()
    api.inject("502")
    assert "text/html" in post_openai(http, api, openai_body("q")).headers["content-type"]
    assert [r.outcome for r in api.requests] == ["quota", "529", "ok", "status:404", "empty", "malformed", "502"]


def test_retry_hint_dialects(api: FakeAPI, http: Any) -> None:
    """Each 429 dialect carries its own header, and the hint it expresses reads back as ~2 s."""
    expected = {
        ("429", "openai"): "retry-after",
        ("429-date", "openai"): "retry-after",
        ("429-ms", "anthropic"): "retry-after-ms",
        ("429-reset", "openai"): "x-ratelimit-reset-requests",
        ("429-reset", "anthropic"): "anthropic-ratelimit-requests-reset",
    }
    for (kind, vendor), header in expected.items():
        api.inject(kind, retry_after=2)
        if vendor == "openai":
            answer = post_openai(http, api, openai_body(f"{kind} {vendor}"))
        else:
            answer = post_anthropic(http, api, anthropic_body(f"{kind} {vendor}"))
        assert answer.status_code == 429 and header in answer.headers, (kind, vendor)
        hint = retry_after_seconds(answer.headers)
        assert hint is not None and 1.8 <= hint <= 3.0, (kind, vendor, hint)
    assert len(api.violations) == 0


def test_retry_after_checker_counts_early_retries(api: FakeAPI, http: Any) -> None:
    api.inject("429", retry_after=0.3)
    assert post_openai(http, api, openai_body("k")).headers["retry-after"] == "0.3"
    post_openai(http, api, openai_body("k"))  # at once: too early
    post_openai(http, api, openai_body("other"))  # another item is not held back
    post_openai(http, api, openai_body("k", model="m2"))  # nor another model (another client)
    assert len(api.violations) == 1 and api.violations[0].hint_s == pytest.approx(0.3)
    time.sleep(0.35)
    post_openai(http, api, openai_body("k"))  # after the hint: fine
    assert len(api.violations) == 1


def test_server_side_rate_limit(api: FakeAPI, http: Any) -> None:
    api.rate_limit, api.rate_window = 3, 60.0
    statuses = [post_openai(http, api, openai_body(f"q{i}")).status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert api.requests[-1].outcome == "rate_limit"


def test_latency(api: FakeAPI, http: Any) -> None:
    api.latency = 0.2
    started = time.perf_counter()
    post_openai(http, api, openai_body("slow"))
    assert time.perf_counter() - started >= 0.2


def test_bad_image_data_is_a_400_about_images(api: FakeAPI, http: Any) -> None:
    body = openai_body("q")
    body["messages"][0]["content"].insert(0, {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}})
    answer = post_openai(http, api, body)
    assert answer.status_code == 400 and "image" in answer.json()["error"]["message"].lower()


def test_stats_and_reset_endpoints(api: FakeAPI, http: Any) -> None:
    post_openai(http, api, openai_body("q"))
    stats = http.get(f"{api.base_url}/_fake/stats").json()
    assert stats["requests"] == 1 and stats["outcomes"] == {"ok": 1} and stats["violations"] == []
    assert http.post(f"{api.base_url}/_fake/reset").json() == {"ok": True}
    assert api.requests == []


# ---------------------------------------------------------------------- seeded faults


def test_fault_draws_are_seeded_and_order_free() -> None:
    faults = Faults({"500": 0.2, "429": 0.1, "reset": 0.1}, seed=11)
    draws = [faults.draw(f"k{i}", attempt) for i in range(300) for attempt in (1, 2)]
    assert draws == [Faults(dict(faults.rates), seed=11).draw(f"k{i}", a) for i in range(300) for a in (1, 2)]
    assert draws != [Faults(dict(faults.rates), seed=12).draw(f"k{i}", a) for i in range(300) for a in (1, 2)]
    share = {kind: draws.count(kind) / len(draws) for kind in ("500", "429", "reset")}
    assert 0.14 < share["500"] < 0.26 and 0.05 < share["429"] < 0.15 and 0.05 < share["reset"] < 0.15
    assert draws.count(None) / len(draws) == pytest.approx(0.6, abs=0.07)
    with pytest.raises(ValueError, match="unknown fault"):
        Faults({"418": 0.1})
    with pytest.raises(ValueError, match="sum"):
        Faults({"500": 0.7, "503": 0.4})
    assert set(FAULT_KINDS) >= {"429", "500", "502", "503", "529", "hang", "reset", "truncated", "malformed"}


def test_seeded_faults_reproduce_over_http(api: FakeAPI, http: Any) -> None:
    api.faults = Faults({"500": 0.25, "503": 0.15, "malformed": 0.1}, seed=5, retry_after=0.0)

    # Arrival order differs between runs; the outcome per (item, attempt) must not.
    orders = iter([range(20), range(19, -1, -1)])

    def run() -> list[str]:
        api.reset()
        for i in next(orders):
            post_openai(http, api, openai_body(f"item {i}"))
        return [r.outcome for r in sorted(api.requests, key=lambda r: r.text)]

    first = run()
    second = run()
    assert first == second
    assert {"500", "503", "ok"} <= set(first)
    assert first == [api.faults.draw(item_key(text, []), 1) or "ok" for text in sorted(f"item {i}" for i in range(20))]


def test_stop_does_not_wait_for_a_hanging_request() -> None:
    api = FakeAPI(faults=Faults({"hang": 1.0}, hang_seconds=30)).start()
    with httpx.Client(timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
        client.post(f"{api.base_url_openai}/chat/completions", json=openai_body("q"))
    started = time.perf_counter()
    api.stop()
    assert time.perf_counter() - started < 3


def test_blind_mode_reads_no_body_and_answers_the_fallback_in_both_formats() -> None:
    openai = pytest.importorskip("openai")
    anthropic = pytest.importorskip("anthropic")
    with FakeAPI(blind=True, fallback="C") as api:
        o = openai.OpenAI(base_url=api.base_url_openai, api_key="sk-blind-test", max_retries=0)
        reply = o.chat.completions.create(model="m", messages=[{"role": "user", "content": "not parsed"}])
        a = anthropic.Anthropic(base_url=api.base_url_anthropic, api_key="sk-blind-test", max_retries=0)
        message = a.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "C" and message.content[0].text == "C"
    assert reply.usage.prompt_tokens > 0 and api.requests == []  # nothing parsed, nothing recorded

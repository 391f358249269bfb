"""The fake upstream speaks the real wire protocols: the official SDKs accept it."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import openai
import pytest
import requests

from tests import fixtures_upstream
from tests.fake_upstream import FakeUpstream, bearer

fake_upstream = fixtures_upstream.fake_upstream  # until conftest.py provides it


def claude(fake: FakeUpstream, key: str = "sk-ant-test") -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=fake.url, max_retries=0)


def gpt(fake: FakeUpstream, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=fake.url + "/v1", max_retries=0)


def ask_claude(fake: FakeUpstream, text: str = "hello there", **kw):
    return claude(fake, **kw).messages.create(
        model="claude-sonnet-4-6", max_tokens=100, system="be brief",
        messages=[{"role": "user", "content": text}])


def ask_gpt(fake: FakeUpstream, text: str = "hello there", **kw):
    return gpt(fake, **kw).chat.completions.create(
        model="kimi-k2.5", max_tokens=100,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": text}])


def test_anthropic_sdk_gets_text_and_usage(fake_upstream):
    msg = ask_claude(fake_upstream)
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.id.startswith("msg_")
    assert msg.model == "claude-sonnet-4-6"
    assert msg.content[0].text == "fake reply: hello there"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == len(msg.content[0].text) // 4 + 1
    (req,) = fake_upstream.requests("anthropic")
    assert req["path"] == "/v1/messages"
    # Official SDKs send the key as x-api-key (older) or a Bearer token (newer).
    assert "sk-ant-test" in (req["headers"].get("x-api-key"), bearer(req["headers"]))
    assert req["headers"]["anthropic-version"]
    assert req["json"]["system"] == "be brief"


def test_openai_sdk_gets_text_and_usage(fake_upstream):
    resp = ask_gpt(fake_upstream)
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    assert resp.choices[0].message.content == "fake reply: hello there"
    assert resp.choices[0].finish_reason == "stop"
    usage = resp.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    (req,) = fake_upstream.requests("openai")
    assert req["headers"]["authorization"] == "Bearer sk-test"
    assert fake_upstream.call_count("anthropic") == 0


def test_replies_are_deterministic(fake_upstream):
    first, second = ask_claude(fake_upstream), ask_claude(fake_upstream)
    assert first.content[0].text == second.content[0].text
    assert first.usage == second.usage


def test_knobs_override_text_and_tokens(fake_upstream):
    fake_upstream.set("openai", text="fixed", input_tokens=11, output_tokens=22)
    resp = ask_gpt(fake_upstream)
    assert resp.choices[0].message.content == "fixed"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (11, 22)
    assert ask_claude(fake_upstream).content[0].text == "fake reply: hello there"


@pytest.mark.parametrize("status, error", [
    (429, anthropic.RateLimitError),
    (500, anthropic.InternalServerError),
    (529, anthropic.InternalServerError),
])
def test_anthropic_errors_map_to_sdk_exceptions(fake_upstream, status, error):
    fake_upstream.set("anthropic", fail_status=status, retry_after=3)
    with pytest.raises(error) as info:
        ask_claude(fake_upstream)
    assert info.value.status_code == status
    assert info.value.response.headers["retry-after"] == "3"
    kind = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}[status]
    assert info.value.body["error"]["type"] == kind


@pytest.mark.parametrize("status, error, kind", [
    (429, openai.RateLimitError, "requests"),
    (503, openai.InternalServerError, "server_error"),
])
def test_openai_errors_map_to_sdk_exceptions(fake_upstream, status, error, kind):
    fake_upstream.set("openai", fail_status=status)
    with pytest.raises(error) as info:
        ask_gpt(fake_upstream)
    assert info.value.status_code == status
    assert info.value.type == kind
    assert "retry-after" not in info.value.response.headers


def test_fail_times_then_recovers(fake_upstream):
    fake_upstream.set(fail_status=429, fail_times=1)
    with pytest.raises(anthropic.RateLimitError):
        ask_claude(fake_upstream)
    assert ask_claude(fake_upstream).content[0].text
    with pytest.raises(openai.RateLimitError):
        ask_gpt(fake_upstream)
    assert ask_gpt(fake_upstream).choices[0].message.content
    assert fake_upstream.call_count() == 4


def test_missing_auth_is_refused_in_each_format(fake_upstream):
    resp = requests.post(fake_upstream.url + "/v1/messages", timeout=5,
                         json={"model": "m", "max_tokens": 1, "messages": []})
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    resp = requests.post(fake_upstream.url + "/v1/messages", timeout=5,
                         headers={"x-api-key": "k"},
                         json={"model": "m", "max_tokens": 1, "messages": []})
    assert resp.status_code == 400 and resp.json()["type"] == "error"
    resp = requests.post(fake_upstream.url + "/v1/chat/completions", timeout=5,
                         json={"model": "m", "messages": []})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"


def test_sdks_raise_authentication_error_on_401(fake_upstream):
    fake_upstream.set(fail_status=401)
    with pytest.raises(anthropic.AuthenticationError):
        ask_claude(fake_upstream)
    with pytest.raises(openai.AuthenticationError) as info:
        ask_gpt(fake_upstream)
    assert info.value.code == "invalid_api_key"


def test_anthropic_requires_max_tokens(fake_upstream):
    resp = requests.post(fake_upstream.url + "/v1/messages", timeout=5,
                         headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                         json={"model": "m", "messages": []})
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_hang_does_not_block_other_requests(fake_upstream):
    fake_upstream.set("anthropic", hang=True)
    hung = threading.Thread(target=ask_claude, args=(fake_upstream,), daemon=True)
    hung.start()
    while fake_upstream.call_count("anthropic") == 0:
        time.sleep(0.01)
    started = time.monotonic()
    assert ask_gpt(fake_upstream).choices[0].message.content
    assert time.monotonic() - started < 1
    fake_upstream.set("anthropic", hang=False)
    hung.join(2)
    assert not hung.is_alive()  # released by the knob, answered normally


def test_latency_is_applied_concurrently(fake_upstream):
    fake_upstream.set(latency=0.3)
    started = time.monotonic()
    threads = [threading.Thread(target=ask_gpt, args=(fake_upstream,)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 0.3 <= time.monotonic() - started < 1.2
    assert fake_upstream.call_count("openai") == 5


def test_reset_clears_knobs_and_log(fake_upstream):
    fake_upstream.set(fail_status=500)
    with pytest.raises(openai.InternalServerError):
        ask_gpt(fake_upstream)
    fake_upstream.reset()
    assert fake_upstream.call_count() == 0
    assert ask_gpt(fake_upstream).choices[0].message.content


def test_stop_releases_hung_requests():
    fake = FakeUpstream().start()
    fake.set(hang=True)
    errors = []

    def call() -> None:
        try:
            ask_claude(fake)
        except anthropic.APIConnectionError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    while fake.call_count() == 0:
        time.sleep(0.01)
    fake.stop()
    thread.join(2)
    assert errors and not thread.is_alive()


def test_runs_as_a_script():
    script = Path(__file__).with_name("fake_upstream.py")
    proc = subprocess.Popen([sys.executable, str(script), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        resp = requests.post(url + "/v1/chat/completions", timeout=5,
                             headers={"Authorization": "Bearer k"},
                             json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert resp.json()["choices"][0]["message"]["content"] == "fake reply: hi"
    finally:
        proc.terminate()
        proc.wait(5)

"""Provider adapters against the fake upstream, over real HTTP."""
from __future__ import annotations

import threading
import time

import pytest

from j1msky.services import outbound, providers
from j1msky.services.providers import (
    CircuitBreaker,
    Completion,
    DeadlineExceeded,
    ProviderUnavailable,
    complete,
)
from tests import fixtures_upstream

KEY = "sk-secret-key-123456"

fake_upstream = fixtures_upstream.fake_upstream  # until conftest.py provides it


def anthropic_cfg(fake) -> dict:
    return {"kind": "anthropic", "base_url": fake.url + "/", "api_key_env": "X", "api_key": KEY}


def openai_cfg(fake) -> dict:
    return {"kind": "openai", "base_url": fake.url + "/v1", "api_key_env": "X", "api_key": KEY}


def call(provider: dict, *, cancel: threading.Event | None = None, timeout: float = 5.0,
         **kw) -> Completion:
    kw.setdefault("backoff_base", 0.001)
    return complete(provider, "p", "up-model", kw.pop("prompt", "write a haiku"),
                    deadline=time.monotonic() + timeout,
                    cancel=cancel or threading.Event(), **kw)


class Settlements(list):
    """An on_call hook that records how each attempt was settled, as it is settled."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self.done = threading.Condition()

    def __call__(self):
        self.opened += 1
        return self.settle

    def settle(self, outcome: providers.Outcome) -> None:
        with self.done:
            self.append(outcome)
            self.done.notify_all()

    def wait(self, count: int, timeout: float = 5) -> None:
        with self.done:
            assert self.done.wait_for(lambda: len(self) >= count, timeout), list(self)

    def kinds(self) -> list[str]:
        return ["answered" if o.completion else "estimate" if o.maybe_billed else "free"
                for o in self]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_anthropic_happy_path(fake_upstream):
    fake_upstream.set("anthropic", input_tokens=12, output_tokens=34)
    result = call(anthropic_cfg(fake_upstream), system="be terse", max_tokens=99)
    assert result == Completion("fake reply: write a haiku", 12, 34, simulated=False)
    (req,) = fake_upstream.requests("anthropic")
    assert req["path"] == "/v1/messages"
    assert req["headers"]["x-api-key"] == KEY
    assert req["headers"]["anthropic-version"] == "2023-06-01"
    assert req["json"] == {"model": "up-model", "max_tokens": 99, "system": "be terse",
                           "messages": [{"role": "user", "content": "write a haiku"}]}


def test_openai_happy_path(fake_upstream):
    result = call(openai_cfg(fake_upstream), system="be terse")
    assert result.text == "fake reply: write a haiku"
    assert result.output_tokens == len(result.text) // 4 + 1
    assert result.input_tokens > 0
    (req,) = fake_upstream.requests("openai")
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    assert req["json"]["messages"] == [{"role": "system", "content": "be terse"},
                                       {"role": "user", "content": "write a haiku"}]


def test_calls_go_through_the_proxy_of_the_environment(fake_upstream, monkeypatch):
    """HTTP(S)_PROXY and NO_PROXY are honoured as a requests Session would: the fake
    upstream stands in for the proxy of a provider whose name does not resolve here."""
    monkeypatch.setenv("HTTP_PROXY", fake_upstream.url)
    monkeypatch.setenv("NO_PROXY", "localhost")
    outbound.environ_proxies.cache_clear()
    try:
        provider = {**anthropic_cfg(fake_upstream), "base_url": "http://api.provider.invalid"}
        assert call(provider).text == "fake reply: write a haiku"
    finally:
        outbound.environ_proxies.cache_clear()
    (req,) = fake_upstream.requests("anthropic")
    assert req["headers"]["host"] == "api.provider.invalid"


def test_retry_after_429_then_success(fake_upstream):
    fake_upstream.set("openai", fail_status=429, fail_times=1, retry_after=0.05)
    calls = Settlements()
    started = time.monotonic()
    result = call(openai_cfg(fake_upstream), on_call=calls)
    assert result.text.startswith("fake reply")
    assert fake_upstream.call_count() == 2 and calls.opened == 2
    assert calls.kinds() == ["free", "answered"]  # providers bill no error answer
    assert calls[1].completion == result
    assert time.monotonic() - started >= 0.05  # honoured retry-after


def test_500_forever_gives_up_after_retries(fake_upstream):
    fake_upstream.set(fail_status=500)
    with pytest.raises(ProviderUnavailable) as info:
        call(anthropic_cfg(fake_upstream), retries=2)
    assert fake_upstream.call_count() == 3
    assert "500" in str(info.value) and KEY not in str(info.value)


def test_connection_error_is_retried_then_unavailable():
    provider = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": KEY}
    calls = Settlements()
    with pytest.raises(ProviderUnavailable) as info:
        call(provider, retries=1, on_call=calls)
    assert calls.kinds() == ["free", "free"] and KEY not in str(info.value)  # never sent


@pytest.mark.parametrize("knobs, read_timeout", [({"drop": True}, 5.0),
                                                 ({"latency": 1.0}, 0.2)])
def test_an_answer_lost_after_sending_is_settled_at_the_estimate(fake_upstream, knobs,
                                                                 read_timeout):
    fake_upstream.set("openai", **knobs)
    calls = Settlements()
    with pytest.raises(ProviderUnavailable):
        call(openai_cfg(fake_upstream), retries=1, on_call=calls, read_timeout=read_timeout)
    assert fake_upstream.call_count() == 2
    assert calls.kinds() == ["estimate", "estimate"]


def test_a_call_abandoned_on_cancel_is_settled_with_its_usage_when_it_answers(fake_upstream):
    fake_upstream.set("anthropic", latency=0.5, input_tokens=7, output_tokens=9)
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    calls = Settlements()
    with pytest.raises(providers.Cancelled):
        call(anthropic_cfg(fake_upstream), cancel=cancel, on_call=calls)
    assert calls == []  # still in flight when the caller gave up
    calls.wait(1)
    assert calls.kinds() == ["answered"]
    assert (calls[0].completion.input_tokens, calls[0].completion.output_tokens) == (7, 9)


@pytest.mark.parametrize("cfg", [anthropic_cfg, openai_cfg])
def test_401_is_not_retried_and_hides_key(fake_upstream, cfg):
    fake_upstream.set(fail_status=401)
    with pytest.raises(ProviderUnavailable) as info:
        call(cfg(fake_upstream))
    assert fake_upstream.call_count() == 1
    assert "401" in str(info.value) and KEY not in str(info.value)


def test_upstream_message_echoing_the_key_is_scrubbed(fake_upstream):
    fake_upstream.set("openai", fail_status=401)
    with pytest.raises(ProviderUnavailable) as info:
        call(openai_cfg(fake_upstream))
    assert "Incorrect API key provided: ***" in str(info.value)
    assert KEY not in str(info.value)


def test_missing_key_is_refused_without_retry(fake_upstream):
    provider = anthropic_cfg(fake_upstream) | {"api_key": ""}
    with pytest.raises(ProviderUnavailable, match="401: x-api-key header is required"):
        call(provider)
    assert fake_upstream.call_count() == 1


def test_bad_header_value_is_not_retried(fake_upstream):
    provider = openai_cfg(fake_upstream) | {"api_key": "sk-secret\nkey"}
    calls = Settlements()
    with pytest.raises(ProviderUnavailable, match="InvalidHeader") as info:
        call(provider, on_call=calls)
    assert calls.kinds() == ["free"] and "secret" not in str(info.value)


def test_cancel_while_upstream_hangs_returns_promptly(fake_upstream):
    fake_upstream.set(hang=True)
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(providers.Cancelled):
        call(openai_cfg(fake_upstream), cancel=cancel)
    assert time.monotonic() - started < 0.5


def test_deadline_while_upstream_hangs(fake_upstream):
    fake_upstream.set(hang=True)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        call(anthropic_cfg(fake_upstream), timeout=0.2)
    assert time.monotonic() - started < 0.5


def test_cancel_during_backoff(fake_upstream):
    fake_upstream.set(fail_status=429, retry_after=30)
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(providers.Cancelled):
        call(openai_cfg(fake_upstream), cancel=cancel, backoff_max=30)
    assert time.monotonic() - started < 0.5 and fake_upstream.call_count() == 1


def test_breaker_opens_then_refuses_without_a_call(fake_upstream):
    fake_upstream.set(fail_status=503)
    breaker = CircuitBreaker(threshold=3, reset_timeout=60, clock=FakeClock())
    with pytest.raises(ProviderUnavailable):
        call(openai_cfg(fake_upstream), retries=5, breaker=breaker)
    assert fake_upstream.call_count() == 3 and breaker.state == "open"
    with pytest.raises(ProviderUnavailable, match="circuit open"):
        call(openai_cfg(fake_upstream), breaker=breaker)
    assert fake_upstream.call_count() == 3


def test_breaker_half_open_after_reset_timeout(fake_upstream):
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, reset_timeout=60, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 60
    assert breaker.state == "half-open"
    result = call(anthropic_cfg(fake_upstream), breaker=breaker)
    assert result.text and breaker.state == "closed"


def test_half_open_lets_one_probe_and_failure_reopens():
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, reset_timeout=10, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow() and not breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"


def test_breaker_registry_is_per_provider():
    a = providers.breaker_for("test-a", 2, 5.0)
    assert providers.breaker_for("test-a", 3, 6.0) is a and a.threshold == 3
    assert providers.breaker_for("test-b") is not a
    a.record_failure()
    a.record_failure()
    a.record_failure()
    states = providers.breaker_states()
    assert states["test-a"] == "open" and states["test-b"] == "closed"


def test_simulated_is_deterministic_and_settled_with_its_usage():
    calls = Settlements()
    provider = {"kind": "simulated", "delay": 0.01}
    first = call(provider, on_call=calls, prompt="plan  a\ntrip")
    second = call(provider, prompt="plan  a\ntrip")
    assert first == second and first.simulated and calls.kinds() == ["answered"]
    assert first.text.startswith("[simulated up-model] ") and "plan a trip" in first.text
    assert first.input_tokens == len("plan  a\ntrip") // 4 + 1
    assert first.output_tokens == len(first.text) // 4 + 1
    assert call(provider, prompt="other").text != first.text


def test_simulated_delay_is_cancellable():
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(providers.Cancelled):
        call({"kind": "simulated", "delay": 5}, cancel=cancel)
    assert time.monotonic() - started < 0.5


def test_unknown_kind_is_unavailable():
    with pytest.raises(ProviderUnavailable, match="unknown provider kind"):
        call({"kind": "carrier-pigeon"})

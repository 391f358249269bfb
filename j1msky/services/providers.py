"""Calls to model providers: Anthropic Messages, OpenAI Chat Completions, simulated.

Every HTTP attempt runs on a small module-level pool so the caller can stop
waiting the moment its agent is cancelled or its deadline passes; an abandoned
request finishes in the background, bounded by its read timeout. Each attempt
is settled on that pool thread as soon as its outcome is known, before anyone
sees the answer, so a call nobody waits for any more is still paid for.
"""
from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import wait
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import requests
from urllib3.exceptions import NewConnectionError

from . import outbound
from .pool import DaemonPool

log = logging.getLogger(__name__)
ANTHROPIC_VERSION = "2023-06-01"
WAIT_SLICE = 0.05  # how often an in-flight call looks at cancel and deadline
RETRY_STATUSES = {408, 429}  # plus every 5xx
AUTH_STATUSES = {401, 403}  # the provider is unusable, so the breaker counts them
NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout,
                  requests.exceptions.ChunkedEncodingError)

_pool = DaemonPool(32, name="provider-http")


@dataclass
class Completion:
    """Text and token usage of one model call."""
    text: str
    input_tokens: int
    output_tokens: int
    simulated: bool = False


@dataclass
class Outcome:
    """What one attempt may cost: the usage it reported, else whether the provider may
    have billed it anyway (the request went out and no clear error came back)."""
    completion: Completion | None = None
    maybe_billed: bool = False


Settle = Callable[[Outcome], None]


def _no_charge() -> Settle:
    return lambda outcome: None


class ProviderError(Exception):
    """A provider call failed; the message never holds the API key."""


class ProviderUnavailable(ProviderError):
    """Retries exhausted, circuit open or request refused: try the fallback model."""


class Cancelled(Exception):
    """The caller's cancel event was set."""


class DeadlineExceeded(Exception):
    """The caller's deadline passed."""


class CircuitBreaker:
    """Closed -> open after `threshold` failures in a row -> half-open after `reset_timeout`."""

    def __init__(self, threshold: int = 5, reset_timeout: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_at: float | None = None

    @property
    def state(self) -> str:
        """closed | open | half-open."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_timeout:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """May a call go out now? Half-open lets one probe through at a time."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "open":
                return False
            now = self._clock()
            # A probe that never reported (its caller gave up) expires after reset_timeout.
            if self._probe_at is not None and now - self._probe_at < self.reset_timeout:
                return False
            self._probe_at = now
            return True

    def record_success(self) -> None:
        """The provider answered: close the circuit."""
        with self._lock:
            self._failures = 0
            self._opened_at = self._probe_at = None

    def record_failure(self) -> None:
        """The provider failed: count it, opening (or re-opening) the circuit."""
        with self._lock:
            self._failures += 1
            if self._opened_at is not None or self._failures >= self.threshold:
                self._opened_at = self._clock()
                self._probe_at = None


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(provider_name: str, threshold: int = 5, reset_timeout: float = 60.0) -> CircuitBreaker:
    """The process-wide breaker of one provider, its settings updated from config."""
    with _breakers_lock:
        breaker = _breakers.setdefault(provider_name, CircuitBreaker(threshold, reset_timeout))
        breaker.threshold, breaker.reset_timeout = threshold, reset_timeout
        return breaker


def reset_breakers() -> None:
    """Forget every breaker (a new runner starts with closed circuits)."""
    with _breakers_lock:
        _breakers.clear()


def breaker_states() -> dict[str, str]:
    """State of every provider's breaker, by provider name."""
    with _breakers_lock:
        return {name: b.state for name, b in _breakers.items()}


def complete(provider: dict, provider_name: str, upstream_model: str, prompt: str, *,
             system: str | None = None, max_tokens: int = 4096, deadline: float,
             cancel: threading.Event, on_call: Callable[[], Settle] = _no_charge,
             retries: int = 3, backoff_base: float = 0.5, backoff_max: float = 8.0,
             breaker: CircuitBreaker | None = None, connect_timeout: float = 5.0,
             read_timeout: float = 120.0) -> Completion:
    """One completion, retried on 429/5xx/network errors; raises ProviderUnavailable,
    Cancelled or DeadlineExceeded. `deadline` is a time.monotonic() value.

    `on_call()` runs before each attempt is sent and returns the function that settles
    that attempt's cost; it is called exactly once per attempt, possibly after this
    function has given up waiting (cancel, deadline)."""
    kind = provider.get("kind")
    if kind == "simulated":
        completion = _simulate(provider, upstream_model, prompt, system, cancel, deadline)
        on_call()(Outcome(completion))
        return completion
    if kind not in ("anthropic", "openai"):
        raise ProviderUnavailable(f"{provider_name}: unknown provider kind {kind!r}")
    key = provider.get("api_key") or ""
    url, headers, body = _build(kind, provider, key, upstream_model, prompt, system, max_tokens)
    problem = "no attempt made"
    for attempt in range(retries + 1):
        _check(cancel, deadline)
        if breaker is not None and not breaker.allow():
            raise ProviderUnavailable(f"{provider_name}: circuit open")
        settle = on_call()
        response, completion, problem, network = _attempt(
            kind, url, headers, body, (connect_timeout, read_timeout), cancel, deadline, key,
            settle)
        if response is not None and response.status_code < 300:
            _record(breaker, completion is not None)
            if completion is None:
                raise ProviderUnavailable(f"{provider_name}: malformed response")
            return completion
        status = response.status_code if response is not None else 0
        retryable = network or status in RETRY_STATUSES or status >= 500
        _record(breaker, not retryable and status not in AUTH_STATUSES)
        if not retryable:
            raise ProviderUnavailable(f"{provider_name}: {problem}")
        if attempt < retries:
            _sleep(_backoff(attempt, response, backoff_base, backoff_max), cancel, deadline)
    raise ProviderUnavailable(f"{provider_name}: {problem} (after {retries + 1} attempts)")


def _build(kind: str, provider: dict, key: str, model: str, prompt: str, system: str | None,
           max_tokens: int) -> tuple[str, dict, dict]:
    """URL, headers and JSON body of one request in the provider's wire format."""
    base = provider["base_url"].rstrip("/")
    messages = [{"role": "user", "content": prompt}]
    if kind == "anthropic":
        headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        body = {"model": model, "max_tokens": max_tokens, "messages": messages}
        if system:
            body["system"] = system
        return base + "/v1/messages", headers, body
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return base + "/chat/completions", headers, {"model": model, "max_tokens": max_tokens,
                                                 "messages": messages}


def _attempt(kind: str, url: str, headers: dict, body: dict, timeout: tuple[float, float],
             cancel: threading.Event, deadline: float, key: str, settle: Settle,
             ) -> tuple[requests.Response | None, Completion | None, str, bool]:
    """Send once on the pool, waiting in slices: response or None, its completion,
    scrubbed problem, and whether it was a network error (worth retrying)."""
    future = _pool.submit(_exchange, kind, url, headers, body, timeout, settle)
    while not wait([future], timeout=WAIT_SLICE).done:
        try:
            _check(cancel, deadline)
        except (Cancelled, DeadlineExceeded):
            if future.cancel():  # still queued: never sent
                settle(Outcome())
            raise
    response, completion, error = future.result()
    if error is not None:
        problem = _scrub(f"{type(error).__name__}: {error}", key)
        return None, None, problem, isinstance(error, NETWORK_ERRORS)
    if response.status_code < 300:
        return response, completion, "", False
    problem = f"HTTP {response.status_code}: {_upstream_message(response)}"
    return response, completion, _scrub(problem, key), False


def _exchange(kind: str, url: str, headers: dict, body: dict, timeout: tuple[float, float],
              settle: Settle) -> tuple[requests.Response | None, Completion | None,
                                       requests.RequestException | None]:
    """On a pool thread: send, read the answer and settle the call's cost."""
    response = completion = error = None
    try:
        response = _post(url, headers, body, timeout)
        if response.status_code < 300:
            completion = _parse(kind, response)
    except requests.RequestException as exc:
        error = exc
    try:
        settle(Outcome(completion, completion is None and _maybe_billed(response, error)))
    except Exception:
        log.exception("could not settle a provider call: it stays in flight and is charged"
                      " at its estimate at the next start")
    return response, completion, error


def _maybe_billed(response: requests.Response | None,
                  error: requests.RequestException | None) -> bool:
    """No usage came back: could the provider have billed the call all the same? Not
    for a clear error answer (providers bill none) nor a request that never left."""
    if response is not None:
        return response.status_code < 300 or not _has_error_body(response)
    return _was_sent(error)


def _has_error_body(response: requests.Response) -> bool:
    try:
        return bool(response.json().get("error"))
    except (ValueError, AttributeError):
        return False


def _was_sent(error: requests.RequestException | None) -> bool:
    """False when the connection was never made; any later failure (read timeout,
    reset, truncated answer) may have come after the provider got the request."""
    if not isinstance(error, NETWORK_ERRORS) or isinstance(
            error, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return False
    cause = error.args[0] if error.args else None
    return not isinstance(getattr(cause, "reason", cause), NewConnectionError)


def _post(url: str, headers: dict, body: dict, timeout: tuple[float, float]) -> requests.Response:
    """POST through this thread's adapter, with the proxy and CA a Session would use, and
    read the answer to its end (a broken one raises here). Redirects are not followed."""
    request = requests.Request("POST", url, headers=headers, json=body).prepare()
    response = outbound.adapter().send(request, timeout=timeout, verify=outbound.ca_bundle(),
                                       proxies=outbound.environ_proxies(url))
    response.content  # noqa: B018 - read here, where network errors are caught
    return response


def _parse(kind: str, response: requests.Response) -> Completion | None:
    """A Completion from a 2xx body, or None when the body is not the expected shape."""
    try:
        data = response.json()
        if kind == "anthropic":
            text = "".join(b.get("text", "") for b in data["content"] if b.get("type") == "text")
            usage = data["usage"]
            return Completion(text, int(usage["input_tokens"]), int(usage["output_tokens"]))
        usage = data.get("usage") or {}
        return Completion(data["choices"][0]["message"].get("content") or "",
                          int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def _upstream_message(response: requests.Response) -> str:
    """The error message of an Anthropic- or OpenAI-style error body, shortened."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    return str(message or response.reason or "error")[:200]


def _scrub(text: str, key: str) -> str:
    """Text with the API key blanked out, also in its escaped (repr) form."""
    key = key.strip()
    if len(key) < 4:
        return text
    for form in (key, key.encode("unicode_escape").decode()):
        text = text.replace(form, "***")
    return text


def _record(breaker: CircuitBreaker | None, ok: bool) -> None:
    if breaker is None:
        return
    if ok:
        breaker.record_success()
    else:
        breaker.record_failure()


def _backoff(attempt: int, response: requests.Response | None, base: float, cap: float) -> float:
    """Seconds before the next attempt: the provider's retry-after, else full jitter."""
    retry_after = _retry_after(response.headers.get("retry-after")) if response is not None else None
    if retry_after is not None:
        return min(retry_after, cap)
    return random.uniform(0, min(cap, base * 2 ** attempt))


def _retry_after(value: str | None) -> float | None:
    """A retry-after header (seconds or HTTP-date) as seconds, or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _check(cancel: threading.Event, deadline: float) -> None:
    """Raise Cancelled or DeadlineExceeded when due."""
    if cancel.is_set():
        raise Cancelled("cancelled")
    if time.monotonic() >= deadline:
        raise DeadlineExceeded("deadline exceeded")


def _sleep(seconds: float, cancel: threading.Event, deadline: float) -> None:
    """Sleep, waking at once on cancel; past the deadline raises DeadlineExceeded."""
    cancel.wait(max(0.0, min(seconds, deadline - time.monotonic())))
    _check(cancel, deadline)


def _simulate(provider: dict, model: str, prompt: str, system: str | None,
              cancel: threading.Event, deadline: float) -> Completion:
    """Deterministic local answer after the provider's configured delay."""
    _check(cancel, deadline)
    _sleep(float(provider.get("delay", 0) or 0), cancel, deadline)
    digest = hashlib.sha256(f"{system or ''}\n{prompt}".encode()).hexdigest()[:8]
    summary = " ".join(prompt.split())[:160]
    text = f"[simulated {model}] Response to: {summary} (#{digest})"
    n_in = (len(prompt) + len(system or "")) // 4 + 1
    return Completion(text, n_in, len(text) // 4 + 1, simulated=True)

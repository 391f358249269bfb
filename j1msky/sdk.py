"""The Python client of the J1MSKY API (``from j1msky import Agency``); needs only requests.

    agency = Agency(api_key="live_sk_...", base_url="http://raspberrypi.local:8080")
    agent = agency.spawn(model="k2p5", task="Write a haiku about SQLite", priority="normal")
    result = agent.wait_for_completion()
    print(result.output, result.cost)

What every call gets, without asking:

- ``Authorization: Bearer`` and, with ``api_secret``, ``X-Timestamp``/``X-Signature``
  signed over the exact path, query and body bytes sent (CONTRACT §3);
- an ``Idempotency-Key`` (uuid4) on POST/PUT/PATCH/DELETE, the same one for every retry
  of that call, so a retried spawn never makes a second agent;
- retries of 429, 502/503/504, connection failures and timeouts, and of the 409 that
  says the same idempotency key is still executing: exponential backoff from
  ``backoff_base`` with up to 10% jitter, or the server's ``retry_after`` when it sends
  one, never sleeping more than ``backoff_max``. A server asking for a longer wait than
  ``backoff_max`` gets no early retry (it would be refused again): the error is raised
  at once, ``retry_after`` telling how long to wait;
- an optional CircuitBreaker that fails fast while the service keeps failing;
- error answers raised as typed exceptions (see J1mskyError).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

import requests

__all__ = ["Agency", "Agent", "Result", "EventStream", "LiveEvents", "CircuitBreaker", "J1mskyError",
           "ValidationError", "AuthError", "NotFound", "Conflict", "Gone", "RateLimitError",
           "ServerError", "NetworkError", "CircuitOpenError"]

USER_AGENT = "j1msky-sdk/4.0"
FINISHED = ("completed", "failed", "cancelled")
FINISHED_EVENTS = tuple(f"agent.{status}" for status in FINISHED)
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
RETRY_STATUSES = (429, 502, 503, 504)
SUMMARY_CHARS = 500
LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+\S")


class J1mskyError(Exception):
    """An error answer from the API, or no answer at all.

    ``status``: HTTP status (None when no answer came); ``message``: the error's message;
    ``request_id``: the server's request id, to quote to support; ``details``: field ->
    messages of a validation error; ``retry_after``: seconds to wait (429/503), from the
    body or the Retry-After header; ``body``: the decoded error body (dict, or text).
    """

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None,
                 details: dict | None = None, retry_after: float | None = None,
                 body: Any = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.details = details
        self.retry_after = retry_after
        self.body = body

    def __str__(self) -> str:
        text = f"{self.status} {self.message}" if self.status else self.message
        return f"{text} (request_id {self.request_id})" if self.request_id else text


class ValidationError(J1mskyError):
    """400 (bad request; ``details`` names the fields) or 413 (body too large)."""


class AuthError(J1mskyError):
    """401 (missing, invalid, expired or unsigned key) or 403 (scope, IP not allowed)."""


class NotFound(J1mskyError):
    """404: no such agent, webhook, key or route."""


class Conflict(J1mskyError):
    """409: the agent has finished, the key is revoked, an idempotency key was reused..."""


class Gone(J1mskyError):
    """410: a retired endpoint (the v3 routes after their sunset date)."""


class RateLimitError(J1mskyError):
    """429, after the client's retries: rate limit, budget, or concurrency limit."""


class ServerError(J1mskyError):
    """5xx, after the client's retries for 502/503/504."""


class NetworkError(ServerError):
    """The service could not be reached or did not answer in time (``status`` is None)."""


class CircuitOpenError(ServerError):
    """The client's circuit breaker is open: the call was not sent."""


ERRORS = {400: ValidationError, 413: ValidationError, 401: AuthError, 403: AuthError,
          404: NotFound, 409: Conflict, 410: Gone, 429: RateLimitError}


def error_from_response(response: requests.Response) -> J1mskyError:
    """The typed exception for an error answer, in the contract's shape or any other."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    error = body.get("error") if isinstance(body, dict) else None
    fields = error if isinstance(error, dict) else {}
    message = fields.get("message") or (error if isinstance(error, str) else None) \
        or response.reason or f"HTTP {response.status_code}"
    retry_after = seconds(fields.get("retry_after"))
    if retry_after is None:
        retry_after = seconds(response.headers.get("Retry-After"))
    status = response.status_code
    cls = ERRORS.get(status) or (ServerError if status >= 500 else J1mskyError)
    return cls(message, status=status, body=body, details=fields.get("details"),
               request_id=fields.get("request_id") or response.headers.get("X-Request-Id"),
               retry_after=retry_after)


def seconds(value: Any) -> float | None:
    """A retry_after value: seconds (number or text) or an HTTP-date; None if neither."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        moment = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - dt.datetime.now(dt.timezone.utc)).total_seconds())


class CircuitBreaker:
    """closed -> open after ``threshold`` failures in a row -> half-open after ``timeout`` s.

    A failure is a 5xx answer or no answer, counted per HTTP attempt (retries included);
    any other answer is a success and resets the count. While open, calls fail fast with
    CircuitOpenError. Once ``timeout`` seconds have passed one trial call goes through
    (half-open): its success closes the circuit, its failure opens it again. Thread-safe;
    one breaker may be shared by several clients of the same service.
    """

    def __init__(self, threshold: int = 5, timeout: float = 60.0):
        self.threshold = threshold
        self.timeout = timeout
        self.failures = 0
        self.last_failure: float | None = None  # time.monotonic()
        self._state = "closed"
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._current()

    def _current(self) -> str:
        if self._state == "open" and time.monotonic() - self.last_failure >= self.timeout:
            self._state, self._trial = "half-open", False
        return self._state

    def before_call(self) -> None:
        """Let a call through, or raise CircuitOpenError."""
        with self._lock:
            state = self._current()
            if state == "closed" or (state == "half-open" and not self._trial):
                self._trial = state == "half-open"
                return
            wait = max(0.0, self.timeout - (time.monotonic() - self.last_failure))
        raise CircuitOpenError(f"Circuit breaker is {state} after {self.failures} failures;"
                               f" not calling the service", retry_after=round(wait, 3))

    def record_success(self) -> None:
        with self._lock:
            self._state, self._trial, self.failures = "closed", False, 0

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1
            self.last_failure = time.monotonic()
            if self._state == "half-open" or self.failures >= self.threshold:
                self._state = "open"
            self._trial = False


class Result:
    """A finished agent (completed, failed or cancelled).

    ``output``: the agent's result text ('' when it has none); ``cost``: actual cost in
    dollars; ``status``; ``usage``: {input_tokens, output_tokens}; ``error``: why it
    failed, or None; ``agent``: the full agent dict; ``agent_id``.
    """

    def __init__(self, agent: dict):
        self.agent = agent
        self.agent_id = agent.get("agent_id")
        self.status = agent.get("status")
        self.output = agent.get("result") or ""
        self.cost = agent.get("cost", agent.get("actual_cost"))
        self.usage = agent.get("usage") or {}
        self.error = agent.get("error")

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def summary(self) -> str:
        """The output's first paragraph, cut at a word to about 500 characters ("..." added)."""
        first = re.split(r"\n\s*\n", self.output.strip(), maxsplit=1)[0].strip()
        if len(first) <= SUMMARY_CHARS:
            return first
        words = first[:SUMMARY_CHARS].rsplit(None, 1)
        return words[0].rstrip() + "..."

    @property
    def issues(self) -> str:
        """The output's bullet (-, *, +, •) and numbered (1. 1)) lines, one per line;
        the whole output when it has none."""
        items = [line.rstrip() for line in self.output.splitlines() if LIST_ITEM.match(line)]
        return "\n".join(items) if items else self.output

    def __repr__(self) -> str:
        return f"<Result {self.agent_id} {self.status} cost={self.cost}>"


class Agent:
    """A spawned agent: ``id``, ``data`` (the last agent dict seen), ``status``."""

    def __init__(self, agency: Agency, data: dict):
        self.agency = agency
        self.data = dict(data)

    @property
    def id(self) -> str:
        return self.data["agent_id"]

    @property
    def status(self) -> str | None:
        return self.data.get("status")

    def refresh(self) -> Agent:
        """Fetch the agent again (GET /agent/{id}) into ``data``."""
        self.data = self.agency.request("GET", f"/agent/{q(self.id)}").json()
        return self

    def cancel(self) -> dict:
        """Cancel it (DELETE /agent/{id}); Conflict once it has finished."""
        answer = self.agency.cancel(self.id)
        self.data["status"] = answer.get("status", "cancelled")
        return answer

    def erase_data(self) -> dict:
        """Erase its task and result now, keeping the cost record."""
        return self.agency.erase_agent_data(self.id)

    def wait_for_completion(self, timeout: float = 600, poll_interval: float = 1.0) -> Result:
        """Wait until completed, failed or cancelled and return its Result (no raise for
        failed or cancelled: look at ``result.status``); TimeoutError after ``timeout`` s.

        Listens on the live event stream, so it returns as soon as the agent finishes.
        Where no stream opens (503: too many open; 404: an older server) it polls
        instead, 50 ms apart at first and doubling up to ``poll_interval``.
        """
        deadline = time.monotonic() + timeout
        events = self.agency.events.stream(FINISHED_EVENTS, deadline=deadline)
        try:
            events.connect()  # before the first look: a finish after it is on the stream
        except J1mskyError:  # polling answers too, or says what is wrong
            return self._poll_for_completion(deadline, timeout, poll_interval)
        with events:
            if self.refresh().status in FINISHED:
                return Result(self.data)
            for event in events:
                if event["data"].get("agent_id") == self.id:
                    return Result(self.refresh().data)
        raise TimeoutError(f"agent {self.id} still {self.status} after {timeout:g}s")

    def _poll_for_completion(self, deadline: float, timeout: float,
                             poll_interval: float) -> Result:
        delay = min(0.05, poll_interval)
        while True:
            self.refresh()
            if self.status in FINISHED:
                return Result(self.data)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"agent {self.id} still {self.status} after {timeout:g}s")
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, poll_interval)

    def __repr__(self) -> str:
        return f"<Agent {self.id} {self.status}>"


class EventStream:
    """Iterate over /events oldest first, following the feed's cursor.

    Ends when the feed has nothing newer, unless ``follow``: then it sleeps
    ``poll_interval`` and asks again, for ever (break to stop). ``cursor`` is where to
    resume later (``agency.events(cursor=stream.cursor)``); it moves past a page once
    every event of it has been taken, so a resumed stream may repeat, never skip.
    """

    def __init__(self, agency: Agency, params: dict, cursor: str | None, follow: bool,
                 poll_interval: float):
        self.agency = agency
        self.params = params
        self.cursor = cursor
        self.follow = follow
        self.poll_interval = poll_interval

    def __iter__(self) -> Iterator[dict]:
        while True:
            page = self.agency.events_page(cursor=self.cursor, **self.params)
            yield from page["data"]
            pagination = page.get("pagination") or {}
            self.cursor = pagination.get("cursor") or self.cursor
            if pagination.get("has_more"):
                continue
            if not self.follow:
                return
            time.sleep(self.poll_interval)


class LiveEvents:
    """Events as they happen, from GET /events/stream (Server-Sent Events).

    When the server ends the stream (it does after its streams.max_seconds) or the
    connection drops, it reconnects after the server's ``retry:`` delay and resumes
    with Last-Event-ID, so no event is skipped or repeated; ``max_retries`` failed
    connections in a row raise NetworkError. ``last_event_id`` is the position (the
    feed's cursor: ``agency.events(cursor=...)`` continues from it too); without one the
    stream starts when it connects: at ``connect()`` or the first iteration.

    A server with too many streams open answers 503: with a known position the feed is
    polled instead until its Retry-After has passed (a resume after a break inside a
    polled page may repeat events of that page); on the first connection, without a
    position, the ServerError is raised. Iteration ends at ``deadline``
    (time.monotonic()). Close it, or use ``with``, to drop the connection.
    """

    def __init__(self, agency: Agency, types: list[str] | tuple[str, ...] | None = None,
                 last_event_id: str | None = None, *, deadline: float | None = None,
                 poll_interval: float = 1.0):
        self.agency = agency
        self.types = list(types or ())
        self.last_event_id = last_event_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.retry = 2.0  # seconds before reconnecting; the server's retry: replaces it
        self.response: requests.Response | None = None
        self._blocks: Iterator[dict] = iter(())

    def connect(self) -> LiveEvents:
        """Open the stream now, unless it is open; ``last_event_id`` is then the position."""
        if self.response is None:
            headers = {"Accept": "text/event-stream"}
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
            self.response = self.agency.request(
                "GET", "/events/stream", params={"type": ",".join(self.types) or None},
                headers=headers, stream=True, max_retries=0,
                timeout=max(0.01, min(self.agency.timeout, self._left())))
            if not self.response.headers.get("Content-Type", "").startswith("text/event-stream"):
                self.close()
                raise J1mskyError("GET /events/stream did not answer with an event stream")
            self._blocks = self._read_blocks(self.response)
            next(self._blocks, None)  # the opening block: retry: and the start position
        return self

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
            self.response = None

    def __enter__(self) -> LiveEvents:
        return self.connect()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def __iter__(self) -> Iterator[dict]:
        failures = 0
        while self._left() > 0:
            try:
                self.connect()
                failures = 0
                yield from self._messages()
                wait = self.retry
            except ServerError as error:
                if error.status != 503 or not self.last_event_id:
                    raise
                yield from self._poll(error.retry_after or self.retry)
                wait = 0
            except (NetworkError, requests.RequestException) as error:
                failures += 1
                if failures > self.agency.max_retries:
                    raise NetworkError(f"event stream: {error}") from error
                wait = min(self.retry * 2 ** (failures - 1), self.agency.backoff_max)
            finally:
                self.close()
            time.sleep(max(0.0, min(wait, self._left())))

    def _read_blocks(self, response: requests.Response) -> Iterator[dict]:
        """The SSE blocks of a response as {field: value} ({} for a ping); their
        ``retry:`` and ``id:`` take effect as each block ends."""
        fields: dict[str, str] = {}
        for raw in response.iter_lines():
            line = raw.decode("utf-8")
            if line:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "retry" and value.isdigit():
                    self.retry = int(value) / 1000
                elif name in ("id", "event"):
                    fields[name] = value
                elif name == "data":
                    fields["data"] = fields["data"] + "\n" + value if "data" in fields else value
                continue
            if "id" in fields:
                self.last_event_id = fields["id"]
            yield fields
            fields = {}

    def _messages(self) -> Iterator[dict]:
        """The events of the open connection, until the server ends it or the deadline."""
        for fields in self._blocks:
            if "data" in fields:
                yield json.loads(fields["data"])
            if self._left() <= 0:
                return

    def _poll(self, seconds: float) -> Iterator[dict]:
        """The feed from the position, for ``seconds`` (the stream refused us)."""
        until = time.monotonic() + seconds
        while True:
            page = self.agency.events_page(cursor=self.last_event_id, limit=100)
            yield from (event for event in page["data"]
                        if not self.types or event["type"] in self.types)
            self.last_event_id = page["pagination"].get("cursor") or self.last_event_id
            pause = min(until - time.monotonic(), self._left())
            if page["pagination"].get("has_more"):
                continue
            if pause <= 0:
                return
            time.sleep(min(self.poll_interval, pause))


class Events:
    """``agency.events``: call it for the feed by cursor (an EventStream, see
    ``__call__``), or ``stream()`` for events as they happen."""

    def __init__(self, agency: Agency):
        self.agency = agency

    def __call__(self, *, type: str | None = None, limit: int = 100, cursor: str | None = None,
                 follow: bool = False, poll_interval: float = 1.0) -> EventStream:
        """Events after ``cursor`` (default: from the first), oldest first; see EventStream."""
        return EventStream(self.agency, compact(type=type, limit=limit), cursor, follow,
                           poll_interval)

    def stream(self, types: list[str] | tuple[str, ...] | None = None,
               last_event_id: str | None = None, *, deadline: float | None = None) -> LiveEvents:
        """Events of ``types`` (default: all) after ``last_event_id`` (default: from now),
        as they happen, for ever (break to stop); see LiveEvents."""
        return LiveEvents(self.agency, types, last_event_id, deadline=deadline)


def q(segment: str) -> str:
    """One path segment, percent-encoded (an IPv6 address, an id)."""
    return quote(str(segment), safe="")


def compact(**fields: Any) -> dict:
    return {name: value for name, value in fields.items() if value is not None}


def query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def api_root(base_url: str) -> str:
    """``http://host:8080``, ``.../api`` or ``.../api/v4`` -> the URL API paths hang off."""
    base = base_url.rstrip("/")
    return base if re.search(r"/api(/v\d+)?$", base) else base + "/api"


class Agency:
    """A client of one J1MSKY service.

    ``max_retries``: retries after the first attempt (0: none). ``backoff_base`` and
    ``backoff_max``: seconds. ``circuit_breaker``: a CircuitBreaker, True for
    CircuitBreaker(threshold=5, timeout=60), or None. ``timeout``: seconds per HTTP
    attempt. ``session``: a requests.Session to use (the client closes only its own).
    Like a requests.Session, a client is meant for one thread: give each thread its own.
    """

    def __init__(self, api_key: str, base_url: str = "http://localhost:8080", *,
                 api_secret: str | None = None, timeout: float = 30, max_retries: int = 5,
                 backoff_base: float = 1.0, backoff_max: float = 60.0,
                 circuit_breaker: CircuitBreaker | bool | None = None,
                 session: requests.Session | None = None, user_agent: str = USER_AGENT):
        if not api_key:
            raise ValueError("api_key is required")
        self.api_key = api_key
        self.api_secret = api_secret
        self.api_url = api_root(base_url)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.circuit_breaker = CircuitBreaker() if circuit_breaker is True else \
            circuit_breaker or None
        self.session = session or requests.Session()
        self.owns_session = session is None
        self.user_agent = user_agent
        self.events = Events(self)

    def __repr__(self) -> str:
        return f"<Agency {self.api_url}>"

    def close(self) -> None:
        if self.owns_session:
            self.session.close()

    def __enter__(self) -> Agency:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the one way out -------------------------------------------------------------

    def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                idempotency_key: str | None = None, headers: dict | None = None,
                stream: bool = False, max_retries: int | None = None,
                timeout: float | None = None) -> requests.Response:
        """Send one API call (``path`` under the API root, e.g. ``/spawn``) with auth,
        signing, idempotency and retries; the 2xx Response, else a J1mskyError.

        ``body`` is serialised as compact JSON and those exact bytes are sent and signed.
        Writes carry ``idempotency_key`` (default: a new uuid4) on every attempt.
        ``max_retries`` and ``timeout`` override the client's for this call.
        """
        method = method.upper()
        url = f"{self.api_url}/{path.lstrip('/')}"
        query = urlencode({k: query_value(v) for k, v in (params or {}).items() if v is not None},
                          quote_via=quote)
        if query:
            url += "?" + query
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        sent = {"Authorization": f"Bearer {self.api_key}", "User-Agent": self.user_agent,
                "Accept": "application/json", **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/json"
        if method in WRITE_METHODS:
            sent["Idempotency-Key"] = idempotency_key or sent.get("Idempotency-Key") \
                or str(uuid.uuid4())
        attempt, failure = 0, None
        while True:
            try:
                return self._attempt(method, url, data, sent, stream, timeout or self.timeout)
            except CircuitOpenError as error:
                raise error from failure
            except J1mskyError as error:
                failure = error
            wait = self._retry_wait(failure, attempt, max_retries)
            if wait is None:
                raise failure
            time.sleep(wait)
            attempt += 1

    def _attempt(self, method: str, url: str, data: bytes, headers: dict, stream: bool,
                 timeout: float) -> requests.Response:
        breaker = self.circuit_breaker
        if breaker is not None:
            breaker.before_call()
        prepared = self.session.prepare_request(
            requests.Request(method, url, data=data or None, headers=headers))
        if self.api_secret:
            prepared.headers.update(self.signature(method, prepared.path_url, data))
        settings = self.session.merge_environment_settings(prepared.url, {}, stream, None, None)
        try:
            response = self.session.send(prepared, timeout=timeout, allow_redirects=False,
                                         **settings)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if breaker is not None:
                breaker.record_failure()
            raise NetworkError(f"{method} {prepared.path_url}: {exc}") from exc
        if breaker is not None:
            (breaker.record_failure if response.status_code >= 500 else breaker.record_success)()
        if response.status_code < 300:
            return response
        error = error_from_response(response)
        response.close()
        raise error

    def _retry_wait(self, error: J1mskyError, attempt: int,
                    max_retries: int | None = None) -> float | None:
        """Seconds to sleep before retrying, or None when this error is final."""
        in_progress = isinstance(error, Conflict) and "in progress" in error.message
        limit = self.max_retries if max_retries is None else max_retries
        if attempt >= limit or not (
                isinstance(error, NetworkError) or error.status in RETRY_STATUSES or in_progress):
            return None
        if error.retry_after is not None:
            if error.retry_after > self.backoff_max:
                return None  # an early retry would be refused again
            wait = error.retry_after
        else:
            wait = self.backoff_base * 2 ** attempt
        return min(wait + random.uniform(0, 0.1 * wait), self.backoff_max)

    def signature(self, method: str, path_url: str, body: bytes) -> dict:
        """X-Timestamp and X-Signature for a request (path_url as sent: path?query)."""
        path, _, query = path_url.partition("?")
        signed_path = unquote(path) + ("?" + query if query else "")
        timestamp = dt.datetime.now(dt.timezone.utc).isoformat()
        message = f"{timestamp}\n{method}\n{signed_path}\n{body.decode('utf-8')}"
        digest = hmac.new(self.api_secret.encode(), message.encode(), hashlib.sha256)
        return {"X-Timestamp": timestamp, "X-Signature": digest.hexdigest()}

    def _get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        return self.request(method, path, body=body).json()

    def _pages(self, path: str, params: dict) -> Iterator[dict]:
        """Every item of a paged list, following its cursor."""
        params = dict(params)
        while True:
            page = self._get(path, **params)
            yield from page["data"]
            pagination = page.get("pagination") or {}
            cursor = pagination.get("next_cursor") or pagination.get("cursor")
            if not pagination.get("has_more") or not cursor:
                return
            params.update(cursor=cursor, offset=None)

    # -- agents ----------------------------------------------------------------------

    def spawn(self, model: str | None = None, task: str | None = None, priority: str = "normal",
              timeout: int | None = None, privacy: dict | None = None) -> Agent:
        """POST /spawn: one agent (model None: the service picks one)."""
        return Agent(self, self._send("POST", "/spawn", compact(
            model=model, task=task, priority=priority, timeout=timeout, privacy=privacy)))

    def spawn_team(self, team: str, task: str, priority: str = "normal",
                   timeout: int | None = None, privacy: dict | None = None) -> Agent:
        """POST /spawn-team: a team's steps in order, as one agent."""
        return Agent(self, self._send("POST", "/spawn-team", compact(
            team=team, task=task, priority=priority, timeout=timeout, privacy=privacy)))

    def spawn_batch(self, agents: list[dict]) -> list[Agent]:
        """POST /spawn-batch: 1..50 spawn requests (dicts of spawn's fields), all or none."""
        answer = self._send("POST", "/spawn-batch", {"agents": list(agents)})
        return [Agent(self, data) for data in answer["agents"]]

    def get_agent(self, agent_id: str) -> Agent:
        """GET /agent/{id}."""
        return Agent(self, {"agent_id": agent_id}).refresh()

    def cancel(self, agent_id: str) -> dict:
        """DELETE /agent/{id}: {success, message, refund, status}; Conflict once finished."""
        return self._send("DELETE", f"/agent/{q(agent_id)}")

    def erase_agent_data(self, agent_id: str) -> dict:
        """DELETE /agent/{id}/data: erase task and result now, keeping the cost record."""
        return self._send("DELETE", f"/agent/{q(agent_id)}/data")

    def agents_page(self, *, status: str | None = None, model: str | None = None,
                    team: str | None = None, created_after: str | None = None,
                    created_before: str | None = None, cost_gt: float | None = None,
                    cost_lt: float | None = None, filter: dict | None = None,
                    sort: str | None = None, limit: int | None = None, offset: int | None = None,
                    cursor: str | None = None) -> dict:
        """GET /agents: one page, {data, pagination, links, meta}."""
        return self._get("/agents", status=status, model=model, team=team,
                         created_after=created_after, created_before=created_before,
                         cost_gt=cost_gt, cost_lt=cost_lt, filter=filter, sort=sort,
                         limit=limit, offset=offset, cursor=cursor)

    def list_agents(self, *, status: str | None = None, model: str | None = None,
                    team: str | None = None, created_after: str | None = None,
                    created_before: str | None = None, cost_gt: float | None = None,
                    cost_lt: float | None = None, filter: dict | None = None,
                    sort: str | None = None, limit: int = 100) -> Iterator[dict]:
        """Every agent matching the filters, page by page (``limit`` per page) by cursor."""
        return self._pages("/agents", compact(
            status=status, model=model, team=team, created_after=created_after,
            created_before=created_before, cost_gt=cost_gt, cost_lt=cost_lt, filter=filter,
            sort=sort, limit=limit))

    def active_agents(self) -> dict:
        """GET /agents/active: {agents, count, total_cost_today}."""
        return self._get("/agents/active")

    def export(self) -> Iterator[dict]:
        """GET /export: every agent record (admin), streamed from NDJSON."""
        with self.request("GET", "/export", stream=True) as response:
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    # -- events ----------------------------------------------------------------------

    def events_page(self, *, type: str | None = None, limit: int | None = None,
                    cursor: str | None = None) -> dict:
        """GET /events: one page, {data, pagination: {cursor, has_more}, links}."""
        return self._get("/events", type=type, limit=limit, cursor=cursor)

    # -- operations, orchestrator, billing -------------------------------------------

    def health(self) -> dict:
        """GET /health (any valid key)."""
        return self._get("/health")

    def system(self) -> dict:
        """GET /system: cpu_temp, load_average, memory_usage, uptime, disk_free, active_agents."""
        return self._get("/system")

    def metrics(self) -> str:
        """GET /metrics: Prometheus text."""
        return self.request("GET", "/metrics").text

    def rate_limits(self) -> dict:
        """GET /rate-limits: each provider's calls in the current hour."""
        return self._get("/rate-limits")

    def orchestrator_status(self) -> dict:
        """GET /orchestrator/status: budget, forecast, model mix, provider windows."""
        return self._get("/orchestrator/status")

    def recommend_model(self, task_type: str, complexity: str | None = None,
                        priority: str | None = None, estimated_tokens: int | None = None) -> dict:
        """POST /orchestrator/recommend-model."""
        return self._send("POST", "/orchestrator/recommend-model", compact(
            task_type=task_type, complexity=complexity, priority=priority,
            estimated_tokens=estimated_tokens))

    def billing_usage(self, start: str | dt.date | None = None, end: str | dt.date | None = None,
                      format: str = "json") -> dict | str:
        """GET /billing/usage: a dict, or the CSV text with ``format="csv"``."""
        response = self.request("GET", "/billing/usage",
                                params=compact(start=start, end=end, format=format))
        return response.text if format == "csv" else response.json()

    # -- webhooks --------------------------------------------------------------------

    def create_webhook(self, url: str, events: list[str], secret: str | None = None) -> dict:
        """POST /webhooks; a generated ``secret`` is in this answer only."""
        return self._send("POST", "/webhooks", compact(url=url, events=events, secret=secret))

    def list_webhooks(self) -> list[dict]:
        return self._get("/webhooks")["data"]

    def get_webhook(self, webhook_id: str) -> dict:
        return self._get(f"/webhooks/{q(webhook_id)}")

    def delete_webhook(self, webhook_id: str) -> dict:
        return self._send("DELETE", f"/webhooks/{q(webhook_id)}")

    def webhook_deliveries(self, webhook_id: str, limit: int | None = None) -> list[dict]:
        return self._get(f"/webhooks/{q(webhook_id)}/deliveries", limit=limit)["data"]

    def test_webhook(self, webhook_id: str) -> dict:
        """POST /webhooks/{id}/test: queue a signed webhook.test delivery."""
        return self._send("POST", f"/webhooks/{q(webhook_id)}/test")

    # -- keys ------------------------------------------------------------------------

    def create_key(self, name: str, scopes: list[str], *, signing: bool = False,
                   require_signature: bool = False,
                   max_concurrent_agents: int | None = None) -> dict:
        """POST /keys; ``key`` (and ``api_secret`` with signing) are in this answer only."""
        return self._send("POST", "/keys", compact(
            name=name, scopes=list(scopes), signing=signing, require_signature=require_signature,
            max_concurrent_agents=max_concurrent_agents))

    def list_keys(self) -> list[dict]:
        return self._get("/keys")["data"]

    def rotate_key(self, key_id: str) -> dict:
        """POST /keys/{id}/rotate: a new key; the old one works for the grace period."""
        return self._send("POST", f"/keys/{q(key_id)}/rotate")

    def revoke_key(self, key_id: str, reason: str | None = None, notify_user: bool = False) -> dict:
        return self._send("DELETE", f"/keys/{q(key_id)}",
                          compact(reason=reason, notify_user=notify_user))

    def unsuspend_key(self, key_id: str) -> dict:
        """POST /keys/{id}/unsuspend: lift a cost-spike suspension."""
        return self._send("POST", f"/keys/{q(key_id)}/unsuspend")

    # -- security and audit ----------------------------------------------------------

    def get_ip_whitelist(self) -> dict:
        return self._get("/security/ip-whitelist")

    def set_ip_whitelist(self, allowed_ips: list[str] | None = None, *,
                         enforce: bool | None = None, log_violations: bool | None = None,
                         trusted_proxies: list[str] | None = None) -> dict:
        """PUT /security/ip-whitelist: the fields given replace those in config.json."""
        return self._send("PUT", "/security/ip-whitelist", compact(
            allowed_ips=allowed_ips, enforce=enforce, log_violations=log_violations,
            trusted_proxies=trusted_proxies))

    def block_ip(self, ip: str, reason: str | None = None,
                 duration_hours: float | None = None) -> dict:
        """POST /security/block-ip (no duration: until unblocked)."""
        return self._send("POST", "/security/block-ip",
                          compact(ip=ip, reason=reason, duration_hours=duration_hours))

    def blocked_ips(self) -> list[dict]:
        return self._get("/security/blocked-ips")["data"]

    def unblock_ip(self, ip: str) -> dict:
        return self._send("DELETE", f"/security/blocked-ips/{q(ip)}")

    def set_audit(self, *, enabled: bool | None = None, log_level: str | None = None,
                  retention_days: int | None = None, include_request_body: bool | None = None,
                  include_response_body: bool | None = None,
                  events: list[str] | None = None) -> dict:
        """POST /security/audit: change the options given; {settings, changed}."""
        return self._send("POST", "/security/audit", compact(
            enabled=enabled, log_level=log_level, retention_days=retention_days,
            include_request_body=include_request_body,
            include_response_body=include_response_body, events=events))

    def audit_settings(self) -> dict:
        return self._get("/security/audit/settings")["settings"]

    def audit_page(self, *, event: str | None = None, severity: str | None = None,
                   api_key_id: str | None = None, since: str | None = None,
                   until: str | None = None, filter: dict | None = None, sort: str | None = None,
                   limit: int | None = None, offset: int | None = None,
                   cursor: str | None = None) -> dict:
        """GET /security/audit: one page of entries, newest first by default."""
        return self._get("/security/audit", event=event, severity=severity,
                         api_key_id=api_key_id, since=since, until=until, filter=filter,
                         sort=sort, limit=limit, offset=offset, cursor=cursor)

    def audit_log(self, *, event: str | None = None, severity: str | None = None,
                  api_key_id: str | None = None, since: str | None = None,
                  until: str | None = None, filter: dict | None = None, sort: str | None = None,
                  limit: int = 100) -> Iterator[dict]:
        """Every audit entry matching the filters, page by page by cursor."""
        return self._pages("/security/audit", compact(
            event=event, severity=severity, api_key_id=api_key_id, since=since, until=until,
            filter=filter, sort=sort, limit=limit))

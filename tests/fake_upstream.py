"""A real HTTP server speaking the Anthropic Messages and OpenAI Chat wire formats.

Tests point providers (or the official SDKs) at ``FakeUpstream().url`` and turn
knobs for latency, failures, hangs and token counts. Run as a script for
benchmarks: ``python tests/fake_upstream.py --port 0`` prints the URL.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):  # run as a script (for benchmarks): make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.local_server import LocalServer  # noqa: E402

PROTOCOLS = ("anthropic", "openai")
PATHS = {"/v1/messages": "anthropic", "/v1/chat/completions": "openai"}

ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error",
                    413: "request_too_large", 429: "rate_limit_error",
                    500: "api_error", 529: "overloaded_error"}
OPENAI_ERRORS = {400: ("invalid_request_error", None),
                 401: ("invalid_request_error", "invalid_api_key"),
                 403: ("invalid_request_error", "unsupported_country_region_territory"),
                 404: ("invalid_request_error", "model_not_found"),
                 429: ("requests", "rate_limit_exceeded")}

DEFAULT_KNOBS: dict[str, Any] = {
    "latency": 0.0, "fail_status": None, "fail_times": None, "retry_after": None,
    "input_tokens": None, "output_tokens": None, "text": None, "hang": False,
    "drop": False,  # read the request, then close the connection without an answer
}


def anthropic_error(status: int, message: str) -> dict:
    """Error body in Anthropic's format."""
    kind = ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def openai_error(status: int, message: str) -> dict:
    """Error body in OpenAI's format."""
    kind, code = OPENAI_ERRORS.get(status, ("server_error", None) if status >= 500
                                   else ("invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def message_text(content: Any) -> str:
    """Plain text of a message content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def count_tokens(text: str) -> int:
    """Deterministic token estimate: one per four characters, at least one."""
    return len(text) // 4 + 1


class FakeUpstream(LocalServer):
    """Threaded fake of both upstream APIs, with knobs and a request log."""

    NAME = "fake-upstream"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.reset()

    # knobs and log ---------------------------------------------------------
    def set(self, protocol: str | None = None, **knobs: Any) -> None:
        """Replace the knobs of one protocol (or both); unnamed knobs take defaults."""
        unknown = set(knobs) - set(DEFAULT_KNOBS)
        if unknown:
            raise TypeError(f"unknown knobs: {sorted(unknown)}")
        with self._lock:
            for name in self._protocols(protocol):
                self._knobs[name] = {**DEFAULT_KNOBS, **knobs}
                self._failures[name] = 0

    def reset(self) -> None:
        """Default knobs, empty request log."""
        with self._lock:
            self._knobs = {p: dict(DEFAULT_KNOBS) for p in PROTOCOLS}
            self._failures = {p: 0 for p in PROTOCOLS}
            self._log: list[dict] = []
            self._answered: list[dict] = []

    def requests(self, protocol: str | None = None) -> list[dict]:
        """Recorded requests: dicts of protocol, path, headers (lower-case), json."""
        with self._lock:
            return [r for r in self._log if protocol in (None, r["protocol"])]

    def answered(self) -> list[dict]:
        """Calls answered with usage (what a provider bills): protocol, model, tokens."""
        with self._lock:
            return list(self._answered)

    def _answer_sent(self, protocol: str, payload: dict) -> None:
        usage = payload["usage"]
        with self._lock:
            self._answered.append({
                "protocol": protocol, "model": payload["model"],
                "input_tokens": usage.get("input_tokens", usage.get("prompt_tokens")),
                "output_tokens": usage.get("output_tokens", usage.get("completion_tokens"))})

    def call_count(self, protocol: str | None = None) -> int:
        """Number of requests received (for one protocol or both)."""
        return len(self.requests(protocol))

    def _protocols(self, protocol: str | None) -> tuple[str, ...]:
        if protocol is None:
            return PROTOCOLS
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}")
        return (protocol,)

    def _record(self, protocol: str, path: str, headers: dict, body: Any) -> dict:
        """Log the request and return a snapshot of its knobs."""
        with self._lock:
            self._log.append({"protocol": protocol, "path": path,
                              "headers": headers, "json": body})
            return dict(self._knobs[protocol])

    def _take_failure(self, protocol: str, knobs: dict) -> bool:
        """True when this request should fail with knobs['fail_status']."""
        if knobs["fail_status"] is None:
            return False
        with self._lock:
            if knobs["fail_times"] is not None and self._failures[protocol] >= knobs["fail_times"]:
                return False
            self._failures[protocol] += 1
            return True

    def _hanging(self, protocol: str) -> bool:
        with self._lock:
            return bool(self._knobs[protocol]["hang"]) and not self._stopping.is_set()

    def _wait(self, protocol: str, knobs: dict) -> bool:
        """Apply latency and hang; False when the server is stopping."""
        if knobs["latency"] and self._stopping.wait(knobs["latency"]):
            return False
        while self._hanging(protocol):
            self._stopping.wait(0.05)
        return not self._stopping.is_set()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections end on their own
    server_version = "FakeUpstream/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def do_POST(self) -> None:
        """Dispatch to the protocol named by the path."""
        upstream: FakeUpstream = self.server.owner  # type: ignore[attr-defined]
        path = urlsplit(self.path).path  # origin form, or absolute form through a proxy
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        protocol = PATHS.get(path)
        if protocol is None:
            self._send(404, {"error": {"message": f"no route for {path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        knobs = upstream._record(protocol, path, headers, body)
        if not upstream._wait(protocol, knobs) or knobs["drop"]:
            self.close_connection = True
            return
        check, answer = ((_check_anthropic, _answer_anthropic) if protocol == "anthropic"
                         else (_check_openai, _answer_openai))
        problem = check(headers, body)
        if problem is None and upstream._take_failure(protocol, knobs):
            problem = (knobs["fail_status"], _failure_message(protocol, knobs, headers))
        if problem is not None:
            self._fail(protocol, *problem, knobs["retry_after"])
            return
        payload, headers = answer(body, knobs)
        self._send(200, payload, headers)
        upstream._answer_sent(protocol, payload)

    def _fail(self, protocol: str, status: int, message: str, retry_after: Any) -> None:
        maker = anthropic_error if protocol == "anthropic" else openai_error
        extra = {} if retry_after is None else {"retry-after": str(retry_after)}
        self._send(status, maker(status, message), extra)

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def bearer(headers: dict) -> str:
    """The token of an ``Authorization: Bearer`` header, else ''."""
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth.startswith("Bearer ") else ""


def _failure_message(protocol: str, knobs: dict, headers: dict) -> str:
    """Message of an injected failure; OpenAI's 401 echoes the key, as the real one does."""
    if protocol == "openai" and knobs["fail_status"] == 401:
        return f"Incorrect API key provided: {bearer(headers)}"
    return "fake upstream failure"


def _check_anthropic(headers: dict, body: Any) -> tuple[int, str] | None:
    """Status and message when the request is refused, else None."""
    # The API takes the key as x-api-key or, as recent official SDKs send it, a Bearer token.
    if not (headers.get("x-api-key", "").strip() or bearer(headers)):
        return 401, "x-api-key header is required"
    if not headers.get("anthropic-version"):
        return 400, "anthropic-version: header is required"
    problem = _missing(body, ("model", "max_tokens", "messages"))
    return None if problem is None else (400, problem)


def _check_openai(headers: dict, body: Any) -> tuple[int, str] | None:
    """Status and message when the request is refused, else None."""
    if not bearer(headers):
        return 401, "Incorrect API key provided"
    problem = _missing(body, ("model", "messages"))
    return None if problem is None else (400, problem)


def _answer_anthropic(body: dict, knobs: dict) -> tuple[dict, dict]:
    """A Messages API response body and headers."""
    text, n_in, n_out = _reply(body, knobs, extra=message_text(body.get("system")))
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
        "model": body["model"], "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": n_in, "output_tokens": n_out},
    }, {"request-id": f"req_{uuid.uuid4().hex[:24]}"}


def _answer_openai(body: dict, knobs: dict) -> tuple[dict, dict]:
    """A Chat Completions response body and headers."""
    text, n_in, n_out = _reply(body, knobs)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
        "created": int(time.time()), "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": n_in, "completion_tokens": n_out,
                  "total_tokens": n_in + n_out},
    }, {"x-request-id": f"req_{uuid.uuid4().hex[:24]}"}


def _missing(body: Any, fields: tuple[str, ...]) -> str | None:
    """Validation message for a body lacking a required field, else None."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    for name in fields:
        if name not in body:
            return f"{name}: Field required"
    return None


def _reply(body: dict, knobs: dict, extra: str = "") -> tuple[str, int, int]:
    """Reply text and token counts, from the knobs or derived from the prompt."""
    messages = body.get("messages") or []
    prompt = "".join(message_text(m.get("content")) for m in messages if isinstance(m, dict))
    last_user = next((message_text(m.get("content")) for m in reversed(messages)
                      if isinstance(m, dict) and m.get("role") == "user"), "")
    text = knobs["text"] if knobs["text"] is not None else "fake reply: " + last_user[:200]
    n_in = knobs["input_tokens"]
    n_out = knobs["output_tokens"]
    return (text, count_tokens(extra + prompt) if n_in is None else n_in,
            count_tokens(text) if n_out is None else n_out)


FakeUpstream.HANDLER = _Handler


def main() -> None:
    """Serve until killed, printing the URL first."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeUpstream(args.host, args.port).start()
    fake.set(latency=args.latency)
    print(fake.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()

"""A real HTTP server that receives J1MSKY's webhook deliveries (CONTRACT.md §8).

Tests register ``receiver.url + "/hook"`` as a webhook URL, tell the receiver
the secret with ``expect_secret``, and then inspect what arrived. Every
delivery is verified with the ``standardwebhooks`` library (the reference
implementation of Standard Webhooks) and recorded whether or not it verified;
``strict=True`` makes the receiver answer 400 to deliveries it cannot verify.
Knobs per path make it answer with an error status, hang, answer slowly or
redirect. ``sign`` is an independent implementation of the contract's
signature, for cross-checks.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.local_server import LocalServer

SECRET_PREFIX = "whsec_"
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
DEFAULT_KNOBS: dict[str, Any] = {
    "status": 200, "fail_times": None, "hang": False, "delay": 0.0,
    "redirect_to": None, "strict": False,
}


# signing (independent of the library) --------------------------------------
def secret_key(secret: str | bytes) -> bytes:
    """HMAC key of a secret: the base64-decoded part of ``whsec_…``, else its UTF-8 bytes."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX):]
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    return secret.encode("utf-8")


def sign(secret: str | bytes, msg_id: str, timestamp: int | float | str,
         body: bytes | str) -> str:
    """The ``webhook-signature`` value ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""
    if not isinstance(timestamp, str):
        timestamp = str(int(timestamp))
    data = body.encode("utf-8") if isinstance(body, str) else body
    to_sign = f"{msg_id}.{timestamp}.".encode() + data
    digest = hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str | bytes, body: bytes | str, msg_id: str | None = None,
                   timestamp: int | float | str | None = None) -> dict[str, str]:
    """Standard Webhooks headers (plus content-type) for a delivery of ``body``."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(time.time())) if timestamp is None else str(int(float(timestamp)))
    return {"webhook-id": msg_id, "webhook-timestamp": timestamp,
            "webhook-signature": sign(secret, msg_id, timestamp, body),
            "content-type": "application/json"}


def library_webhook(secret: str | bytes) -> Webhook:
    """A ``standardwebhooks`` verifier for a secret as the contract reads it.

    The library base64-decodes any *string* secret (after stripping ``whsec_``)
    but uses *bytes* as the raw HMAC key, so a plain secret is passed as its
    UTF-8 bytes.
    """
    if isinstance(secret, str) and not secret.startswith(SECRET_PREFIX):
        secret = secret.encode("utf-8")
    return Webhook(secret)


def verify(secret: str | bytes | None, body: bytes, headers: dict[str, str]) -> str | None:
    """None when the library accepts the delivery, else the reason it does not."""
    if secret is None:
        return "no secret registered for this path"
    try:
        library_webhook(secret).verify(body, headers, json_parse=False)
    except Exception as exc:  # the library raises ValueError etc. on malformed input too
        return f"{type(exc).__name__}: {exc}"
    return None


# the receiver ----------------------------------------------------------------
class WebhookReceiver(LocalServer):
    """Threaded webhook receiver with per-path secrets, knobs and a delivery log."""

    NAME = "webhook-receiver"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 secret: str | bytes | None = None, strict: bool = False) -> None:
        super().__init__(host, port)
        self._arrived = threading.Condition(self._lock)
        self._default_secret = secret
        self._default_strict = strict
        self._secrets: dict[str, str | bytes | None] = {}
        self.reset()

    # configuration ---------------------------------------------------------
    def expect_secret(self, path: str | None, secret: str | bytes | None) -> None:
        """Verify deliveries to ``path`` (None: every path without its own) with ``secret``."""
        with self._lock:
            if path is None:
                self._default_secret = secret
            else:
                self._secrets[path] = secret

    def set(self, path: str | None = None, **knobs: Any) -> None:
        """Replace the knobs of one path (None: all paths, dropping per-path knobs);
        unnamed knobs take defaults.

        ``status`` is answered to the next ``fail_times`` requests (None: all of
        them), then 200; ``redirect_to`` answers a redirect (``status`` if it is
        a 3xx code, else 307) with that Location instead; ``delay`` sleeps before
        answering; ``hang`` holds the request unanswered until released;
        ``strict`` answers 400 to deliveries that do not verify.
        """
        unknown = set(knobs) - set(DEFAULT_KNOBS)
        if unknown:
            raise TypeError(f"unknown knobs: {sorted(unknown)}")
        entry = {"knobs": {**DEFAULT_KNOBS, "strict": self._default_strict, **knobs},
                 "failures": 0}
        with self._lock:
            if path is None:
                self._default = entry
                self._knobs.clear()
            else:
                self._knobs[path] = entry

    def release(self) -> None:
        """Let every hung request through, leaving the other knobs as they are."""
        with self._lock:
            for entry in (self._default, *self._knobs.values()):
                entry["knobs"]["hang"] = False

    def reset(self) -> None:
        """Default knobs (hung requests are released), empty log; secrets are kept."""
        with self._lock:
            self._default = {"knobs": {**DEFAULT_KNOBS, "strict": self._default_strict},
                             "failures": 0}
            self._knobs: dict[str, dict] = {}
            self._log: list[dict] = []

    # the log ---------------------------------------------------------------
    def deliveries(self, path: str | None = None, verified_only: bool = False) -> list[dict]:
        """Recorded requests, oldest first: dicts of method, path, query, headers
        (lower-case names), body (bytes), json (or None), verified, error,
        received_at (time.monotonic()), status (None until answered, and for
        requests never answered) and responded_at."""
        with self._lock:
            return self._matching(path, verified_only)

    def count(self, path: str | None = None, verified_only: bool = False) -> int:
        """Number of deliveries received (to one path or any)."""
        return len(self.deliveries(path, verified_only))

    def wait_for(self, count: int, path: str | None = None, timeout: float = 10,
                 verified_only: bool = False) -> list[dict]:
        """Block until ``count`` deliveries have arrived; return all matching ones.

        Raises AssertionError (listing what did arrive) on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                got = self._matching(path, verified_only)
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
        summary = [(d["path"], d["status"], d["verified"], d["error"]) for d in got]
        raise AssertionError(
            f"expected {count} deliveries to {path or 'any path'}"
            f"{' (verified)' if verified_only else ''} within {timeout}s, "
            f"got {len(got)}: {summary}")

    def _matching(self, path: str | None, verified_only: bool) -> list[dict]:
        return [dict(d) for d in self._log
                if path in (None, d["path"]) and (d["verified"] or not verified_only)]

    # used by the handler ---------------------------------------------------
    def _secret_for(self, path: str) -> str | bytes | None:
        with self._lock:
            return self._secrets.get(path, self._default_secret)

    def _entry(self, path: str) -> dict:
        return self._knobs.get(path, self._default)

    def _record(self, record: dict) -> dict:
        """Log the delivery, wake waiters, return a snapshot of the path's knobs."""
        with self._arrived:
            self._log.append(record)
            self._arrived.notify_all()
            return dict(self._entry(record["path"])["knobs"])

    def _answered(self, record: dict, status: int | None) -> None:
        with self._lock:
            record["status"] = status
            record["responded_at"] = time.monotonic()

    def _hanging(self, path: str) -> bool:
        with self._lock:
            return bool(self._entry(path)["knobs"]["hang"]) and not self._stopping.is_set()

    def _wait(self, path: str, knobs: dict) -> bool:
        """Apply delay and hang; False when the server is stopping."""
        if knobs["delay"] and self._stopping.wait(knobs["delay"]):
            return False
        while self._hanging(path):
            self._stopping.wait(0.02)
        return not self._stopping.is_set()

    def _response(self, path: str, verified: bool) -> tuple[int, str | None]:
        """Status (and redirect Location) to answer, consuming one failure if due."""
        with self._lock:
            entry = self._entry(path)
            knobs = entry["knobs"]
            if knobs["strict"] and not verified:
                return 400, None
            special = knobs["redirect_to"] is not None or knobs["status"] != 200
            if not special or (knobs["fail_times"] is not None
                               and entry["failures"] >= knobs["fail_times"]):
                return 200, None
            entry["failures"] += 1
            if knobs["redirect_to"] is not None:
                status = knobs["status"] if knobs["status"] in REDIRECT_STATUSES else 307
                return status, knobs["redirect_to"]
            return knobs["status"], None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections end on their own
    server_version = "WebhookReceiver/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def do_POST(self) -> None:
        """Record, verify, then answer as the path's knobs say."""
        receiver: WebhookReceiver = self.server.owner  # type: ignore[attr-defined]
        path, _, query = self.path.partition("?")
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        error = verify(receiver._secret_for(path), body, headers)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record = {"method": "POST", "path": path, "query": query, "headers": headers,
                  "body": body, "json": parsed, "verified": error is None, "error": error,
                  "received_at": time.monotonic(), "status": None, "responded_at": None}
        knobs = receiver._record(record)
        if not receiver._wait(path, knobs):
            self.close_connection = True
            return
        status, location = receiver._response(path, error is None)
        receiver._answered(record, status)
        payload = json.dumps({"ok": 200 <= status < 300, "status": status,
                              "error": error}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        if location is not None:
            self.send_header("location", location)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        """Only POST is a delivery."""
        self.send_response(405)
        self.send_header("allow", "POST")
        self.send_header("content-length", "0")
        self.end_headers()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))


WebhookReceiver.HANDLER = _Handler


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A started WebhookReceiver on a free port, stopped after the test."""
    with WebhookReceiver() as receiver:
        yield receiver

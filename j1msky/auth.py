"""Who is calling: bearer keys, scopes, HMAC request signing with replay refusal."""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import sqlite3

from flask import current_app, g, request

from . import idempotency, ipguard
from .config import current as current_config
from .db import get_db, transaction
from .errors import APIError
from .services import clock, keys

KEY_FORMAT = re.compile(r"^(live|staging|dev)_sk_[A-Za-z0-9_-]{20,100}$")


def master_secret() -> bytes:
    return current_app.extensions["j1msky_master"]


def presented_key(legacy: bool) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    if legacy:
        return request.headers.get("X-API-Key", "").strip() or None
    return None


def load_caller(legacy: bool = False) -> sqlite3.Row:
    """The calling key's row, or 401 saying why not."""
    token = presented_key(legacy)
    if not token:
        raise APIError(401, "Missing API key: send 'Authorization: Bearer <key>'")
    return check_key(token)


def check_key(token: str) -> sqlite3.Row:
    """The row of an active key of this environment, or 401 saying why not (the API and
    the console's sign-in both ask this)."""
    if not KEY_FORMAT.match(token):
        raise APIError(401, "Invalid API key")
    row = keys.find_by_key(get_db(), token)
    if row is None:
        raise APIError(401, "Invalid API key")
    key_state = keys.state(row)
    if key_state != "active":
        raise APIError(401, f"API key {key_state}")
    env = current_config()["environment"]
    if not token.startswith(env + "_sk_"):
        raise APIError(401, f"API key is not for the '{env}' environment")
    return row


def signature_message(timestamp: str) -> bytes:
    path = request.path
    if request.query_string:
        path += "?" + request.query_string.decode("latin-1")
    body = request.get_data(cache=True).decode("utf-8", "replace")
    return f"{timestamp}\n{request.method}\n{path}\n{body}".encode()


def check_signature(row: sqlite3.Row) -> None:
    """Verify X-Timestamp/X-Signature when required or sent; refuse stale and replayed ones."""
    timestamp = request.headers.get("X-Timestamp")
    signature = request.headers.get("X-Signature")
    required = bool(row["require_signature"]) or current_config()["security"]["require_signed_requests"]
    if not required and not (timestamp or signature):
        return
    if not timestamp or not signature:
        raise APIError(401, "Signed request required: send X-Timestamp and X-Signature")
    if row["signing_salt"] is None:
        raise APIError(401, "This API key has no signing secret; create one with signing")
    try:
        sent_at = clock.parse(timestamp)
    except ValueError:
        raise APIError(401, "X-Timestamp must be an ISO 8601 time") from None
    window = current_config()["security"]["signature_window_seconds"]
    if abs((clock.now() - sent_at).total_seconds()) > window:
        raise APIError(401, f"Request timestamp is more than {int(window)} seconds off")
    secret = keys.signing_secret(master_secret(), row["signing_salt"])
    expected = hmac.new(secret.encode(), signature_message(timestamp), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        raise APIError(401, "Invalid request signature")
    remember_signature(signature)


def remember_signature(signature: str) -> None:
    digest = hashlib.sha256(signature.strip().lower().encode()).hexdigest()
    try:
        get_db().execute("INSERT INTO seen_signatures (signature_hash, seen_at) VALUES (?, ?)",
                         (digest, clock.now_iso()))
    except sqlite3.IntegrityError:
        raise APIError(401, "Request signature already used (replay)") from None


def purge_signatures(conn: sqlite3.Connection, window_seconds: float) -> int:
    """Forget signatures older than twice the window: their timestamps are refused anyway."""
    cutoff = clock.iso(clock.now() - dt.timedelta(seconds=2 * window_seconds))
    return conn.execute("DELETE FROM seen_signatures WHERE seen_at < ?", (cutoff,)).rowcount


def authenticate(scope: str | None, legacy: bool = False) -> sqlite3.Row:
    """Set g.key to the caller's key row if it may use `scope` (None: any valid key)."""
    try:
        row = load_caller(legacy)
        check_signature(row)
    except APIError as exc:
        if exc.status == 401 and presented_key(legacy):
            ipguard.auth_failed()  # a wrong credential; repeated ones block the address
        raise
    if scope is not None and scope not in row["scopes"].split():
        raise APIError(403, f"API key lacks the '{scope}' scope")
    keys.touch(get_db(), row)
    g.key = row
    audit_key_use()
    return row


def audit_key_use() -> None:
    """api.key.used, recorded only at the verbose audit level (a write per request)."""
    config = current_config()
    if config["audit"]["log_level"] != "verbose":  # the only level that records key use
        return
    from .api.audit import record_request  # the audit blueprint imports this module
    from .services import audit
    if audit.wanted(config, "api.key.used", "info"):
        with transaction(get_db()) as conn:
            record_request("api.key.used", conn=conn, config=config,
                           details={"method": request.method, "path": request.path})


def require_scope(scope: str | None, legacy: bool = False):
    """Mark a view as needing a valid key carrying `scope` (None: any valid key).

    The check itself runs in before_request (authenticate_request), ahead of the rate
    limiter, so per-key limits know the key. Writes run under their Idempotency-Key.
    """
    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            return idempotency.run(view, *args, **kwargs)
        wrapped.required_scope = scope
        wrapped.legacy_auth = legacy
        return wrapped
    return decorator


def authenticate_request() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    if view is not None and hasattr(view, "required_scope"):
        authenticate(view.required_scope, view.legacy_auth)


def init_app(app) -> None:
    app.before_request(authenticate_request)

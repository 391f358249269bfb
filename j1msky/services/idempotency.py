"""Idempotency keys (Stripe's semantics), scoped to the calling API key, kept 24 hours."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from dataclasses import dataclass

from ..db import transaction
from ..errors import APIError
from . import clock

TTL = dt.timedelta(hours=24)
# Refusals before execution and server errors are not stored: a retry runs again.
NOT_STORED = {400, 401, 403, 429}


@dataclass
class Stored:
    status: int
    body: str
    headers: dict


def parse_header(value: str) -> str:
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= 255:
        raise APIError(400, "Idempotency-Key must be 1 to 255 characters")
    return key


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def claim(conn: sqlite3.Connection, key_id: str, idem_key: str, fp: str) -> Stored | None:
    """Mark the key executing and return None, or return the stored answer, or 409.

    The mark answers nobody, so it commits crash-safe only: the commit that stores the
    answer syncs the log with it, and a mark a power cut keeps is cleared at start."""
    now = clock.now()
    with transaction(conn, sync=False):
        row = conn.execute("SELECT * FROM idempotency_keys WHERE key_id = ? AND idem_key = ?",
                           (key_id, idem_key)).fetchone()
        if row is not None and row["expires_at"] <= clock.iso(now):
            conn.execute("DELETE FROM idempotency_keys WHERE key_id = ? AND idem_key = ?",
                         (key_id, idem_key))
            row = None
        if row is None:
            conn.execute("INSERT INTO idempotency_keys (key_id, idem_key, fingerprint, state,"
                         " created_at, expires_at) VALUES (?, ?, ?, 'executing', ?, ?)",
                         (key_id, idem_key, fp, clock.iso(now), clock.iso(now + TTL)))
            return None
    if row["fingerprint"] != fp:
        raise APIError(409, "Idempotency key payload mismatch")
    if row["state"] == "executing":
        raise APIError(409, "Request with this idempotency key is in progress")
    return Stored(row["status_code"], row["response_body"], json.loads(row["headers"]))


def store(conn: sqlite3.Connection, key_id: str, idem_key: str, status: int, body: str,
          headers: dict) -> None:
    conn.execute("UPDATE idempotency_keys SET state = 'done', status_code = ?, response_body = ?,"
                 " headers = ? WHERE key_id = ? AND idem_key = ?",
                 (status, body, json.dumps(headers), key_id, idem_key))


def release(conn: sqlite3.Connection, key_id: str, idem_key: str) -> None:
    """Forget a key whose request was not stored (crash-safe only, as the mark)."""
    with transaction(conn, sync=False):
        conn.execute("DELETE FROM idempotency_keys WHERE key_id = ? AND idem_key = ?"
                     " AND state = 'executing'", (key_id, idem_key))


def purge_expired(conn: sqlite3.Connection) -> int:
    return conn.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?",
                        (clock.now_iso(),)).rowcount

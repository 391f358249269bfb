"""API keys: creation, lookup by hash, rotation with grace, revocation, signing secrets."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time

from ..db import after_commit
from ..errors import APIError
from . import audit, clock, events

SCOPES = ("agents:read", "agents:write", "billing:read", "admin:write")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_master_secret(instance_path: str) -> bytes:
    """The instance's master secret (0600 file), made on first use; derives signing secrets."""
    path = os.path.join(instance_path, "master.key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as fh:
            return bytes.fromhex(fh.read().decode().strip())
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.hex())
    return secret


def signing_secret(master: bytes, salt: str) -> str:
    """A key's api_secret: derived, never stored."""
    return "sig_" + hmac.new(master, salt.encode(), hashlib.sha256).hexdigest()


def new_key_values(env: str) -> tuple[str, str]:
    key = f"{env}_sk_{secrets.token_urlsafe(32)}"
    return "key_" + secrets.token_hex(8), key


def create_key(conn: sqlite3.Connection, *, env: str, name: str, scopes: list[str],
               master: bytes, signing: bool = False, require_signature: bool = False,
               max_concurrent: int | None = None, expires_in_days: int | None = None) -> dict:
    """Store a new key's hash; return the key (and api_secret) for showing once."""
    key_id, key = new_key_values(env)
    salt = secrets.token_hex(16) if (signing or require_signature) else None
    expires_at = (clock.iso(clock.now() + dt.timedelta(days=expires_in_days))
                  if expires_in_days else None)
    conn.execute(
        "INSERT INTO api_keys (id, name, prefix, key_hash, scopes, signing_salt,"
        " require_signature, max_concurrent, created_at, expires_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?)",
        (key_id, name, key[: len(env) + 8], hash_key(key), " ".join(sorted(set(scopes))),
         salt, int(require_signature), max_concurrent, clock.now_iso(), expires_at))
    return {**public_view(get_key(conn, key_id)), "key": key,
            "api_secret": signing_secret(master, salt) if salt else None}


def create_from_request(conn: sqlite3.Connection, *, env: str, master: bytes,
                        req: dict) -> dict:
    """create_key for a loaded KeyCreateRequest (the API's and the console's form)."""
    return create_key(conn, env=env, name=req["name"], scopes=req["scopes"], master=master,
                      signing=req["signing"], require_signature=req["require_signature"],
                      max_concurrent=req["max_concurrent_agents"],
                      expires_in_days=req["expires_in_days"])


def get_key(conn: sqlite3.Connection, key_id: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        raise APIError(404, f"API key '{key_id}' not found")
    return row


class KeyCache:
    """Key rows by hash for a moment, so most requests skip a query.

    Every change through this process (revoke, rotate) clears it at once; a change made
    by another process (the CLI) is seen within TTL seconds. Expiry is still decided per
    request from the row's expires_at."""

    TTL = 2.0

    def __init__(self):
        self.rows: dict[str, tuple[float, sqlite3.Row | None]] = {}
        self.lock = threading.Lock()

    def get(self, conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
        digest = hash_key(key)
        now = time.monotonic()
        cached = self.rows.get(digest)
        if cached is not None and now - cached[0] < self.TTL:
            return cached[1]
        row = conn.execute("SELECT * FROM api_keys WHERE key_hash = ?", (digest,)).fetchone()
        with self.lock:
            if len(self.rows) > 10_000:  # garbage keys must not grow it without bound
                self.rows.clear()
            self.rows[digest] = (now, row)
        return row

    def clear(self) -> None:
        with self.lock:
            self.rows.clear()


cache = KeyCache()


def find_by_key(conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
    return cache.get(conn, key)


def state(row: sqlite3.Row, now: str | None = None) -> str:
    """active | revoked | expired."""
    if row["revoked_at"]:
        return "revoked"
    if row["expires_at"] and row["expires_at"] <= (now or clock.now_iso()):
        return "expired"
    return "active"


def suspended(row: sqlite3.Row) -> bool:
    """Cost spike protection holds the key back from spawning (the console signs it out)."""
    return bool(row["suspended_until"]) and row["suspended_until"] > clock.now_iso()


def public_view(row: sqlite3.Row) -> dict:
    """What the API and CLI show of a key: never the hash or the salt."""
    return {
        "key_id": row["id"], "name": row["name"], "prefix": row["prefix"],
        "scopes": row["scopes"].split(), "status": state(row),
        "signing": row["signing_salt"] is not None,
        "require_signature": bool(row["require_signature"]),
        "max_concurrent_agents": row["max_concurrent"],
        "created_at": clock.iso_out(row["created_at"]),
        "expires_at": clock.iso_out(row["expires_at"]),
        "revoked_at": clock.iso_out(row["revoked_at"]),
        "revoke_reason": row["revoke_reason"], "rotated_to": row["rotated_to"],
        "last_used_at": clock.iso_out(row["last_used_at"]),
        "suspended_until": clock.iso_out(row["suspended_until"]),
        "suspended_reason": row["suspended_reason"],
    }


def list_keys(conn: sqlite3.Connection) -> list[dict]:
    return [public_view(r) for r in conn.execute("SELECT * FROM api_keys ORDER BY created_at, id")]


def rotate_key(conn: sqlite3.Connection, key_id: str, *, env: str, master: bytes,
               grace_hours: float) -> dict:
    """A new key with the same scopes; the old one expires after the grace period."""
    old = get_key(conn, key_id)
    if state(old) != "active":
        raise APIError(409, f"API key '{key_id}' is {state(old)} and cannot be rotated")
    new = create_key(conn, env=env, name=old["name"], scopes=old["scopes"].split(), master=master,
                     signing=old["signing_salt"] is not None,
                     require_signature=bool(old["require_signature"]),
                     max_concurrent=old["max_concurrent"])
    grace_end = clock.iso(clock.now() + dt.timedelta(hours=grace_hours))
    conn.execute("UPDATE api_keys SET expires_at = MIN(COALESCE(expires_at, ?), ?), rotated_to = ?"
                 " WHERE id = ?", (grace_end, grace_end, new["key_id"], key_id))
    after_commit(conn, cache.clear)
    return {**new, "replaces": key_id, "old_key_expires_at": clock.iso_out(grace_end)}


def revoke_key(conn: sqlite3.Connection, key_id: str, reason: str | None = None,
               notify_user: bool = False) -> dict:
    """Revoke at once; revoking a revoked key is a conflict."""
    row = get_key(conn, key_id)
    if row["revoked_at"]:
        raise APIError(409, f"API key '{key_id}' is already revoked")
    conn.execute("UPDATE api_keys SET revoked_at = ?, revoke_reason = ?, notify_user = ?"
                 " WHERE id = ?", (clock.now_iso(), reason, int(notify_user), key_id))
    revoked = public_view(get_key(conn, key_id))
    after_commit(conn, cache.clear)
    events.emit(conn, "key.revoked", {"key_id": key_id, "name": revoked["name"],
                                      "reason": reason, "notify_user": notify_user})
    return revoked


_touched: dict[str, float] = {}


def touch(conn: sqlite3.Connection, row: sqlite3.Row, every_seconds: int = 60) -> None:
    """Record last use, at most once a minute per key (keeps reads write-free)."""
    now = time.monotonic()
    if now - _touched.get(row["id"], -every_seconds) < every_seconds:
        return
    _touched[row["id"]] = now
    conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (clock.now_iso(), row["id"]))


def suspend_on_cost_spike(conn: sqlite3.Connection, config: dict, key_id: str) -> bool:
    """Suspend a key from spawning for an hour once its last hour's spend passes
    security.cost_spike_per_hour; True when it was suspended just now."""
    now = clock.now()
    threshold = round(config["security"]["cost_spike_per_hour"] * 1_000_000)
    # Two index searches (key_status, key_completed) rather than one OR that scans
    # every agent the key ever ran.
    spent = conn.execute(
        "SELECT (SELECT coalesce(sum(actual_micros), 0) FROM agents"
        "        WHERE key_id = :key AND status = 'running')"
        "     + (SELECT coalesce(sum(actual_micros), 0) FROM agents"
        "        WHERE key_id = :key AND completed_at >= :since)",
        {"key": key_id, "since": clock.iso(now - dt.timedelta(hours=1))}).fetchone()[0]
    if spent <= threshold:
        return False
    reason = (f"cost spike: ${spent / 1_000_000:.2f} spent in the last hour, over the"
              f" ${threshold / 1_000_000:g} limit")
    suspended = conn.execute(
        "UPDATE api_keys SET suspended_until = ?, suspended_reason = ? WHERE id = ?"
        " AND (suspended_until IS NULL OR suspended_until <= ?)",
        (clock.iso(now + dt.timedelta(hours=1)), reason, key_id, clock.iso(now))).rowcount
    if suspended:
        details = {"kind": "cost_spike", "key_id": key_id, "spend_last_hour": spent / 1_000_000,
                   "limit": config["security"]["cost_spike_per_hour"]}
        events.emit(conn, "security.violation", details)
        audit.record(conn, config, "security.violation", severity="critical",
                     api_key_id=key_id, resource={"type": "api_key", "id": key_id},
                     details=details)
    return bool(suspended)


def unsuspend(conn: sqlite3.Connection, key_id: str) -> dict:
    """Lift a cost spike suspension."""
    get_key(conn, key_id)
    conn.execute("UPDATE api_keys SET suspended_until = NULL, suspended_reason = NULL"
                 " WHERE id = ?", (key_id,))
    after_commit(conn, cache.clear)
    return public_view(get_key(conn, key_id))

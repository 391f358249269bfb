"""Console sessions and sign-in links: random tokens in the browser, only hashes stored.

A session lives while its key stays usable (active, not suspended), it is used within the
idle timeout, and its absolute lifetime has not run out (config.json `dashboard`)."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import sqlite3

from . import clock, keys

LINK_MINUTES = 10
TOUCH_SECONDS = 60  # last_seen_at is rewritten at most this often (reads stay write-free)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def key_usable(key: sqlite3.Row | None) -> bool:
    return key is not None and keys.state(key) == "active" and not keys.suspended(key)


def start(conn: sqlite3.Connection, key_id: str, settings: dict, *, ip: str | None,
          user_agent: str | None) -> str:
    """A new session for the key; returns the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    lifetime = dt.timedelta(hours=settings["session_lifetime_hours"])
    conn.execute("INSERT INTO console_sessions (id_hash, key_id, created_at, last_seen_at,"
                 " expires_at, ip_address, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (digest(token), key_id, clock.iso(now), clock.iso(now),
                  clock.iso(now + lifetime), ip, (user_agent or "")[:300] or None))
    return token


def cutoffs(settings: dict, now: dt.datetime) -> tuple[str, str]:
    """(now, idle limit): a session ends when expires_at <= now or last_seen_at <= idle limit."""
    return clock.iso(now), clock.iso(now - dt.timedelta(minutes=settings["idle_timeout_minutes"]))


def resume(conn: sqlite3.Connection, token: str, settings: dict
           ) -> tuple[sqlite3.Row, sqlite3.Row] | None:
    """(session, key) for a live session, its idle clock restarted; None (and the row
    gone) when it expired, idled out, or its key can no longer be used."""
    session = conn.execute("SELECT * FROM console_sessions WHERE id_hash = ?",
                           (digest(token),)).fetchone()
    if session is None:
        return None
    now = clock.now()
    ends, idle_since = cutoffs(settings, now)
    key = conn.execute("SELECT * FROM api_keys WHERE id = ?", (session["key_id"],)).fetchone()
    if session["expires_at"] <= ends or session["last_seen_at"] <= idle_since \
            or not key_usable(key):
        end(conn, session["id_hash"])
        return None
    if session["last_seen_at"] <= clock.iso(now - dt.timedelta(seconds=TOUCH_SECONDS)):
        conn.execute("UPDATE console_sessions SET last_seen_at = ? WHERE id_hash = ?",
                     (clock.iso(now), session["id_hash"]))
    return session, key


def purge_expired(conn: sqlite3.Connection, settings: dict) -> int:
    """Delete sessions past their lifetime or idle timeout, and expired login links;
    return how many sessions went (a scheduled job: resume() only sees returning ones)."""
    ends, idle_since = cutoffs(settings, clock.now())
    conn.execute("DELETE FROM console_login_links WHERE expires_at <= ?", (ends,))
    return conn.execute("DELETE FROM console_sessions WHERE expires_at <= ? OR last_seen_at <= ?",
                        (ends, idle_since)).rowcount


def end(conn: sqlite3.Connection, id_hash: str) -> bool:
    """Delete a session (sign-out, revoke); False if there was none."""
    return bool(conn.execute("DELETE FROM console_sessions WHERE id_hash = ?",
                             (id_hash,)).rowcount)


def list_sessions(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Sessions not past their absolute lifetime, newest first, with their key's name."""
    return conn.execute(
        "SELECT s.*, k.name AS key_name, k.prefix AS key_prefix FROM console_sessions s"
        " JOIN api_keys k ON k.id = s.key_id WHERE s.expires_at > ?"
        " ORDER BY s.created_at DESC", (clock.now_iso(),)).fetchall()


def create_link(conn: sqlite3.Connection, key_id: str) -> str:
    """A single-use sign-in token for the key, valid LINK_MINUTES."""
    token = secrets.token_urlsafe(32)
    expires = clock.now() + dt.timedelta(minutes=LINK_MINUTES)
    conn.execute("DELETE FROM console_login_links WHERE expires_at <= ?", (clock.now_iso(),))
    conn.execute("INSERT INTO console_login_links (token_hash, key_id, expires_at)"
                 " VALUES (?, ?, ?)", (digest(token), key_id, clock.iso(expires)))
    return token


def redeem_link(conn: sqlite3.Connection, token: str) -> str | None:
    """The key id of an unexpired link, which is used up by this call; else None."""
    rows = conn.execute("DELETE FROM console_login_links WHERE token_hash = ? RETURNING *",
                        (digest(token),)).fetchall()
    if not rows or rows[0]["expires_at"] <= clock.now_iso():
        return None
    return rows[0]["key_id"]


def owner_key(conn: sqlite3.Connection) -> sqlite3.Row | None:
    """The oldest usable key that may administer (the one `j1msky init` made)."""
    for key in conn.execute("SELECT * FROM api_keys WHERE revoked_at IS NULL"
                            " ORDER BY created_at, id"):
        if "admin:write" in key["scopes"].split() and key_usable(key):
            return key
    return None

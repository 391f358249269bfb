"""Provider calls from send to settle: a call the provider may bill is paid for.

A row is written before each HTTP attempt and removed when its outcome is known:
the usage it reported, a clear provider error (not billed), or a lost response
(charged at its estimate). An agent that ends while one of its calls is in flight
(cancel, timeout, shutdown) keeps that call's estimate reserved until it settles.
"""
from __future__ import annotations

import sqlite3

from . import clock


def open_call(conn: sqlite3.Connection, *, agent_id: str, step: int, model: str,
              provider: str, estimate: int) -> int:
    """Record a call about to be sent (caller holds the transaction); its id."""
    return conn.execute(
        "INSERT INTO calls_in_flight (agent_id, step, model, provider, estimate_micros, sent_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (agent_id, step, model, provider, estimate, clock.now_iso())).lastrowid


def take(conn: sqlite3.Connection, call_id: int) -> sqlite3.Row | None:
    """Remove a call to settle it; None when it was settled already (as lost, at a restart)."""
    return conn.execute("DELETE FROM calls_in_flight WHERE id = ? RETURNING *",
                        (call_id,)).fetchone()


def hold(conn: sqlite3.Connection, agent_id: str) -> int:
    """The agent has ended: its calls still in flight keep their estimates reserved.
    Returns the micro-dollars held."""
    return sum(row[0] for row in conn.execute(
        "UPDATE calls_in_flight SET held = 1 WHERE agent_id = ? RETURNING estimate_micros",
        (agent_id,)).fetchall())


def in_flight(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every call still in flight (at start, all of them lost their answers)."""
    return conn.execute("SELECT * FROM calls_in_flight ORDER BY id").fetchall()

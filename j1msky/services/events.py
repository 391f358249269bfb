"""Events: one row per thing that happened, in the transaction that made it happen."""
from __future__ import annotations

import json
import sqlite3
import threading

from ..db import after_commit
from . import clock, webhooks

TYPES = ("agent.spawned", "agent.started", "agent.completed", "agent.failed", "agent.cancelled",
         "agent.charged", "budget.alert", "key.revoked", "security.violation")


class Bell:
    """Rung after each commit that recorded events, so live streams read them at once
    instead of polling. A waiter passes the count it last saw: a ring between its read
    and its wait is not lost."""

    def __init__(self):
        self._rang = threading.Condition()
        self.rings = 0

    def ring(self) -> None:
        with self._rang:
            self.rings += 1
            self._rang.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until rung after `seen` (or timeout); return the count now."""
        with self._rang:
            self._rang.wait_for(lambda: self.rings != seen, timeout)
            return self.rings


bell = Bell()  # process-wide: events committed by other processes (the CLI) are found later


def emit(conn: sqlite3.Connection, event_type: str, data: dict) -> int:
    """Record an event and its webhook deliveries; the caller's transaction decides
    whether it happened, and the dispatcher and live streams are woken once it commits."""
    assert event_type in TYPES, event_type
    created_at = clock.now_iso()
    event_id = conn.execute("INSERT INTO events (type, created_at, data) VALUES (?, ?, ?)",
                            (event_type, created_at, json.dumps(data))).lastrowid
    if webhooks.enqueue(conn, event_id, event_type, data, created_at):
        after_commit(conn, webhooks.wake.set)
    after_commit(conn, bell.ring)
    return event_id


def public(row: sqlite3.Row) -> dict:
    """An events row as the API shows it (the feed and the live stream)."""
    return {"id": f"evt_{row['id']}", "type": row["type"],
            "created_at": clock.iso_out(row["created_at"]), "data": json.loads(row["data"])}

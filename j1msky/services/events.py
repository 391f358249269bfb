"""Events: one row per thing that happened, in the transaction that made it happen."""
from __future__ import annotations

import json
import sqlite3

from ..db import after_commit
from . import clock, webhooks

TYPES = ("agent.spawned", "agent.started", "agent.completed", "agent.failed", "agent.cancelled",
         "agent.charged", "budget.alert", "key.revoked", "security.violation")


def emit(conn: sqlite3.Connection, event_type: str, data: dict) -> int:
    """Record an event and its webhook deliveries; the caller's transaction decides
    whether it happened, and the dispatcher is woken once it commits."""
    assert event_type in TYPES, event_type
    created_at = clock.now_iso()
    event_id = conn.execute("INSERT INTO events (type, created_at, data) VALUES (?, ?, ?)",
                            (event_type, created_at, json.dumps(data))).lastrowid
    if webhooks.enqueue(conn, event_id, event_type, data, created_at):
        after_commit(conn, webhooks.wake.set)
    return event_id

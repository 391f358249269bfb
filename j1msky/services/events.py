"""Events: one row per thing that happened, in the transaction that made it happen."""
from __future__ import annotations

import json
import sqlite3

from . import clock

TYPES = ("agent.spawned", "agent.started", "agent.completed", "agent.failed", "agent.cancelled",
         "budget.alert", "key.revoked", "security.violation")


def emit(conn: sqlite3.Connection, event_type: str, data: dict) -> int:
    """Record an event; the caller's transaction decides whether it happened."""
    assert event_type in TYPES, event_type
    return conn.execute("INSERT INTO events (type, created_at, data) VALUES (?, ?, ?)",
                        (event_type, clock.now_iso(), json.dumps(data))).lastrowid

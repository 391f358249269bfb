"""An agent's task and result at rest: sealed when asked (encrypt_output), read back,
erased when their retention ends or on request, exported."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Callable, Iterator

from . import clock, crypto

TEXT_COLUMNS = ("task", "result")


def seal_if(encrypted: bool, key: crypto.DataKey, text: str | None) -> str | None:
    return crypto.seal(key.get(), text) if encrypted and text is not None else text


def open_if(encrypted: bool, key: crypto.DataKey, text: str | None) -> str | None:
    return crypto.unseal(key.get(), text) if encrypted and text is not None else text


def readable(row: sqlite3.Row, key: crypto.DataKey) -> dict:
    """The row as a dict with task, result and step outputs in plain text."""
    data = dict(row)
    encrypted = bool(row["encrypted"])
    for column in TEXT_COLUMNS:
        data[column] = open_if(encrypted, key, row[column])
    if row["steps"]:
        steps = json.loads(row["steps"])
        for step in steps:
            step["output"] = open_if(encrypted, key, step.get("output"))
        data["steps"] = json.dumps(steps)
    return data


def erase_after(config: dict, privacy: dict | None) -> str:
    days = (privacy or {}).get("retention_days") or config["retention"]["agents_days"]
    return clock.iso(clock.now() + dt.timedelta(days=days))


def erase(conn: sqlite3.Connection, agent_ids: list[str]) -> int:
    """Erase task, result and step outputs (keeping the cost record), and the copies
    in events and queued webhook payloads. Caller holds the transaction."""
    now = clock.now_iso()
    for agent_id in agent_ids:
        row = conn.execute("SELECT steps FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
        steps = json.loads(row["steps"]) if row["steps"] else None
        for step in steps or []:
            step["output"] = None
        conn.execute("UPDATE agents SET task = NULL, result = NULL, steps = ?, erased_at = ?"
                     " WHERE agent_id = ?",
                     (json.dumps(steps) if steps is not None else None, now, agent_id))
        conn.execute("UPDATE events SET data = json_set(data, '$.task', NULL, '$.result', NULL)"
                     " WHERE json_extract(data, '$.agent_id') = ?", (agent_id,))
        conn.execute("UPDATE webhook_deliveries SET payload = json_set(payload,"
                     " '$.data.task', NULL, '$.data.result', NULL)"
                     " WHERE json_extract(payload, '$.data.agent_id') = ?", (agent_id,))
        conn.execute("UPDATE audit_log SET details = json_remove(details, '$.task_preview')"
                     " WHERE resource_id = ?", (agent_id,))
    return len(agent_ids)


def erase_expired(conn: sqlite3.Connection) -> int:
    """Erase finished agents whose retention has ended."""
    ids = [r[0] for r in conn.execute(
        "SELECT agent_id FROM agents WHERE erased_at IS NULL AND erase_after <= ?"
        " AND status IN ('completed', 'failed', 'cancelled')", (clock.now_iso(),))]
    return erase(conn, ids)


def export(conn: sqlite3.Connection, to_api: Callable[[sqlite3.Row], dict],
           batch: int = 500) -> Iterator[str]:
    """Every agent record as NDJSON lines, oldest first, read in batches by id."""
    last = 0
    while True:
        rows = conn.execute("SELECT * FROM agents WHERE id > ? ORDER BY id LIMIT ?",
                            (last, batch)).fetchall()
        if not rows:
            return
        for row in rows:
            yield json.dumps(to_api(row)) + "\n"
        last = rows[-1]["id"]

"""Agent records: admission, state transitions, costs and the API view of a row."""
from __future__ import annotations

import json
import math
import secrets
import sqlite3
import time
from dataclasses import dataclass

from .. import metrics
from ..db import returning, transaction
from ..errors import APIError
from . import agentdata, audit, budget, catalog, clock, events, keys, ledger, limits, privacy
from .crypto import DataKey
from .pagination import ListQuery

PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}
ACTIVE = ("spawning", "running")
FINISHED = ("completed", "failed", "cancelled")
TOTALS_COLUMNS = frozenset({"status", "model"})  # the columns agent_totals is kept by


def dollars(micros: int | None) -> float:
    return round((micros or 0) / 1_000_000, 6)


def seconds(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def new_agent_id() -> str:
    return f"subagent_{int(time.time())}_{secrets.randbelow(10**6):06d}"


def estimate_tokens(text: str) -> int:
    """Rough input token count: about four characters a token."""
    return math.ceil(len(text) / 4) + 8


def step_plan(config: dict, model: str | None, team: str | None) -> list[dict]:
    """The steps an agent runs: its team's, or one step of its model."""
    if team:
        return [dict(step) for step in config["teams"][team]["steps"]]
    return [{"model": model, "role": None}]


def estimate_micros(config: dict, steps: list[dict], task: str) -> int:
    """The most the steps may cost: the priciest model of each step's fallback chain,
    at the task's input size (plus the previous step's output) and the output cap."""
    cap = config["agents"]["max_output_tokens"]
    total, previous_output = 0, 0
    for step in steps:
        tokens_in = estimate_tokens(task + (step["role"] or "")) + previous_output
        total += max(catalog.cost_micros(config, m, tokens_in, cap)
                     for m in catalog.fallback_chain(config, step["model"]))
        previous_output = cap
    return total


def check_key_may_spawn(conn: sqlite3.Connection, config: dict, key: sqlite3.Row) -> None:
    """403 while the key is suspended by cost spike protection; 429 when it already has
    its limit of agents in flight. One query for both."""
    row = conn.execute(
        "SELECT suspended_until, suspended_reason, (SELECT count(*) FROM agents WHERE"
        " key_id = api_keys.id AND status IN ('spawning', 'running')) AS active"
        " FROM api_keys WHERE id = ?", (key["id"],)).fetchone()
    if row is None:
        return
    if keys.suspended(row):
        raise APIError(403, f"API key suspended from spawning until"
                            f" {clock.iso_out(row['suspended_until'])}: {row['suspended_reason']}")
    limit = key["max_concurrent"] or config["agents"]["max_concurrent_per_key"]
    if row["active"] >= limit:
        raise APIError(429, f"This key already has {limit} agents in flight (its limit)",
                       retry_after=5)


def check_provider_capacity(conn: sqlite3.Connection, config: dict, steps: list[dict]) -> None:
    """Every step has a model in its fallback chain whose provider is under its hourly limit."""
    for step in steps:
        if not any(catalog.availability(config, m) != "unavailable"
                   and limits.has_capacity(conn, config, m)
                   for m in catalog.fallback_chain(config, step["model"])):
            raise APIError(429, f"Hourly provider limits reached for '{step['model']}' and its"
                                " fallbacks", retry_after=limits.seconds_to_window_end())


def admission(config: dict, key_id: str, req: dict, data_key: DataKey) -> dict:
    """The row of an agent to admit, worked out before the write lock is taken: every
    column but budget_day, which the reservation decides."""
    steps = step_plan(config, req.get("model"), req.get("team"))
    options = req.get("privacy") or {}
    encrypted = bool(options.get("encrypt_output"))
    return {
        "agent_id": new_agent_id(), "key_id": key_id,
        "model": req.get("model") or steps[0]["model"], "team": req.get("team"),
        "status": "spawning", "task": agentdata.seal_if(encrypted, data_key, req["task"]),
        "priority": req["priority"], "timeout": req["timeout"], "created_at": clock.now_iso(),
        "estimated_micros": estimate_micros(config, steps, req["task"]),
        "steps": json.dumps([{"model": s["model"], "status": "pending", "output": None,
                              "cost": 0.0} for s in steps]) if req.get("team") else None,
        "privacy": json.dumps(options) if options else None,
        "pii_detected": json.dumps(privacy.detect(req["task"]))
        if options.get("detect_pii") else None,
        "encrypted": int(encrypted), "erase_after": agentdata.erase_after(config, options)}


INSERT_AGENT = (
    "INSERT INTO agents (agent_id, key_id, model, team, status, task, priority, timeout,"
    " created_at, estimated_micros, steps, privacy, pii_detected, encrypted, erase_after,"
    " budget_day) VALUES (:agent_id, :key_id, :model, :team, :status, :task, :priority,"
    " :timeout, :created_at, :estimated_micros, :steps, :privacy, :pii_detected, :encrypted,"
    " :erase_after, :budget_day) RETURNING *")


def insert(conn: sqlite3.Connection, config: dict, key: sqlite3.Row,
           agent: dict) -> sqlite3.Row:
    """Admit one agent (caller holds a write transaction): checks, reservation, row."""
    check_key_may_spawn(conn, config, key)
    check_provider_capacity(conn, config, step_plan(config, agent["model"], agent["team"]))
    day = budget.reserve(conn, config, agent["estimated_micros"])
    for attempt in range(20):
        values = {**agent, "budget_day": day,
                  "agent_id": agent["agent_id"] if attempt == 0 else new_agent_id()}
        try:
            (row,) = conn.execute(INSERT_AGENT, values).fetchall()
        except sqlite3.IntegrityError as exc:
            if "agents.agent_id" not in str(exc):
                raise
            continue
        record_event(conn, "agent.spawned", row)
        return row
    raise APIError(503, "Could not allocate an agent id, try again", retry_after=1)


def get(conn: sqlite3.Connection, agent_id: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
    if row is None:
        raise APIError(404, f"Agent '{agent_id}' not found")
    return row


def record_event(conn: sqlite3.Connection, event_type: str, row: sqlite3.Row) -> None:
    """Record an agent event from its row as it is now."""
    events.emit(conn, event_type, event_data(row))
    metrics.agent_event(conn, event_type, row)


def event_data(row: sqlite3.Row) -> dict:
    """What events and webhooks tell about an agent: never a sealed task or result, and
    with PII masked when the agent asked for mask_pii_in_logs."""
    task, result = row["task"], row["result"]
    if row["encrypted"]:
        task = result = None
    elif options_of(row).get("mask_pii_in_logs"):
        task, result = privacy.mask_value(task), privacy.mask_value(result)
    return {"agent_id": row["agent_id"], "model": row["model"], "team": row["team"],
            "status": row["status"], "task": task, "result": result,
            "error": row["error"], "cost": dollars(row["actual_micros"]),
            "pending_charge": dollars(row["pending_micros"]),
            "estimated_charge": dollars(row["estimated_charge_micros"]),
            "estimated_cost": dollars(row["estimated_micros"]),
            "fallback_from": row["fallback_from"], "simulated": bool(row["simulated"]),
            "encrypted": bool(row["encrypted"])}


def options_of(row: sqlite3.Row) -> dict:
    """The agent's privacy options."""
    return json.loads(row["privacy"]) if row["privacy"] else {}


def end_reservation(conn: sqlite3.Connection, row: sqlite3.Row) -> sqlite3.Row:
    """The agent of `row` has just ended: release its reservation except the estimates
    of its calls still in flight, which stay reserved as its pending charge until they
    settle. Returns its row, pending charge included."""
    held = ledger.hold(conn, row["agent_id"])
    if row["budget_day"]:
        budget.release(conn, row["budget_day"], row["estimated_micros"] - held)
    if held == row["pending_micros"]:
        return row
    return returning(conn, "UPDATE agents SET pending_micros = ? WHERE agent_id = ?"
                           " RETURNING *", (held, row["agent_id"]))


def mark_running(conn: sqlite3.Connection, agent_id: str) -> sqlite3.Row | None:
    """spawning -> running; None when the agent is no longer waiting (cancelled)."""
    with transaction(conn):
        row = returning(conn, "UPDATE agents SET status = 'running', started_at = ? WHERE"
                              " agent_id = ? AND status = 'spawning' RETURNING *",
                        (clock.now_iso(), agent_id))
        if row is not None:
            record_event(conn, "agent.started", row)
        return row


@dataclass
class Step:
    """One answered step of an agent: the model that answered (None in fallback_from
    when it was the step's own) and its output."""
    index: int
    model: str
    output: str
    fallback_from: str | None
    simulated: bool


def record_step(conn: sqlite3.Connection, agent_id: str, step: Step,
                data_key: DataKey) -> bool:
    """Record one answered step's output (its cost was charged as its call settled);
    False if the agent is no longer running."""
    with transaction(conn):
        row = get(conn, agent_id)
        if row["status"] != "running":
            return False
        conn.execute("UPDATE agents SET steps = ?, simulated = max(simulated, ?),"
                     " fallback_from = coalesce(fallback_from, ?) WHERE agent_id = ?",
                     (*step_columns(row, step, data_key), agent_id))
        return True


def step_columns(row: sqlite3.Row, step: Step | None,
                 data_key: DataKey) -> tuple[str | None, int, str | None]:
    """(steps, simulated, fallback_from) of the agent once `step` is recorded (None:
    as they are), for an UPDATE that takes the larger simulated and the first
    fallback_from."""
    if step is None:
        return row["steps"], 0, None
    steps = json.loads(row["steps"]) if row["steps"] else None
    if steps is not None:
        steps[step.index].update({
            "model": step.model, "status": "completed",
            "output": agentdata.seal_if(row["encrypted"], data_key, step.output),
            "fallback_from": step.fallback_from})
    return (json.dumps(steps) if steps is not None else None, int(step.simulated),
            step.fallback_from)


def charge(conn: sqlite3.Connection, config: dict, agent_id: str, *, step: int, model: str,
           provider: str, cost: int, input_tokens: int, output_tokens: int, estimated: bool,
           held: int = 0) -> None:
    """Charge one settled call to its agent and the running totals (caller holds the
    transaction). `held`: the call's estimate its ended agent kept reserved, released now;
    the last one to settle reports the agent's final cost as agent.charged."""
    row = conn.execute("SELECT * FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
    if row is None:  # purged with old data before its call settled
        return
    if cost or input_tokens or output_tokens:
        budget.charge(conn, config, day=row["budget_day"], model=model, provider=provider,
                      key_id=row["key_id"] or "", cost=cost, input_tokens=input_tokens,
                      output_tokens=output_tokens, estimated=estimated)
    steps = json.loads(row["steps"]) if row["steps"] else None
    if steps is not None:
        steps[step]["cost"] = round(steps[step]["cost"] + cost / 1_000_000, 6)
        if estimated:
            steps[step]["estimated"] = True
    charged = returning(
        conn, "UPDATE agents SET actual_micros = actual_micros + ?, input_tokens ="
              " input_tokens + ?, output_tokens = output_tokens + ?, estimated_charge_micros ="
              " estimated_charge_micros + ?, pending_micros = pending_micros - ?, steps = ?"
              " WHERE agent_id = ? RETURNING *",
        (cost, input_tokens, output_tokens, cost if estimated else 0, held,
         json.dumps(steps) if steps is not None else None, agent_id))
    if held and row["budget_day"]:
        budget.release(conn, row["budget_day"], held)
    if cost and row["key_id"]:
        keys.suspend_on_cost_spike(conn, config, row["key_id"])
    if held and row["pending_micros"] == held:
        record_event(conn, "agent.charged", charged)


def finish(conn: sqlite3.Connection, agent_id: str, status: str, *, result: str | None = None,
           error: str | None = None, last_step: Step | None = None,
           data_key: DataKey) -> bool:
    """running -> completed|failed, releasing the reservation, with its last answered
    step recorded in the same transaction; False if something else (a cancel, a
    shutdown) got there first."""
    with transaction(conn):
        row = get(conn, agent_id)
        pii = row["pii_detected"]
        if pii is not None and result:
            pii = json.dumps(sorted(set(json.loads(pii)) | set(privacy.detect(result))))
        ended = returning(
            conn, "UPDATE agents SET status = ?, result = ?, error = ?, completed_at = ?,"
                  " pii_detected = ?, steps = ?, simulated = max(simulated, ?),"
                  " fallback_from = coalesce(fallback_from, ?)"
                  " WHERE agent_id = ? AND status = 'running' RETURNING *",
            (status, agentdata.seal_if(row["encrypted"], data_key, result), error,
             clock.now_iso(), pii, *step_columns(row, last_step, data_key), agent_id))
        if ended is None:
            return False
        ended = end_reservation(conn, ended)
        record_event(conn, f"agent.{status}", ended)
        audit_finish(conn, ended)
        return True


def cancel(conn: sqlite3.Connection, agent_id: str) -> tuple[int, int]:
    """Cancel a waiting or running agent, or 409; (refund, pending charge) in
    micro-dollars: what is released now, and what waits on calls still in flight."""
    row = get(conn, agent_id)
    if row["status"] in FINISHED:
        raise APIError(409, f"Agent already {row['status']}")
    cancelled = end_reservation(conn, returning(
        conn, "UPDATE agents SET status = 'cancelled', completed_at = ?,"
              " error = 'cancelled by request' WHERE agent_id = ? RETURNING *",
        (clock.now_iso(), agent_id)))
    record_event(conn, "agent.cancelled", cancelled)
    pending = cancelled["pending_micros"]
    return max(row["estimated_micros"] - cancelled["actual_micros"] - pending, 0), pending


def erase_data(conn: sqlite3.Connection, agent_id: str) -> None:
    """Erase a finished agent's task and result, keeping its cost record; 409 while it
    still waits or runs."""
    row = get(conn, agent_id)
    if row["status"] in ACTIVE:
        raise APIError(409, f"Agent is {row['status']}: cancel it before erasing its data")
    agentdata.erase(conn, [agent_id])


def interrupt_running(conn: sqlite3.Connection, reason: str) -> list[str]:
    """Fail every running agent (crash or shutdown): their provider calls are lost.
    Caller holds the transaction."""
    failed = conn.execute("UPDATE agents SET status = 'failed', error = ?, completed_at = ?"
                          " WHERE status = 'running' RETURNING *",
                          (reason, clock.now_iso())).fetchall()
    for row in sorted(failed, key=lambda r: r["id"]):
        ended = end_reservation(conn, row)
        record_event(conn, "agent.failed", ended)
        audit_finish(conn, ended)
    return [row["agent_id"] for row in failed]


def audit_finish(conn: sqlite3.Connection, row: sqlite3.Row) -> None:
    """agent.complete / agent.fail in the audit log (never the task or result)."""
    from ..config import current
    event, severity = ("agent.complete", "info") if row["status"] == "completed" \
        else ("agent.fail", "warning")
    audit.record(conn, current(), event, severity=severity, api_key_id=row["key_id"],
                 resource={"type": "agent", "id": row["agent_id"]},
                 details={"model": row["model"], "team": row["team"], "error": row["error"],
                          "cost": dollars(row["actual_micros"]),
                          "fallback_from": row["fallback_from"]},
                 mask_pii=bool(options_of(row).get("mask_pii_in_logs")))


def waiting(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT agent_id, priority FROM agents WHERE status = 'spawning'"
                        " ORDER BY id").fetchall()


def totals_by_model(conn: sqlite3.Connection, query: ListQuery) -> list[tuple[str, int, int]]:
    """(model, agents, actual micro-dollars) of the agents a list's filter matches, by
    model: read from the running totals (table agent_totals, kept by triggers) when the
    filter compares only status and model, else summed over the matching agents."""
    if query.filter_columns <= TOTALS_COLUMNS:
        sql = (f"SELECT model, sum(agents), sum(actual_micros) FROM agent_totals"
               f"{query.where_sql} GROUP BY model HAVING sum(agents) > 0")
    else:
        # The filter's index holds model and actual_micros (schema.sql). "+model": group
        # after the search, so SQLite picks the index by the filter, not by model order.
        sql = (f"SELECT model, count(*), sum(actual_micros) FROM agents{query.where_sql}"
               f" GROUP BY +model ORDER BY model")
    return [tuple(row) for row in conn.execute(sql, query.params)]


def to_api(stored: sqlite3.Row, data_key: DataKey) -> dict:
    """The agent object of the contract (§5), with privacy fields."""
    row = agentdata.readable(stored, data_key)
    return {
        "agent_id": row["agent_id"], "model": row["model"], "team": row["team"],
        "status": row["status"], "task": row["task"], "priority": row["priority"],
        "timeout": seconds(row["timeout"]), "created_at": clock.iso_out(row["created_at"]),
        "started_at": clock.iso_out(row["started_at"]),
        "completed_at": clock.iso_out(row["completed_at"]),
        "result": row["result"], "error": row["error"],
        "estimated_cost": dollars(row["estimated_micros"]),
        "actual_cost": dollars(row["actual_micros"]),
        "pending_charge": dollars(row["pending_micros"]),
        "estimated_charge": dollars(row["estimated_charge_micros"]),
        "usage": {"input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"]},
        "fallback_from": row["fallback_from"],
        "steps": json.loads(row["steps"]) if row["steps"] else None,
        "simulated": bool(row["simulated"]),
        "privacy": json.loads(row["privacy"]) if row["privacy"] else None,
        "pii_detected": json.loads(row["pii_detected"]) if row["pii_detected"] else None,
        "encrypted": bool(row["encrypted"]),
        "data_erased_at": clock.iso_out(row["erased_at"]),
    }


def to_api_detail(row: sqlite3.Row, data_key: DataKey) -> dict:
    """GET /agent/{id}: the agent object plus the reference's short names."""
    agent = to_api(row, data_key)
    return {**agent, "created": agent["created_at"], "started": agent["started_at"],
            "completed": agent["completed_at"], "cost": agent["actual_cost"]}

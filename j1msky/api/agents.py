"""/spawn, /spawn-batch, /agent/{id}, /agents, /agents/active."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, request, stream_with_context
from marshmallow import ValidationError

from .. import ratelimit
from ..auth import require_scope
from ..config import current as current_config
from ..db import after_commit, checkpoint, get_db, transaction
from ..errors import APIError
from ..schemas import SpawnBatchRequest, SpawnRequest
from ..services import agentdata, agents, audit, budget, catalog, clock, privacy, routing
from ..services.pagination import Field, build_page, parse_list_args
from .audit import request_entry
from .common import data_key, json_body

bp = Blueprint("agents", __name__)

AGENT_FIELDS = {
    "agent_id": Field("agent_id", "str", nullable=False),
    "status": Field("status", "str", nullable=False),
    "model": Field("model", "str", nullable=False),
    "team": Field("team", "str"),
    "priority": Field("priority", "str", nullable=False),
    "task": Field("task", "str", sortable=False),
    "created_at": Field("created_at", "time", nullable=False),
    "started_at": Field("started_at", "time"),
    "completed_at": Field("completed_at", "time"),
    "cost": Field("actual_micros", "money", nullable=False),
    "actual_cost": Field("actual_micros", "money", nullable=False),
    "estimated_cost": Field("estimated_micros", "money", nullable=False),
    "fallback_from": Field("fallback_from", "str"),
}
SHORTHANDS = {
    "status": ("status", "eq"), "model": ("model", "eq"), "team": ("team", "eq"),
    "created_after": ("created_at", "gt"), "created_before": ("created_at", "lt"),
    "cost_gt": ("cost", "gt"), "cost_lt": ("cost", "lt"),
}


_spawn_schema: tuple[dict, SpawnRequest] | None = None


def spawn_schema(config: dict) -> SpawnRequest:
    """The spawn request schema of the config in force, built once per config:
    ConfigStore hands out a new dict when config.json changes."""
    global _spawn_schema
    cached = _spawn_schema
    if cached is None or cached[0] is not config:
        cached = _spawn_schema = (config, SpawnRequest(config))
    return cached[1]


def submit_after_commit(conn, row) -> None:
    runner = current_app.extensions.get("j1msky_runner")
    if runner is not None:
        after_commit(conn, lambda: runner.submit(row["agent_id"], row["priority"]))


def prepare(config: dict, req: dict) -> dict:
    """Pick a model when none was named; refuse one that cannot be served at all."""
    if req.get("model") is None:
        tokens = agents.estimate_tokens(req["task"]) + config["agents"]["max_output_tokens"]
        req["model"] = routing.default_model(get_db(), config, req["priority"], tokens)
    catalog.check_servable(config, req["model"])
    return req


def admit(config: dict, reqs: list[dict]) -> list:
    """Admit agents in one transaction, audited. Their rows and audit entries are made
    before it, so the write lock is held for the checks and the INSERTs alone."""
    planned = []
    for req in reqs:
        agent = agents.admission(config, g.key["id"], req, data_key())
        planned.append((agent, spawn_entry(config, agent, req)))
    rows = []
    with transaction(get_db()) as conn:
        for agent, entry in planned:
            row = agents.insert(conn, config, g.key, agent)
            if entry is not None:
                entry["resource_id"] = row["agent_id"]  # drawn again on a clash
            audit.insert(conn, entry)
            submit_after_commit(conn, row)
            rows.append(row)
    return rows


def spawn_entry(config: dict, agent: dict, req: dict) -> dict | None:
    """The agent.spawn audit entry: never a sealed task, masked on request."""
    mask_pii = bool((req.get("privacy") or {}).get("mask_pii_in_logs"))
    details = {"model": agent["model"], "team": agent["team"],
               "estimated_cost": agents.dollars(agent["estimated_micros"])}
    if not agent["encrypted"]:
        details["task_preview"] = privacy.preview(req["task"]) if mask_pii else req["task"][:80]
    return request_entry("agent.spawn", config, details=details, mask_pii=mask_pii,
                         resource={"type": "agent", "id": agent["agent_id"]})


def spawned(row) -> dict:
    return {"success": True, "agent_id": row["agent_id"], "model": row["model"],
            "status": row["status"], "priority": row["priority"],
            "timeout": agents.seconds(row["timeout"]),
            "estimated_cost": agents.dollars(row["estimated_micros"]),
            "created_at": clock.iso_out(row["created_at"])}


def spawn_one():
    config = current_config()
    req = prepare(config, spawn_schema(config).load(json_body()))
    (row,) = admit(config, [req])
    return spawned(row), 202, {"Location": f"/api/agent/{row['agent_id']}"}


@bp.post("/spawn")
@ratelimit.spawn
@require_scope("agents:write")
def spawn():
    """Spawn one agent; 202 with its id while it waits for a worker."""
    return spawn_one()


@bp.post("/spawn-batch")
@ratelimit.spawn_batch
@require_scope("agents:write")
def spawn_batch():
    """Spawn 1..50 agents, validated all or nothing."""
    config = current_config()
    items = SpawnBatchRequest().load(json_body())["agents"]
    requests, errors = [], {}
    for index, item in enumerate(items):
        try:
            requests.append(prepare(config, spawn_schema(config).load(item)))
        except ValidationError as exc:
            errors[str(index)] = exc.messages
    if errors:
        raise ValidationError({"agents": errors})
    rows = admit(config, requests)
    return {"success": True, "count": len(rows), "agents": [spawned(r) for r in rows]}, 202


def agent_detail(agent_id: str):
    return agents.to_api_detail(agents.get(get_db(), agent_id), data_key())


def cancel_agent(agent_id: str):
    with transaction(get_db()) as conn:
        refund, pending = agents.cancel(conn, agent_id)
        runner = current_app.extensions.get("j1msky_runner")
        if runner is not None:
            after_commit(conn, lambda: runner.cancel(agent_id))
    return {"success": True, "message": "Agent cancelled", "agent_id": agent_id,
            "status": "cancelled", "refund": agents.dollars(refund),
            "pending_charge": agents.dollars(pending)}


@bp.get("/agent/<agent_id>")
@ratelimit.agent
@require_scope("agents:read")
def get_agent(agent_id: str):
    """One agent, with the documented short names."""
    return agent_detail(agent_id)


@bp.delete("/agent/<agent_id>")
@require_scope("agents:write")
def cancel(agent_id: str):
    """Cancel a waiting or running agent; 409 once it has finished."""
    json_body(allow_empty=True)
    return cancel_agent(agent_id)


@bp.get("/agents")
@ratelimit.agents
@require_scope("agents:read")
def list_agents():
    """Agents with filters, sort, offset or cursor pages, and cost totals."""
    query = parse_list_args(request.args, AGENT_FIELDS, shorthands=SHORTHANDS)
    conn = get_db()
    sql, params = query.page_sql("agents")
    rows = conn.execute(sql, params).fetchall()
    by_model = agents.totals_by_model(conn, query)
    total = sum(r[1] for r in by_model)
    page, pagination, links = build_page(rows, query, total=total, base_path=request.path,
                                         args=request.args)
    return {"data": [agents.to_api(r, data_key()) for r in page], "pagination": pagination,
            "links": links,
            "meta": {"total_cost": agents.dollars(sum(r[2] or 0 for r in by_model)),
                     "by_model": {r[0]: r[1] for r in by_model}}}


@bp.get("/agents/active")
@require_scope("agents:read")
def active_agents():
    """Agents waiting or running now, and today's spend."""
    conn = get_db()
    rows = conn.execute("SELECT * FROM agents WHERE status IN ('spawning', 'running')"
                        " ORDER BY id").fetchall()
    return {"agents": [agents.to_api(r, data_key()) for r in rows], "count": len(rows),
            "total_cost_today": agents.dollars(budget.today_spend(conn, current_config()))}


def require_agent_id() -> str:
    agent_id = request.args.get("agent_id", "").strip()
    if not agent_id:
        raise APIError(400, "agent_id query parameter is required",
                       details={"agent_id": ["Missing data for required field."]})
    return agent_id


@bp.delete("/agent/<agent_id>/data")
@require_scope("agents:write")
def erase_agent_data(agent_id: str):
    """Erase a finished agent's task and result now, keeping its cost record."""
    erase_agent(agent_id)
    return {"success": True, "message": "Agent data erased", "agent_id": agent_id}


def erase_agent(agent_id: str) -> None:
    with transaction(get_db()) as conn:
        agents.erase_data(conn, agent_id)
        # After the outermost commit: under an Idempotency-Key this transaction is nested
        # in the request's, and a checkpoint inside an open transaction fails (locked).
        after_commit(conn, lambda: checkpoint(conn))


@bp.get("/export")
@require_scope("admin:write")
def export():
    """Every agent record, decrypted, as NDJSON (one JSON object a line)."""
    key = data_key()
    lines = agentdata.export(get_db(), lambda row: agents.to_api(row, key))
    return Response(stream_with_context(lines), mimetype="application/x-ndjson",
                    headers={"Content-Disposition": "attachment; filename=j1msky-agents.ndjson"})

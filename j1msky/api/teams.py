"""/spawn-team: run a configured team's steps in order as one agent."""
from __future__ import annotations

from flask import Blueprint

from .. import ratelimit
from ..auth import require_scope
from ..config import current as current_config
from ..schemas import TeamSpawnRequest
from ..services import agents, catalog
from .agents import admit, spawned
from .common import json_body

bp = Blueprint("teams", __name__)


def servable_steps(config: dict, team: str) -> list[dict]:
    """The team's steps; 503 when one of their models cannot be served at all."""
    steps = agents.step_plan(config, None, team)
    for step in steps:
        catalog.check_servable(config, step["model"])
    return steps


@bp.post("/spawn-team")
@ratelimit.spawn
@require_scope("agents:write")
def spawn_team():
    """Spawn a team; each step gets the task and the previous step's output."""
    config = current_config()
    req = TeamSpawnRequest(config).load(json_body())
    steps = servable_steps(config, req["team"])
    (row,) = admit(config, [req])
    body = {**spawned(row), "team": req["team"],
            "models": [catalog.upstream_name(config, s["model"]) for s in steps]}
    return body, 202, {"Location": f"/api/agent/{row['agent_id']}"}

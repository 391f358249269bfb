"""The v3 routes (POST /agent, GET /status, DELETE /cancel): deprecated, gone after sunset."""
from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from urllib.parse import quote

from flask import Blueprint, request

from .. import ratelimit
from ..auth import require_scope
from ..config import current as current_config
from ..errors import APIError
from ..services import clock
from . import agents as v4

bp = Blueprint("legacy_v3", __name__)
DEPRECATED_AT = dt.datetime(2026, 2, 19, tzinfo=dt.timezone.utc)  # v4.0.0 release
SUCCESSORS = {"spawn": "/api/v4/spawn", "status": "/api/v4/agent/{id}",
              "cancel": "/api/v4/agent/{id}"}


def sunset() -> dt.datetime:
    day = dt.date.fromisoformat(str(current_config()["legacy_v3"]["sunset"]))
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)


def successor() -> str:
    path = SUCCESSORS.get(request.endpoint.rsplit(".", 1)[-1] if request.endpoint else "",
                          "/api/v4/spawn")
    agent_id = request.args.get("agent_id")
    # Percent-encoded: it goes into a URL and the Link header (a raw newline would be a 500).
    return path.replace("{id}", quote(agent_id, safe="") if agent_id else "{agent_id}")


@bp.before_request
def refuse_after_sunset():
    if clock.now() >= sunset():
        raise APIError(410, f"This v3 endpoint was retired on {sunset().date()};"
                            f" use {request.method} {successor()}", successor=successor())


@bp.after_request
def deprecation_headers(response):
    response.headers["Deprecation"] = f"@{int(DEPRECATED_AT.timestamp())}"
    response.headers["Sunset"] = format_datetime(sunset(), usegmt=True)
    response.headers["Link"] = f'<{successor()}>; rel="successor-version"'
    return response


@bp.post("/agent")
@ratelimit.spawn
@require_scope("agents:write", legacy=True)
def spawn():
    """v3 spawn (now POST /api/v4/spawn)."""
    return v4.spawn_one()


@bp.get("/status")
@ratelimit.agent
@require_scope("agents:read", legacy=True)
def status():
    """v3 status (now GET /api/v4/agent/{id})."""
    return v4.agent_detail(v4.require_agent_id())


@bp.delete("/cancel")
@require_scope("agents:write", legacy=True)
def cancel():
    """v3 cancel (now DELETE /api/v4/agent/{id})."""
    return v4.cancel_agent(v4.require_agent_id())

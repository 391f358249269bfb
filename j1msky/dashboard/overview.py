"""/ : spend against budget, forecast, provider windows, the Pi's vitals, agents, events;
and the session-authenticated events stream the live views listen to."""
from __future__ import annotations

import json

from flask import Blueprint, current_app, render_template

from ..api.events import event_stream
from ..config import current as current_config
from ..db import get_db
from ..services import budget, clock, host, limits
from .common import needs

bp = Blueprint("overview", __name__)
LATEST_EVENTS = 10


def latest_events(conn, limit: int = LATEST_EVENTS) -> list[dict]:
    return [{"id": r["id"], "type": r["type"], "created_at": clock.iso_out(r["created_at"]),
             "data": json.loads(r["data"])}
            for r in conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))]


def snapshot() -> dict:
    """Everything the overview shows, read in one go."""
    config = current_config()
    conn = get_db()
    counts = dict(conn.execute("SELECT status, count(*) FROM agents GROUP BY status").fetchall())
    return {"spend": budget.summary(conn, config), "forecast": budget.forecast(conn, config),
            "burn": budget.burn_rate(conn, config), "providers": limits.usage(conn, config),
            "thresholds": config["budget"]["alert_thresholds"],
            "vitals": host.vitals(conn, current_app.instance_path,
                                  current_app.config["DATABASE"]),
            "counts": counts, "events": latest_events(conn),
            "at": clock.now_iso()}


@bp.get("/")
@needs("agents:read")
def index():
    """The overview page."""
    return render_template("overview.html", **snapshot())


@bp.get("/live/overview")
@needs("agents:read")
def live():
    """The overview's body, which app.js swaps in every couple of seconds."""
    return render_template("partials/overview_body.html", **snapshot())


@bp.get("/live/events")
@needs("agents:read")
def events():
    """The events stream of GET /api/events/stream, for this session's live views."""
    return event_stream()

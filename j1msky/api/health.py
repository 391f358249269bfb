"""/health: is the service usable (any valid key)."""
from __future__ import annotations

import datetime as dt
import time

import psutil
from flask import Blueprint

from .. import __version__
from ..auth import require_scope
from ..config import current as current_config
from ..db import get_db
from ..services import catalog, clock

bp = Blueprint("health", __name__)
PROCESS_STARTED = psutil.Process().create_time()


def error_rate(conn) -> float:
    """Failed share of the agents that finished in the last hour."""
    since = clock.iso(clock.now() - dt.timedelta(hours=1))
    finished, failed = conn.execute(
        "SELECT count(*), coalesce(sum(status = 'failed'), 0) FROM agents"
        " WHERE completed_at >= ?", (since,)).fetchone()
    return round(failed / finished, 4) if finished else 0.0


@bp.get("/health")
@require_scope(None)
def health():
    """Status, uptime, error rate and the models that can be served."""
    config = current_config()
    states = {m: catalog.availability(config, m) for m in config["models"]}
    usable = [m for m, s in states.items() if s != "unavailable"]
    rate = error_rate(get_db())
    if not usable:
        status = "unhealthy"
    elif rate > 0.25 or any(s != "live" for s in states.values()):
        status = "degraded"
    else:
        status = "healthy"
    return {"status": status, "uptime_seconds": int(time.time() - PROCESS_STARTED),
            "error_rate": rate, "models_configured": len(usable),
            "simulated_models": sorted(m for m, s in states.items() if s == "simulated"),
            "unavailable_models": sorted(m for m, s in states.items() if s == "unavailable"),
            "missing_key_variables": catalog.missing_key_variables(config),
            "version": __version__}

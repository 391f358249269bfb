"""/system (the host, from psutil) and /metrics (Prometheus text format)."""
from __future__ import annotations

from flask import Blueprint, current_app

from .. import metrics, ratelimit
from ..auth import require_scope
from ..config import current as current_config
from ..db import get_db
from ..services import host

bp = Blueprint("system", __name__)


@bp.get("/system")
@ratelimit.system
@require_scope("agents:read")
def system():
    """The host's temperature, load, memory, uptime and free disk, and agents in flight."""
    vitals = host.vitals(get_db(), current_app.instance_path, current_app.config["DATABASE"])
    vitals.pop("database_bytes")  # the console shows it; /system keeps its documented shape
    return vitals


@bp.get("/metrics")
@require_scope("agents:read")
def prometheus_metrics():
    """This process's metrics in the Prometheus text format (0.0.4)."""
    body = current_app.extensions[metrics.EXTENSION].exposition(current_config())
    return current_app.response_class(body, content_type=metrics.CONTENT_TYPE)

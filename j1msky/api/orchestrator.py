"""/orchestrator/status, /orchestrator/recommend-model, /rate-limits."""
from __future__ import annotations

from flask import Blueprint

from ..auth import require_scope
from ..config import current as current_config
from ..db import get_db
from ..schemas import RecommendRequest
from ..services import budget, catalog, limits, routing
from .common import json_body

bp = Blueprint("orchestrator", __name__)


def usage_summary(conn, config) -> dict:
    rows = conn.execute("SELECT model, sum(calls), sum(input_tokens + output_tokens)"
                        " FROM usage_daily WHERE day = ? GROUP BY model"
                        " ORDER BY sum(calls) DESC, model", (budget.today(config),)).fetchall()
    return {"top_models": [{"model": m, "calls": c, "tokens": t} for m, c, t in rows],
            "total_calls": sum(r[1] for r in rows)}


@bp.get("/orchestrator/status")
@require_scope("agents:read")
def status():
    """Budget, forecast, model mix and provider windows, from running totals."""
    config = current_config()
    conn = get_db()
    summary = usage_summary(conn, config)
    providers = {name: {"current": u["used"], "hourly": u["limit"], "remaining": u["remaining"],
                        "utilization_pct": u["utilization_pct"], "reset_at": u["reset_at"]}
                 for name, u in limits.usage(conn, config).items()}
    return {"timestamp": budget.local_now(config).isoformat(timespec="seconds"),
            "models_active": sum(catalog.availability(config, m) != "unavailable"
                                 for m in config["models"]),
            "usage_summary": summary, "recent_usage": summary["total_calls"],
            **budget.summary(conn, config),
            "monthly_forecast": budget.forecast(conn, config),
            "provider_usage": providers}


@bp.post("/orchestrator/recommend-model")
@require_scope("agents:read")
def recommend_model():
    """The model to use for a task type, within provider limits and the budget."""
    config = current_config()
    req = RecommendRequest(config).load(json_body())
    conn = get_db()
    choice = routing.recommend(conn, config, req["task_type"], req["complexity"],
                               req["priority"], req["estimated_tokens"])
    money = budget.summary(conn, config)
    return {**choice, "daily_budget": money["daily_budget"], "today_spend": money["today_spend"],
            "budget_remaining": money["budget_remaining"]}


@bp.get("/rate-limits")
@require_scope("agents:read")
def rate_limits():
    """Each provider's calls in the current clock hour."""
    usage = limits.usage(get_db(), current_config())
    return {"limits": {name: {k: u[k] for k in ("used", "limit", "remaining", "reset_at")}
                       for name, u in usage.items()}}

"""Blueprints, one per resource, served under /api and /api/v4 (v3 routes under /api only)."""
from __future__ import annotations

from flask import Flask

from .. import metrics
from . import (
    agents,
    audit,
    billing,
    docs,
    events,
    health,
    keys,
    legacy,
    orchestrator,
    security,
    system,
    teams,
    webhooks,
)

blueprints = [health.bp, keys.bp, agents.bp, teams.bp, orchestrator.bp,
              billing.bp, webhooks.bp, events.bp, audit.bp, security.bp, system.bp,
              docs.bp]


def init_app(app: Flask) -> None:
    metrics.init_app(app)  # the registry /metrics serves and the HTTP request counter
    for bp in blueprints:
        app.register_blueprint(bp, url_prefix="/api")
        app.register_blueprint(bp, url_prefix="/api/v4", name=f"v4_{bp.name}")
    app.register_blueprint(legacy.bp, url_prefix="/api")

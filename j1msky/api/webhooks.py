"""/webhooks: register, list, show, delete, delivery log, test send (admin:write)."""
from __future__ import annotations

from flask import Blueprint, current_app, g, request

from ..auth import require_scope
from ..config import current as current_config
from ..db import get_db, transaction
from ..errors import APIError
from ..schemas import WebhookCreateRequest
from ..services import webhooks
from .common import json_body

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks")
@require_scope("admin:write")
def create():
    """Register a webhook; a generated secret is shown only in this response."""
    req = WebhookCreateRequest().load(json_body())
    with transaction(get_db()) as conn:
        hook, generated = webhooks.create(conn, current_config(),
                                          current_app.extensions["j1msky_master"],
                                          url=req["url"], events=req["events"],
                                          secret=req["secret"], key_id=g.key["id"])
    body = {"success": True, **hook}
    if generated:
        body["secret"] = generated
    return body, 201, {"Location": f"/api/webhooks/{hook['id']}"}


@bp.get("/webhooks")
@require_scope("admin:write")
def list_webhooks():
    """Every webhook, without secrets."""
    rows = webhooks.list_all(get_db())
    return {"data": [webhooks.view(r) for r in rows], "count": len(rows)}


@bp.get("/webhooks/<webhook_id>")
@require_scope("admin:write")
def show(webhook_id: str):
    """One webhook, without its secret."""
    return webhooks.view(webhooks.get(get_db(), webhook_id))


@bp.delete("/webhooks/<webhook_id>")
@require_scope("admin:write")
def delete(webhook_id: str):
    """Remove a webhook and its pending deliveries."""
    with transaction(get_db()) as conn:
        webhooks.delete(conn, webhook_id)
    return {"success": True, "message": "Webhook deleted", "id": webhook_id}


@bp.get("/webhooks/<webhook_id>/deliveries")
@require_scope("admin:write")
def deliveries(webhook_id: str):
    """The latest deliveries and every attempt: time, status code or error, duration."""
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise APIError(400, "limit must be between 1 and 100",
                       details={"limit": ["limit must be between 1 and 100"]})
    data = webhooks.deliveries(get_db(), webhook_id, limit)
    return {"data": data, "count": len(data)}


@bp.post("/webhooks/<webhook_id>/test")
@require_scope("admin:write")
def send_test(webhook_id: str):
    """Queue a signed `webhook.test` delivery to this webhook."""
    with transaction(get_db()) as conn:
        webhooks.send_test(conn, webhook_id)
    return {"success": True, "message": "Test delivery queued", "id": webhook_id}, 202

"""/keys: create, list, rotate and revoke API keys (admin:write)."""
from __future__ import annotations

from flask import Blueprint, current_app

from ..auth import require_scope
from ..config import current as current_config
from ..db import get_db, transaction
from ..schemas import KeyCreateRequest, KeyRevokeRequest
from ..services import keys
from .common import json_body

bp = Blueprint("keys", __name__)


def master() -> bytes:
    return current_app.extensions["j1msky_master"]


@bp.post("/keys")
@require_scope("admin:write")
def create_key():
    """Create a key; the key and api_secret are shown only in this response."""
    req = KeyCreateRequest().load(json_body())
    with transaction(get_db()) as conn:
        created = keys.create_from_request(conn, env=current_config()["environment"],
                                           master=master(), req=req)
    return {"success": True, **created}, 201


@bp.get("/keys")
@require_scope("admin:write")
def list_keys():
    """Every key, without secrets."""
    data = keys.list_keys(get_db())
    return {"data": data, "count": len(data)}


@bp.post("/keys/<key_id>/rotate")
@require_scope("admin:write")
def rotate_key(key_id: str):
    """A new key with the same scopes; the old one works for the grace period."""
    settings = current_config()
    with transaction(get_db()) as conn:
        rotated = keys.rotate_key(conn, key_id, env=settings["environment"], master=master(),
                                  grace_hours=settings["security"]["rotation_grace_hours"])
    return {"success": True, **rotated}, 201


@bp.delete("/keys/<key_id>")
@require_scope("admin:write")
def revoke_key(key_id: str):
    """Revoke a key at once."""
    req = KeyRevokeRequest().load(json_body(allow_empty=True))
    with transaction(get_db()) as conn:
        revoked = keys.revoke_key(conn, key_id, req["reason"], req["notify_user"])
    return {"success": True, "message": "API key revoked", **revoked}


@bp.post("/keys/<key_id>/unsuspend")
@require_scope("admin:write")
def unsuspend_key(key_id: str):
    """Let a key suspended by cost spike protection spawn again."""
    with transaction(get_db()) as conn:
        key = keys.unsuspend(conn, key_id)
    return {"success": True, "message": "API key may spawn again", **key}

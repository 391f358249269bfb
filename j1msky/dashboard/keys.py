"""/settings/keys: list, create (shown once), rotate, revoke with a reason, unsuspend."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from ..api.keys import master
from ..config import current as current_config
from ..db import get_db, transaction
from ..schemas import KeyCreateRequest, KeyRevokeRequest
from ..services import keys
from .common import field_errors, needs

bp = Blueprint("keys", __name__, url_prefix="/settings/keys")


def listing(errors: dict | None = None, status: int = 200):
    return render_template("keys.html", keys=keys.list_keys(get_db()), scopes=keys.SCOPES,
                           form=request.form, errors=errors or {}), status


@bp.get("")
@needs("admin:write")
def index():
    """Every key, and the form to create one."""
    return listing()


def create_body(form) -> dict:
    """The JSON body POST /api/keys would get for this form."""
    body = {"name": form.get("name", "").strip(), "scopes": form.getlist("scopes"),
            "signing": bool(form.get("signing")),
            "require_signature": bool(form.get("require_signature"))}
    for field in ("max_concurrent_agents", "expires_in_days"):
        value = form.get(field, "").strip()
        if value:
            body[field] = int(value) if value.isdigit() else value
    return body


@bp.post("")
@needs("admin:write")
def create():
    """Create a key; its value (and signing secret) are shown on this page only."""
    try:
        req = KeyCreateRequest().load(create_body(request.form))
    except ValidationError as exc:
        return listing(field_errors(exc), 400)
    with transaction(get_db()) as conn:
        created = keys.create_from_request(conn, env=current_config()["environment"],
                                           master=master(), req=req)
    return render_template("key_shown.html", created=created, rotated=False)


@bp.post("/<key_id>/rotate")
@needs("admin:write")
def rotate(key_id: str):
    """A new key with the same scopes, shown once; the old one works for the grace period."""
    settings = current_config()
    with transaction(get_db()) as conn:
        rotated = keys.rotate_key(conn, key_id, env=settings["environment"], master=master(),
                                  grace_hours=settings["security"]["rotation_grace_hours"])
    return render_template("key_shown.html", created=rotated, rotated=True)


@bp.route("/<key_id>/revoke", methods=["GET", "POST"])
@needs("admin:write")
def revoke(key_id: str):
    """Confirm with a reason, then revoke at once (its console sessions end too)."""
    key = keys.public_view(keys.get_key(get_db(), key_id))
    if request.method == "GET":
        return render_template("key_revoke.html", key=key, errors={})
    try:
        req = KeyRevokeRequest().load({"reason": request.form.get("reason") or None})
    except ValidationError as exc:
        return render_template("key_revoke.html", key=key, errors=field_errors(exc)), 400
    with transaction(get_db()) as conn:
        keys.revoke_key(conn, key_id, req["reason"], req["notify_user"])
    flash(f"Revoked {key['name']} ({key['prefix']}…).")
    return redirect(url_for(".index"))


@bp.post("/<key_id>/unsuspend")
@needs("admin:write")
def unsuspend(key_id: str):
    """Let a key suspended by cost spike protection spawn again."""
    with transaction(get_db()) as conn:
        key = keys.unsuspend(conn, key_id)
    flash(f"{key['name']} ({key['prefix']}…) may spawn again.")
    return redirect(url_for(".index"))

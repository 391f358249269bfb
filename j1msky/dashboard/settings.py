"""/settings/limits: the daily budget, monthly ceiling, alert thresholds and each provider's
hourly limit, written to config.json through services/settings.py."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from ..api.audit import record_request
from ..config import ConfigError
from ..config import current as current_config
from ..services import settings
from .common import needs

bp = Blueprint("settings", __name__, url_prefix="/settings")


def limits_page(values: dict, errors: dict | None = None, status: int = 200):
    config = current_config()
    return render_template("limits.html", values=values, errors=errors or {},
                           providers=list(config["providers"]),
                           hourly_field=settings.hourly_field), status


@bp.get("/limits")
@needs("admin:write")
def limits():
    """The values in force (hand edits of config.json show up here within a second)."""
    return limits_page(settings.limits_view(current_config()))


@bp.post("/limits")
@needs("admin:write")
def save_limits():
    """Validate with config.json's schema and write atomically; nothing changes on error."""
    form = request.form.to_dict()
    try:
        config, changes = settings.update_limits(current_app.extensions["j1msky_config"], form)
    except ValidationError as exc:
        return limits_page(form, exc.messages, 400)
    except (ConfigError, ValueError) as exc:
        return limits_page(form, {"_form": "config.json cannot be updated until it is fixed:"
                                           f" {exc}"}, 409)
    if changes:
        record_request("config.change", config=config,
                       resource={"type": "config", "id": "limits"},
                       details={"section": "limits", "changes": changes})
    flash("Saved." if changes else "Nothing changed.")
    return redirect(url_for(".limits"))

"""/security/audit: the audit options (config.json) and the audit trail, for admins.

``record_request`` is the audit call for code that runs inside a request: it fills in
the caller's key id, IP, user agent and request id. Modules imported by this one
(auth.py, ratelimit.py) should import it inside the function that uses it.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, has_request_context, request
from marshmallow import Schema, fields, post_load, validate

from .. import ratelimit
from ..auth import require_scope
from ..config import ConfigError
from ..config import current as current_config
from ..db import get_db
from ..errors import APIError, request_id
from ..schemas import StrictBoolean, StrictInteger, one_of
from ..services import audit
from ..services.pagination import Field, build_page, parse_list_args
from .common import json_body

bp = Blueprint("audit", __name__)

AUDIT_FIELDS = {
    "timestamp": Field("timestamp", "time", nullable=False),
    "event": Field("event", "str", nullable=False),
    "severity": Field("severity", "str", nullable=False),
    "api_key_id": Field("api_key_id", "str"),
    "ip_address": Field("ip_address", "str"),
    "request_id": Field("request_id", "str"),
    "resource_type": Field("resource_type", "str"),
    "resource_id": Field("resource_id", "str"),
}
SHORTHANDS = {
    "event": ("event", "eq"), "severity": ("severity", "eq"), "api_key_id": ("api_key_id", "eq"),
    "since": ("timestamp", "gte"), "until": ("timestamp", "lt"),
}


def flag(name: str) -> StrictBoolean:
    message = f"{name} must be true or false"
    return StrictBoolean(error_messages={"invalid": message, "null": message})


class AuditOptionsRequest(Schema):
    """POST /security/audit: every option optional, unknown fields refused."""

    enabled = flag("enabled")
    log_level = fields.String(validate=one_of("log_level", audit.LEVELS),
                              error_messages={"invalid": "log_level must be a string",
                                              "null": "log_level must be a string"})
    retention_days = StrictInteger(
        validate=validate.Range(min=1, max=3650,
                                error="retention_days must be between 1 and 3650"),
        error_messages={"invalid": "retention_days must be an integer",
                        "null": "retention_days must be an integer"})
    include_request_body = flag("include_request_body")
    include_response_body = flag("include_response_body")
    events = fields.List(
        fields.String(validate=one_of("Event", audit.EVENTS),
                      error_messages={"invalid": "Event must be a string"}),
        error_messages={"invalid": "events must be a list of event names",
                        "null": "events must be a list of event names"})

    @post_load
    def unique_events(self, data, **kwargs):
        if "events" in data:
            data["events"] = list(dict.fromkeys(data["events"]))
        return data


def record_request(event: str, *, config: dict | None = None, conn=None,
                   **fields) -> int | None:
    """services.audit.record for the current request (see request_entry). Writes on
    ``conn`` (default: this thread's connection, joining its open transaction) with
    ``config`` (default: the config in force). Returns the entry id or None."""
    config = config or current_config()
    return audit.insert(conn or get_db(), request_entry(event, config, **fields))


def request_entry(event: str, config: dict, *, severity: str = "info",
                  resource: dict | None = None, details: dict | None = None,
                  request_body: Any = None, response_body: Any = None,
                  mask_pii: bool = False) -> dict | None:
    """services.audit.entry for the current request: key, IP, user agent and request id
    filled in; the request body too when the settings include bodies and none is given."""
    if not audit.wanted(config, event, severity):
        return None
    key = g.get("key") if has_request_context() else None
    if has_request_context():
        if request_body is None and config["audit"]["include_request_body"]:
            request_body = request.get_data(cache=True) or None
        caller = {"ip_address": ratelimit.client_ip(), "request_id": request_id(),
                  "user_agent": request.headers.get("User-Agent")}
    else:
        caller = {}
    return audit.entry(config, event, severity=severity,
                       api_key_id=key["id"] if key is not None else None, resource=resource,
                       details=details, request_body=request_body,
                       response_body=response_body, mask_pii=mask_pii, **caller)


@bp.post("/security/audit")
@require_scope("admin:write")
def set_options():
    """Change the audit options in config.json; answer with the options now in force."""
    options = AuditOptionsRequest().load(json_body())
    store = current_app.extensions["j1msky_config"]
    before = current_config()
    try:
        after = store.update(lambda user: audit.write_settings(user, options))
    except ConfigError as exc:
        raise APIError(409, f"config.json cannot be updated until it is fixed: {exc}") from None
    old, new = audit.settings(before), audit.settings(after)
    changed = audit.changes(old, new)
    if changed:
        severity = "warning" if audit.weakens(old, new) else "info"
        # Switching auditing off (or config.change out) is itself recorded, by the old rules.
        rules = after if audit.wanted(after, "config.change", severity) else before
        record_request("config.change", severity=severity, config=rules,
                       resource={"type": "config", "id": "audit"},
                       details={"section": "audit", "changes": changed})
    return {"success": True, "settings": new, "changed": sorted(changed)}


@bp.get("/security/audit/settings")
@require_scope("admin:write")
def get_options():
    """The audit options in force."""
    return {"success": True, "settings": audit.settings(current_config())}


@bp.get("/security/audit")
@require_scope("admin:write")
def list_entries():
    """Audit entries, newest first, with filters and offset or cursor pages."""
    query = parse_list_args(request.args, AUDIT_FIELDS, shorthands=SHORTHANDS,
                            default_sort="-timestamp")
    conn = get_db()
    rows = conn.execute(*query.page_sql("audit_log")).fetchall()
    total = conn.execute(*query.count_sql("audit_log")).fetchone()[0]
    page, pagination, links = build_page(rows, query, total=total, base_path=request.path,
                                         args=request.args)
    return {"data": [audit.entry_view(row) for row in page], "pagination": pagination,
            "links": links}

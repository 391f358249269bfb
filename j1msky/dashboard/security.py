"""/settings/security: the IP allow list, blocked addresses, and the audit log.

The allow list and blocks go through the API's own code (api/security.py), so the
lock-out and own-address refusals, the config.json write and the audit entry are the
same; the audit log uses the API's filters and pages (api/audit.py)."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from .. import ipguard
from ..api.audit import AUDIT_FIELDS, SHORTHANDS
from ..api.security import (
    block_address,
    block_view,
    change_whitelist,
    unblock_address,
    whitelist_view,
)
from ..config import current as current_config
from ..db import get_db
from ..errors import APIError
from ..security_schemas import BlockIPRequest, IPWhitelistRequest
from ..services import audit
from ..services.pagination import build_page, parse_list_args
from ..services.settings import number
from .common import field_errors, needs

bp = Blueprint("security", __name__, url_prefix="/settings")
AUDIT_FILTERS = ("event", "severity", "api_key_id", "since", "until")


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def security_page(allow_form: dict | None = None, block_form=None, errors: dict | None = None,
                  status: int = 200):
    settings = whitelist_view(current_config()["security"])
    allow_form = allow_form or {**settings, "allowed_ips": "\n".join(settings["allowed_ips"]),
                                "trusted_proxies": "\n".join(settings["trusted_proxies"])}
    return render_template(
        "security.html", allow=allow_form, block=block_form or {}, errors=errors or {},
        your_ip=ipguard.client_ip(),
        blocks=[block_view(row) for row in ipguard.active_blocks(get_db())]), status


@bp.get("/security")
@needs("admin:write")
def index():
    """The allow list editor, the blocked addresses, and a link to the audit log."""
    return security_page()


@bp.post("/security/allow-list")
@needs("admin:write")
def save_allow_list():
    """PUT /api/security/ip-whitelist from a form; refuses to lock this browser out."""
    form = request.form
    body = {"allowed_ips": lines(form.get("allowed_ips", "")),
            "trusted_proxies": lines(form.get("trusted_proxies", "")),
            "enforce": bool(form.get("enforce")), "log_violations": bool(form.get("log_violations"))}
    shown = {**body, "allowed_ips": form.get("allowed_ips", ""),
             "trusted_proxies": form.get("trusted_proxies", "")}
    try:
        change_whitelist(IPWhitelistRequest().load(body))
    except ValidationError as exc:
        return security_page(allow_form=shown, errors=field_errors(exc), status=400)
    except APIError as exc:
        field = "allowed_ips" if exc.status == 409 and "your_ip" in exc.extra else "_allow"
        return security_page(allow_form=shown, errors={field: exc.message}, status=exc.status)
    flash("The allow list is saved.")
    return redirect(url_for(".index"))


@bp.post("/security/block")
@needs("admin:write")
def block():
    """POST /api/security/block-ip from a form; your own address is refused."""
    form = request.form
    body = {"ip": form.get("ip", "").strip(), "reason": form.get("reason", "").strip() or "manual"}
    if form.get("duration_hours", "").strip():
        body["duration_hours"] = number(form["duration_hours"])
    try:
        blocked = block_address(BlockIPRequest().load(body))
    except ValidationError as exc:
        return security_page(block_form=form, errors=field_errors(exc), status=400)
    except APIError as exc:
        return security_page(block_form=form, errors={"ip": exc.message}, status=exc.status)
    flash(f"Blocked {blocked['ip']}.")
    return redirect(url_for(".index"))


@bp.post("/security/blocked/<ip>/unblock")
@needs("admin:write")
def unblock(ip: str):
    """DELETE /api/security/blocked-ips/<ip> from a button."""
    flash(f"Unblocked {unblock_address(ip)}.")
    return redirect(url_for(".index"))


@bp.get("/audit")
@needs("admin:write")
def audit_log():
    """GET /api/security/audit as a page: filters and cursor pages, newest first."""
    args = {k: v for k, v in request.args.items() if v}
    query = parse_list_args(args, AUDIT_FIELDS, shorthands=SHORTHANDS, default_sort="-timestamp")
    conn = get_db()
    rows = conn.execute(*query.page_sql("audit_log")).fetchall()
    total = conn.execute(*query.count_sql("audit_log")).fetchone()[0]
    page, pagination, _links = build_page(rows, query, total=total, base_path=request.path,
                                          args=args)
    next_cursor = pagination.get("next_cursor") or pagination.get("cursor")
    return render_template(
        "audit.html", entries=[audit.entry_view(row) for row in page], total=total, args=args,
        events=audit.EVENTS, severities=audit.SEVERITIES,
        first_args={k: v for k, v in args.items() if k not in ("cursor", "offset")},
        next_args={**args, "cursor": next_cursor} if next_cursor else None)

"""/events: the live event feed with a type filter; /webhooks: list, register (the secret
shown once), deliveries log, test send, delete. Same services as /api/events and
/api/webhooks."""
from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from marshmallow import ValidationError

from ..api.events import EVENT_FIELDS, stream_types
from ..config import current as current_config
from ..db import get_db, transaction
from ..errors import APIError
from ..schemas import WebhookCreateRequest
from ..services import events, webhooks
from ..services.pagination import Field, build_page, parse_list_args
from .common import field_errors, needs

bp = Blueprint("events", __name__)
FEED_PAGE = 30
DELIVERIES_SHOWN = 20
# The API's event fields, plus the id the console sorts by (newest first, on the key).
NEWEST_FIRST = {**EVENT_FIELDS, "id": Field("id", "int", nullable=False)}


def feed(args) -> dict:
    """Events newest first, of the chosen type, by cursor pages of FEED_PAGE."""
    chosen = stream_types({"type": args.get("type", "")})  # 400 for an unknown type
    kept = {k: v for k, v in args.items() if k in ("type", "cursor") and v}
    query = parse_list_args({**kept, "limit": str(FEED_PAGE)}, NEWEST_FIRST,
                            shorthands={"type": ("type", "eq")}, default_sort="-id")
    rows = get_db().execute(*query.page_sql("events")).fetchall()
    page, pagination, _links = build_page(rows, query, total=None, base_path=request.path,
                                          args=kept)
    cursor = pagination.get("next_cursor") or pagination.get("cursor")
    return {"events": [events.public(r) for r in page], "args": kept,
            "live_types": chosen or list(events.TYPES),
            "first_args": {k: v for k, v in kept.items() if k != "cursor"},
            "next_args": {**kept, "cursor": cursor} if cursor else None}


@bp.get("/events")
@needs("agents:read")
def index():
    """The feed; on its first page, app.js adds events as the stream announces them."""
    return render_template("events.html", types=events.TYPES, **feed(request.args))


@bp.get("/live/feed")
@needs("agents:read")
def live_feed():
    """The feed's list, which app.js swaps in when the stream says something happened."""
    return render_template("partials/event_feed.html", **feed(request.args))


def webhooks_page(form=None, errors: dict | None = None, status: int = 200):
    rows = webhooks.list_all(get_db())
    return render_template("webhooks.html", hooks=[webhooks.view(r) for r in rows],
                           event_types=events.TYPES, form=form or {}, errors=errors or {},
                           chosen=form.getlist("events") if form else []), status


@bp.get("/webhooks")
@needs("admin:write")
def webhooks_index():
    """Every webhook, and the form to register one."""
    return webhooks_page()


@bp.post("/webhooks")
@needs("admin:write")
def register():
    """Register a webhook; a generated secret is shown on this page only."""
    form = request.form
    body = {"url": form.get("url", "").strip(), "events": form.getlist("events"),
            "secret": form.get("secret") or None}
    try:
        req = WebhookCreateRequest().load(body)
        with transaction(get_db()) as conn:
            hook, generated = webhooks.create(
                conn, current_config(), current_app.extensions["j1msky_master"], url=req["url"],
                events=req["events"], secret=req["secret"], key_id=g.key["id"])
    except ValidationError as exc:
        return webhooks_page(form, field_errors(exc), 400)
    except APIError as exc:
        return webhooks_page(form, {"url": exc.message}, exc.status)
    return render_template("webhook_created.html", hook=hook, secret=generated)


@bp.get("/webhooks/<webhook_id>")
@needs("admin:write")
def webhook(webhook_id: str):
    """A webhook and its latest deliveries: time, status, duration, error of each try."""
    conn = get_db()
    return render_template("webhook.html", hook=webhooks.view(webhooks.get(conn, webhook_id)),
                           deliveries=webhooks.deliveries(conn, webhook_id, DELIVERIES_SHOWN))


@bp.post("/webhooks/<webhook_id>/test")
@needs("admin:write")
def send_test(webhook_id: str):
    """Queue a signed webhook.test delivery."""
    with transaction(get_db()) as conn:
        webhooks.send_test(conn, webhook_id)
    flash("Test delivery queued: it shows below once sent (reload).")
    return redirect(url_for(".webhook", webhook_id=webhook_id))


@bp.route("/webhooks/<webhook_id>/delete", methods=["GET", "POST"])
@needs("admin:write")
def delete(webhook_id: str):
    """Confirm, then remove a webhook and its pending deliveries."""
    hook = webhooks.view(webhooks.get(get_db(), webhook_id))
    if request.method == "GET":
        return render_template("webhook_delete.html", hook=hook)
    with transaction(get_db()) as conn:
        webhooks.delete(conn, webhook_id)
    flash(f"Deleted the webhook to {hook['url']}.")
    return redirect(url_for(".webhooks_index"))

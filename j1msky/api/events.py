"""/events: the feed of everything that happened, oldest first, by opaque cursor, and
/events/stream: the same events pushed live as Server-Sent Events."""
from __future__ import annotations

import math
import time

from flask import Blueprint, Response, current_app, request

from ..auth import require_scope
from ..config import current as current_config
from ..db import get_db
from ..errors import APIError
from ..services import events, stream
from ..services.pagination import Field, build_page, parse_feed_cursor, parse_list_args

bp = Blueprint("events", __name__)
EVENT_FIELDS = {"type": Field("type", "str", nullable=False),
                "created_at": Field("created_at", "time", nullable=False)}
STREAM_PARAMS = ("type", "cursor")


def check_not_purged(conn, after_id: int) -> None:
    """A cursor from before a retention purge would silently skip events: refuse it."""
    oldest = conn.execute("SELECT min(id) FROM events").fetchone()[0]
    if oldest is None:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        oldest = (row[0] if row else 0) + 1
    if after_id < oldest - 1:
        raise APIError(400, "Cursor has expired: events after it were purged",
                       details={"cursor": ["events after this cursor were purged"]})
    newest = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    if after_id > (newest[0] if newest else 0):
        raise APIError(400, "Invalid cursor", details={"cursor": ["unknown position"]})


@bp.get("/events")
@require_scope("agents:read")
def feed():
    """Events oldest first; follow `pagination.cursor` to get only newer ones."""
    query = parse_list_args(request.args, EVENT_FIELDS, shorthands={"type": ("type", "eq")},
                            default_sort="id", feed=True)
    conn = get_db()
    if query.cursor is not None:
        check_not_purged(conn, query.cursor.last_id)
    rows = conn.execute(*query.page_sql("events")).fetchall()
    page, pagination, links = build_page(rows, query, total=None, base_path=request.path,
                                         args=request.args)
    return {"data": [events.public(r) for r in page], "pagination": pagination, "links": links}


@bp.get("/events/stream")
@require_scope("agents:read")
def live():
    """Events as Server-Sent Events, as they happen; resume with Last-Event-ID."""
    return event_stream()


def event_stream() -> Response:
    """The SSE response for this request's type filter and cursor (the console's live
    view serves it too, behind its session)."""
    types = stream_types(request.args)
    conn = get_db()
    cursor = request.headers.get("Last-Event-ID") or request.args.get("cursor")
    if cursor:
        after_id = parse_feed_cursor(cursor)
        check_not_purged(conn, after_id)
    else:
        after_id = stream.latest_id(conn)
    config = current_config()
    settings = config["streams"]
    gate = stream.gate_of(current_app)
    if not gate.enter(config):
        # A dead client's place is freed at its next heartbeat at the latest.
        raise APIError(503, "Too many live event streams are open: poll GET /api/events,"
                            " or try again later", retry_after=math.ceil(settings["heartbeat_seconds"]))
    body = stream.follow(current_app.config["DATABASE"], after_id=after_id, types=types,
                         deadline=time.monotonic() + settings["max_seconds"],
                         stop=gate.stopping, heartbeat=settings["heartbeat_seconds"],
                         retry=settings["retry_seconds"])
    response = Response(body, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(gate.leave)
    return response


def stream_types(args) -> list[str] | None:
    """`type=agent.completed,agent.failed`: known event types only; absent or empty: all."""
    for key in args:
        if key not in STREAM_PARAMS:
            raise APIError(400, f"unknown query parameter '{key}'; allowed: "
                                + ", ".join(STREAM_PARAMS), details={key: ["unknown parameter"]})
    names = [name.strip() for name in args.get("type", "").split(",") if name.strip()]
    unknown = [name for name in names if name not in events.TYPES]
    if unknown:
        message = f"unknown event type '{unknown[0]}'; allowed: {', '.join(events.TYPES)}"
        raise APIError(400, message, details={"type": [message]})
    return names or None

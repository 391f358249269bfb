"""/events: the feed of everything that happened, oldest first, by opaque cursor."""
from __future__ import annotations

import json

from flask import Blueprint, request

from ..auth import require_scope
from ..db import get_db
from ..errors import APIError
from ..services import clock
from ..services.pagination import Field, build_page, parse_list_args

bp = Blueprint("events", __name__)
EVENT_FIELDS = {"type": Field("type", "str", nullable=False),
                "created_at": Field("created_at", "time", nullable=False)}


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
    data = [{"id": f"evt_{r['id']}", "type": r["type"], "created_at": clock.iso_out(r["created_at"]),
             "data": json.loads(r["data"])} for r in page]
    return {"data": data, "pagination": pagination, "links": links}

"""GET /events: oldest first, opaque cursor, no gaps or repeats, type filter, bad cursors."""
from __future__ import annotations

import datetime as dt

import pytest

from j1msky.db import connection_for, transaction
from j1msky.services import clock, events


def emit_many(app, count: int, event_type: str = "agent.spawned") -> None:
    conn = connection_for(app.config["DATABASE"])
    with transaction(conn):
        for i in range(count):
            events.emit(conn, event_type, {"n": i})


def follow(client, key, **params) -> tuple[list[dict], str | None]:
    """Read the feed to its end; return every event and the cursor to poll from next."""
    seen, cursor = [], None
    while True:
        query = {"limit": 100, **params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/events", headers=key.headers, query_string=query)
        assert response.status_code == 200, response.json
        seen += response.json["data"]
        cursor = response.json["pagination"]["cursor"]
        if not response.json["pagination"]["has_more"]:
            return seen, cursor


def test_the_feed_is_followed_across_1000_events_without_gap_or_repeat(client, app, admin):
    emit_many(app, 600)
    seen, cursor = follow(client, admin)
    emit_many(app, 400)  # arrive while the client is following
    more, cursor = follow(client, admin, cursor=cursor) if cursor else ([], None)
    ids = [int(e["id"][4:]) for e in seen + more]
    assert len(ids) == 1000 and len(set(ids)) == 1000
    assert ids == sorted(ids) and ids == list(range(ids[0], ids[0] + 1000))
    assert [e["data"]["n"] for e in seen + more] == list(range(600)) + list(range(400))
    # nothing new: an empty page that keeps the position
    response = client.get("/api/events", headers=admin.headers, query_string={"cursor": cursor})
    assert response.json["data"] == [] and response.json["pagination"]["cursor"] == cursor


def test_feed_filters_by_type(client, app, admin):
    emit_many(app, 3, "agent.spawned")
    emit_many(app, 2, "agent.completed")
    seen, _ = follow(client, admin, type="agent.completed")
    assert [e["type"] for e in seen] == ["agent.completed"] * 2
    assert set(seen[0]) == {"id", "type", "created_at", "data"}


def test_real_work_leaves_a_trail_of_events(client, app, admin, start_runner):
    start_runner()
    spawned = client.post("/api/spawn", headers=admin.headers,
                          json={"model": "k2p5", "task": "trail"}).json
    from tests.helpers import wait_for
    wait_for(client, admin, spawned["agent_id"])
    seen, _ = follow(client, admin)
    trail = [e["type"] for e in seen if e["data"].get("agent_id") == spawned["agent_id"]]
    assert trail == ["agent.spawned", "agent.started", "agent.completed"]


@pytest.mark.parametrize("cursor", ["garbage!!", "eyJhIjogOTk5OTk5fQ", "e30"])
def test_bad_cursor_is_400(client, app, admin, cursor):
    emit_many(app, 3)
    response = client.get("/api/events", headers=admin.headers, query_string={"cursor": cursor})
    assert response.status_code == 400
    assert "cursor" in response.json["error"]["message"].lower()


def test_cursor_from_before_a_purge_is_400(client, app, admin):
    emit_many(app, 5)
    first = client.get("/api/events?limit=2", headers=admin.headers).json
    later = clock.now() + dt.timedelta(days=31)
    clock.set_clock(lambda: later)
    emit_many(app, 2)
    from j1msky import scheduler
    with app.app_context():
        scheduler.purge_old_events()
    response = client.get("/api/events", headers=admin.headers,
                          query_string={"cursor": first["pagination"]["cursor"]})
    assert response.status_code == 400
    assert response.json["error"]["message"] == "Cursor has expired: events after it were purged"


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 101}, {"offset": 5}, {"sort": "-id"},
                                   {"type": ""} | {"colour": "red"}])
def test_bad_feed_arguments_are_400(client, admin, query):
    assert client.get("/api/events", headers=admin.headers, query_string=query).status_code == 400

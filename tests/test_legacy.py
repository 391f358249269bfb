"""The v3 routes (CONTRACT §2): old header accepted, deprecation headers, 410 after sunset."""
from __future__ import annotations

import datetime as dt

import pytest

from j1msky.services import clock
from tests.helpers import configure

V3_HEADERS = ("Deprecation", "Sunset", "Link")


def legacy_headers(key) -> dict:
    return {"X-API-Key": key.key}


def assert_deprecated(response, successor: str):
    assert response.headers["Deprecation"] == "@1771459200"  # 2026-02-19, v4.0.0
    assert response.headers["Sunset"] == "Thu, 01 Jan 2099 00:00:00 GMT"
    assert response.headers["Link"] == f'<{successor}>; rel="successor-version"'


def test_v3_spawn_status_cancel_work_with_the_old_header(client, admin):
    spawned = client.post("/api/agent", headers=legacy_headers(admin),
                          json={"model": "k2p5", "task": "old client"})
    assert spawned.status_code == 202
    assert_deprecated(spawned, "/api/v4/spawn")
    agent_id = spawned.json["agent_id"]

    status = client.get(f"/api/status?agent_id={agent_id}", headers=legacy_headers(admin))
    assert status.status_code == 200 and status.json["agent_id"] == agent_id
    assert_deprecated(status, f"/api/v4/agent/{agent_id}")

    cancelled = client.delete(f"/api/cancel?agent_id={agent_id}", headers=admin.headers)
    assert cancelled.status_code == 200 and cancelled.json["message"] == "Agent cancelled"
    assert_deprecated(cancelled, f"/api/v4/agent/{agent_id}")


def test_v4_routes_do_not_accept_the_old_header(client, admin):
    response = client.get("/api/agents", headers=legacy_headers(admin))
    assert response.status_code == 401


def test_v3_errors_carry_the_headers_too(client, admin):
    response = client.get("/api/status", headers=legacy_headers(admin))
    assert response.status_code == 400
    assert all(h in response.headers for h in V3_HEADERS)
    response = client.get("/api/status?agent_id=x")
    assert response.status_code == 401
    assert all(h in response.headers for h in V3_HEADERS)


@pytest.mark.parametrize("method, path, successor", [
    ("POST", "/api/agent", "/api/v4/spawn"),
    ("GET", "/api/status?agent_id=subagent_1_2", "/api/v4/agent/subagent_1_2"),
    ("DELETE", "/api/cancel?agent_id=subagent_1_2", "/api/v4/agent/subagent_1_2"),
])
def test_after_sunset_v3_routes_are_410_naming_the_successor(client, app, admin, method, path,
                                                              successor):
    configure(app, legacy_v3={"sunset": "2026-06-01"})
    clock.set_clock(lambda: dt.datetime(2026, 6, 1, 0, 0, 1, tzinfo=dt.timezone.utc))
    response = client.open(path, method=method, headers=legacy_headers(admin),
                           json={"model": "k2p5", "task": "x"})
    assert response.status_code == 410
    assert successor in response.json["error"]["message"]
    assert response.json["error"]["successor"] == successor
    assert response.headers["Sunset"] == "Mon, 01 Jun 2026 00:00:00 GMT"
    assert response.headers["Link"] == f'<{successor}>; rel="successor-version"'

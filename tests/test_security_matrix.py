"""Every route refuses every kind of bad caller (API_REFERENCE "Security Best Practices",
CONTRACT §3 and §9): the right 401/403, the error shape, and no data in the body."""
from __future__ import annotations

import datetime as dt

import pytest

from j1msky.db import connection_for
from j1msky.services import clock
from tests.helpers import configure, sign

ALL_SCOPES = ("agents:read", "agents:write", "billing:read", "admin:write")
ERROR_FIELDS = {"code", "message", "request_id", "your_ip", "retry_after"}


def api_routes(app) -> list[tuple[str, str, str | None]]:
    """(method, concrete path, scope) for every /api route (the /api/v4 copies are the
    same views)."""
    routes = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if not rule.rule.startswith("/api/") or rule.rule.startswith("/api/v4/") \
                or not hasattr(view, "required_scope"):
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", "x-1")
        query = "?agent_id=x-1" if rule.endpoint.startswith("legacy_v3") else ""
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, path + query, view.required_scope))
    return routes


def assert_refused(response, status: int, message_part: str) -> None:
    assert response.status_code == status, (response.status_code, response.json)
    body = response.json
    assert set(body) == {"success", "error"} and body["success"] is False
    assert set(body["error"]) <= ERROR_FIELDS
    assert message_part in body["error"]["message"]


@pytest.fixture
def matrix(app, client, keys, admin):
    """Call every route with given headers / environ; check each answer."""
    configure(app, security={"auth_failures_to_block": 100_000})  # blocks are tested apart
    routes = api_routes(app)
    assert len(routes) >= 39  # every route so far; new ones join the matrix by themselves

    def check(status: int, message_part: str, headers=None, *, environ=None, per_route=None,
              skip_any_key_routes=False):
        for method, path, scope in routes:
            if skip_any_key_routes and scope is None:
                continue
            route_headers = per_route(method, path, scope) if per_route else headers
            response = client.open(path, method=method, headers=route_headers or {},
                                   json={}, environ_base=environ or {})
            assert_refused(response, status, message_part)
    return check


def test_no_key(matrix):
    matrix(401, "Missing API key")


def test_garbled_and_unknown_keys(matrix):
    matrix(401, "Invalid API key", {"Authorization": "Bearer not-a-key"})
    matrix(401, "Invalid API key", {"Authorization": "Bearer live_sk_" + "A" * 43})


def test_revoked_key(matrix, client, keys, admin):
    victim = keys.make(*ALL_SCOPES)
    client.delete(f"/api/keys/{victim.key_id}", headers=admin.headers)
    matrix(401, "API key revoked", victim.headers)


def test_expired_key(matrix, client, keys, admin):
    old = keys.make(*ALL_SCOPES)
    client.post(f"/api/keys/{old.key_id}/rotate", headers=admin.headers)
    later = clock.now() + dt.timedelta(hours=25)
    clock.set_clock(lambda: later)
    matrix(401, "API key expired", old.headers)


def test_wrong_scope(matrix, keys):
    wrong = {scope: keys.make(*[s for s in ALL_SCOPES if s != scope]) for scope in ALL_SCOPES}
    matrix(403, "lacks the", per_route=lambda m, p, scope: wrong[scope].headers,
           skip_any_key_routes=True)


def test_unsigned_when_required(matrix, keys):
    signer = keys.make(*ALL_SCOPES, require_signature=True)
    matrix(401, "Signed request required", signer.headers)


def test_stale_signature(matrix, keys):
    signer = keys.make(*ALL_SCOPES, require_signature=True)
    when = clock.now() - dt.timedelta(seconds=301)
    matrix(401, "more than 300 seconds off",
           per_route=lambda method, path, scope: sign(signer, method, path, "{}", when=when))


def test_replayed_signature(matrix, client, keys):
    signer = keys.make(*ALL_SCOPES, require_signature=True)
    sent = {}

    def replay(method, path, scope):
        headers = sign(signer, method, path, "{}")
        # The first use; closed, so a live events stream gives its place back to the gate.
        client.open(path, method=method, headers=headers, json={}).close()
        sent[path] = headers
        return headers

    matrix(401, "already used", per_route=replay)


def test_blocked_ip(matrix, client, admin):
    response = client.post("/api/security/block-ip", headers=admin.headers,
                           json={"ip": "10.6.6.6", "reason": "abuse", "duration_hours": 1})
    assert response.status_code == 201
    matrix(403, "IP blocked", admin.headers, environ={"REMOTE_ADDR": "10.6.6.6"})


def test_ip_not_whitelisted(matrix, app, admin):
    configure(app, security={"allowed_ips": ["192.168.1.0/24"], "enforce": True})
    matrix(403, "IP not whitelisted", admin.headers, environ={"REMOTE_ADDR": "10.0.0.9"})


def test_matrix_refusals_leave_no_agents_behind(matrix, app, keys):
    matrix(401, "Invalid API key", {"Authorization": "Bearer not-a-key"})
    conn = connection_for(app.config["DATABASE"])
    assert conn.execute("SELECT count(*) FROM agents").fetchone()[0] == 0

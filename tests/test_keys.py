"""/keys endpoints and the `j1msky keys` commands."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from j1msky.cli import cli
from j1msky.services import keys as key_service


def key_rows(app):
    """Every stored key (last_used_at aside: using a key is not changing it)."""
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        return conn.execute("SELECT id, name, key_hash, scopes, signing_salt, require_signature,"
                            " max_concurrent, expires_at, revoked_at, revoke_reason, rotated_to"
                            " FROM api_keys ORDER BY id").fetchall()
    finally:
        conn.close()


def test_create_key_shows_key_and_secret_once(client, admin):
    response = client.post("/api/keys", headers=admin.headers,
                           json={"name": "ci", "scopes": ["agents:read", "agents:write"],
                                 "signing": True, "max_concurrent_agents": 3})
    assert response.status_code == 201
    body = response.json
    assert body["key"].startswith("live_sk_")
    assert body["key_id"].startswith("key_")
    assert body["api_secret"].startswith("sig_")
    assert body["max_concurrent_agents"] == 3
    listed = client.get("/api/keys", headers=admin.headers).json
    entry = next(k for k in listed["data"] if k["key_id"] == body["key_id"])
    assert "key" not in entry and "api_secret" not in entry
    assert body["key"] not in json.dumps(listed)
    assert entry["scopes"] == ["agents:read", "agents:write"]
    assert entry["status"] == "active"


def test_a_key_created_with_an_expiry_stops_working_then(client, app, admin):
    created = client.post("/api/keys", headers=admin.headers,
                          json={"name": "trial", "scopes": ["agents:read"],
                                "expires_in_days": 7}).json
    expires = dt.datetime.fromisoformat(created["expires_at"].replace("Z", "+00:00"))
    in_a_week = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7)
    assert abs((expires - in_a_week).total_seconds()) < 60
    auth = {"Authorization": f"Bearer {created['key']}"}
    assert client.get("/api/health", headers=auth).status_code == 200
    conn = sqlite3.connect(app.config["DATABASE"])  # a week later
    conn.execute("UPDATE api_keys SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE id = ?",
                 (created["key_id"],))
    conn.commit()
    conn.close()
    key_service.cache.clear()  # as a change by another process is seen within its TTL
    assert client.get("/api/health", headers=auth).status_code == 401


@pytest.mark.parametrize("body, field", [
    ({"scopes": ["agents:read"]}, "name"),
    ({"name": "", "scopes": ["agents:read"]}, "name"),
    ({"name": "x", "scopes": []}, "scopes"),
    ({"name": "x", "scopes": ["root"]}, "scopes"),
    ({"name": "x", "scopes": "agents:read"}, "scopes"),
    ({"name": "x", "scopes": ["agents:read"], "signing": "yes please"}, "signing"),
    ({"name": "x", "scopes": ["agents:read"], "max_concurrent_agents": 0},
     "max_concurrent_agents"),
    ({"name": "x", "scopes": ["agents:read"], "admin": True}, "admin"),
    ({"name": "x", "scopes": ["agents:read"], "expires_in_days": 0}, "expires_in_days"),
    ({"name": "x", "scopes": ["agents:read"], "expires_in_days": 3651}, "expires_in_days"),
    ({"name": "x", "scopes": ["agents:read"], "expires_in_days": "7"}, "expires_in_days"),
])
def test_bad_key_requests_are_400_and_create_nothing(client, app, admin, body, field):
    before = key_rows(app)
    response = client.post("/api/keys", headers=admin.headers, json=body)
    assert response.status_code == 400
    assert field in response.json["error"]["details"]
    assert key_rows(app) == before


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/keys/key_missing/rotate"), ("DELETE", "/api/keys/key_missing")])
def test_unknown_key_is_404(client, admin, method, path):
    response = client.open(path, method=method, headers=admin.headers)
    assert response.status_code == 404
    assert response.json["error"]["message"] == "API key 'key_missing' not found"


def test_revoking_twice_is_409_and_rotating_a_revoked_key_is_409(client, keys, admin, app):
    victim = keys.make("agents:read")
    assert client.delete(f"/api/keys/{victim.key_id}", headers=admin.headers).status_code == 200
    before = key_rows(app)
    assert client.delete(f"/api/keys/{victim.key_id}", headers=admin.headers).status_code == 409
    assert client.post(f"/api/keys/{victim.key_id}/rotate",
                       headers=admin.headers).status_code == 409
    assert key_rows(app) == before


def test_revoke_rejects_bad_options(client, keys, admin, app):
    victim = keys.make("agents:read")
    before = key_rows(app)
    response = client.delete(f"/api/keys/{victim.key_id}", headers=admin.headers,
                             json={"reason": 5})
    assert response.status_code == 400
    assert key_rows(app) == before


def test_cli_keys_create_list_rotate_revoke(cli_runner):
    result = cli_runner.invoke(cli, args=["keys", "create", "--name", "pi", "--scope", "agents:read",
                                     "--scope", "admin:write", "--signing", "--json"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert set(created) == {"key_id", "key", "api_secret"}
    listed = cli_runner.invoke(cli, args=["keys", "list"]).output
    assert created["key_id"] in listed and created["key"] not in listed
    rotated = cli_runner.invoke(cli, args=["keys", "rotate", created["key_id"], "--json"])
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.output)["key"] != created["key"]
    assert cli_runner.invoke(cli, args=["keys", "revoke", created["key_id"]]).exit_code == 0
    again = cli_runner.invoke(cli, args=["keys", "revoke", created["key_id"]])
    assert again.exit_code == 1
    assert "already revoked" in again.output


def test_cli_keys_create_with_an_expiry(cli_runner, app):
    result = cli_runner.invoke(cli, args=["keys", "create", "--name", "trial", "--scope",
                                          "agents:read", "--expires-days", "2", "--json"])
    assert result.exit_code == 0, result.output
    conn = sqlite3.connect(app.config["DATABASE"])
    expires_at = conn.execute("SELECT expires_at FROM api_keys WHERE id = ?",
                              (json.loads(result.output)["key_id"],)).fetchone()[0]
    conn.close()
    expected = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    assert expires_at[:10] == expected.strftime("%Y-%m-%d")
    refused = cli_runner.invoke(cli, args=["keys", "create", "--name", "x", "--scope",
                                           "agents:read", "--expires-days", "0"])
    assert refused.exit_code == 2


def test_cli_refuses_unknown_scope(cli_runner):
    result = cli_runner.invoke(cli, args=["keys", "create", "--name", "x", "--scope", "root"])
    assert result.exit_code == 2

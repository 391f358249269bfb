"""Authentication (CONTRACT §3): keys, scopes, expiry, rotation, revocation, signing."""
from __future__ import annotations

import datetime as dt

import pytest

from j1msky.services import clock
from tests.helpers import dumps, sign

SCOPED_ROUTES = [
    ("GET", "/api/agents", "agents:read"),
    ("GET", "/api/agent/subagent_1_1", "agents:read"),
    ("POST", "/api/spawn", "agents:write"),
    ("DELETE", "/api/agent/subagent_1_1", "agents:write"),
    ("GET", "/api/keys", "admin:write"),
    ("POST", "/api/keys", "admin:write"),
]


def error_of(response) -> dict:
    assert response.is_json, response.data
    assert response.json["success"] is False
    error = response.json["error"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    return error


@pytest.mark.parametrize("header, message", [
    (None, "Missing API key: send 'Authorization: Bearer <key>'"),
    ("Bearer", "Missing API key: send 'Authorization: Bearer <key>'"),
    ("Basic dXNlcjpwYXNz", "Missing API key: send 'Authorization: Bearer <key>'"),
    ("Bearer not-a-key", "Invalid API key"),
    ("Bearer live_sk_" + "x" * 43, "Invalid API key"),
    ("Bearer live_sk_' OR 1=1 --", "Invalid API key"),
])
def test_missing_or_garbled_key_is_401(client, header, message):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/health", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["message"] == message


@pytest.mark.parametrize("method, path, scope", SCOPED_ROUTES)
def test_key_without_the_scope_is_403_and_with_it_passes_auth(client, keys, method, path, scope):
    others = [s for s in ("agents:read", "agents:write", "billing:read", "admin:write")
              if s != scope]
    wrong = keys.make(*others)
    response = client.open(path, method=method, headers=wrong.headers, json={})
    assert response.status_code == 403
    assert error_of(response)["message"] == f"API key lacks the '{scope}' scope"
    right = keys.make(scope)
    response = client.open(path, method=method, headers=right.headers, json={})
    assert response.status_code not in (401, 403)


def test_health_accepts_any_valid_key(client, keys):
    response = client.get("/api/health", headers=keys.make("billing:read").headers)
    assert response.status_code == 200
    assert set(response.json) >= {"status", "uptime_seconds", "error_rate", "models_configured"}


def test_revoked_key_is_401(client, keys, admin):
    victim = keys.make("agents:read")
    assert client.get("/api/agents", headers=victim.headers).status_code == 200
    response = client.delete(f"/api/keys/{victim.key_id}", headers=admin.headers,
                             json={"reason": "suspected_leak", "notify_user": True})
    assert response.status_code == 200
    assert response.json["revoke_reason"] == "suspected_leak"
    response = client.get("/api/agents", headers=victim.headers)
    assert response.status_code == 401
    assert error_of(response)["message"] == "API key revoked"


def test_rotated_key_works_through_the_grace_period_then_expires(client, keys, admin):
    old = keys.make("agents:read")
    response = client.post(f"/api/keys/{old.key_id}/rotate", headers=admin.headers)
    assert response.status_code == 201
    new_key = response.json["key"]
    assert response.json["scopes"] == ["agents:read"]
    assert response.json["replaces"] == old.key_id
    for key in (old.key, new_key):
        assert client.get("/api/agents", headers={"Authorization": f"Bearer {key}"}
                          ).status_code == 200
    later = clock.now() + dt.timedelta(hours=24, seconds=1)
    clock.set_clock(lambda: later)
    response = client.get("/api/agents", headers=old.headers)
    assert response.status_code == 401
    assert error_of(response)["message"] == "API key expired"
    assert client.get("/api/agents", headers={"Authorization": f"Bearer {new_key}"}
                      ).status_code == 200


def test_key_for_another_environment_is_401(client, app, keys):
    key = keys.make("agents:read")
    app.extensions["j1msky_config"].update(lambda c: c.update(environment="dev"))
    response = client.get("/api/agents", headers=key.headers)
    assert response.status_code == 401
    assert "'dev' environment" in error_of(response)["message"]


# Request signing ----------------------------------------------------------------

def test_signed_request_is_accepted(client, keys):
    key = keys.make("agents:read", require_signature=True)
    response = client.get("/api/agents?limit=5", headers=sign(key, "GET", "/api/agents?limit=5"))
    assert response.status_code == 200, response.json


def test_signed_post_covers_the_body(client, keys):
    key = keys.make("agents:write", require_signature=True)
    body = dumps({"model": "k2p5", "task": "test"})
    headers = sign(key, "POST", "/api/spawn", body)
    assert client.post("/api/spawn", data=body, headers=headers).status_code == 202
    tampered = dumps({"model": "opus", "task": "test"})
    headers = sign(key, "POST", "/api/spawn", body)
    response = client.post("/api/spawn", data=tampered, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["message"] == "Invalid request signature"


def stale(key):
    return sign(key, "GET", "/api/agents", when=clock.now() - dt.timedelta(seconds=301))


def future(key):
    return sign(key, "GET", "/api/agents", when=clock.now() + dt.timedelta(seconds=301))


def unsigned(key):
    return key.headers


def wrong_secret(key):
    return sign(key, "GET", "/api/agents", secret="sig_not_the_secret")


def garbled_time(key):
    return {**sign(key, "GET", "/api/agents"), "X-Timestamp": "yesterday"}


def wrong_path(key):
    return sign(key, "GET", "/api/keys")


@pytest.mark.parametrize("make_headers, message", [
    (unsigned, "Signed request required: send X-Timestamp and X-Signature"),
    (stale, "Request timestamp is more than 300 seconds off"),
    (future, "Request timestamp is more than 300 seconds off"),
    (wrong_secret, "Invalid request signature"),
    (garbled_time, "X-Timestamp must be an ISO 8601 time"),
    (wrong_path, "Invalid request signature"),
])
def test_bad_signatures_are_401(client, keys, make_headers, message):
    key = keys.make("agents:read", require_signature=True)
    response = client.get("/api/agents", headers=make_headers(key))
    assert response.status_code == 401
    assert error_of(response)["message"] == message


def test_replayed_signature_is_refused(client, keys):
    key = keys.make("agents:read", require_signature=True)
    headers = sign(key, "GET", "/api/agents")
    assert client.get("/api/agents", headers=headers).status_code == 200
    response = client.get("/api/agents", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["message"] == "Request signature already used (replay)"


def test_config_can_require_signatures_from_every_key(client, app, keys):
    plain = keys.make("agents:read")
    app.extensions["j1msky_config"].update(
        lambda c: c.setdefault("security", {}).update(require_signed_requests=True))
    response = client.get("/api/agents", headers=plain.headers)
    assert response.status_code == 401
    signer = keys.make("agents:read", signing=True)
    assert client.get("/api/agents", headers=sign(signer, "GET", "/api/agents")
                      ).status_code == 200


def test_no_plaintext_key_or_secret_in_the_database_file(client, app, keys, admin):
    made = [keys.make("agents:read", signing=True) for _ in range(3)]
    created = client.post("/api/keys", headers=admin.headers,
                          json={"name": "api", "scopes": ["agents:read"], "signing": True}).json
    rotated = client.post(f"/api/keys/{made[0].key_id}/rotate", headers=admin.headers).json
    client.get("/api/agents", headers=sign(made[1], "GET", "/api/agents"))
    secrets = [k.key for k in made] + [k.api_secret for k in made] + \
        [created["key"], created["api_secret"], rotated["key"], rotated["api_secret"],
         admin.key]
    blob = b""
    for suffix in ("", "-wal"):
        try:
            with open(app.config["DATABASE"] + suffix, "rb") as fh:
                blob += fh.read()
        except FileNotFoundError:
            pass
    for secret in secrets:
        assert secret.encode() not in blob
        assert secret[8:30].encode() not in blob  # no fragment beyond the shown prefix

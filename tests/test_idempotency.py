"""Idempotency-Key on writes (CONTRACT §4): replay, mismatch, scope, expiry, what is not stored."""
from __future__ import annotations

import datetime as dt

import pytest

from j1msky.db import connection_for
from j1msky.services import clock, idempotency
from tests.helpers import agent_count


def post(client, key, idem, body, path="/api/spawn"):
    return client.post(path, headers={**key.headers, "Idempotency-Key": idem}, json=body)


def test_same_key_same_body_replays_the_first_answer(client, app, admin):
    body = {"model": "k2p5", "task": "once"}
    first = post(client, admin, "k-1", body)
    second = post(client, admin, "k-1", body)
    assert first.status_code == second.status_code == 202
    assert second.json == first.json
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert agent_count(app) == 1


def test_quoted_and_bare_keys_are_the_same_key(client, app, admin):
    body = {"model": "k2p5", "task": "once"}
    post(client, admin, '"abc"', body)
    assert post(client, admin, "abc", body).headers["Idempotent-Replayed"] == "true"
    assert agent_count(app) == 1


def test_same_idempotency_key_other_body_is_409(client, app, admin):
    post(client, admin, "k-2", {"model": "k2p5", "task": "one"})
    response = post(client, admin, "k-2", {"model": "k2p5", "task": "two"})
    assert response.status_code == 409
    assert response.json["error"]["message"] == "Idempotency key payload mismatch"
    assert agent_count(app) == 1


def test_same_key_on_another_path_is_a_mismatch(client, app, admin):
    post(client, admin, "k-3", {"model": "k2p5", "task": "one"})
    response = client.post("/api/spawn-batch", headers={**admin.headers, "Idempotency-Key": "k-3"},
                           json={"agents": [{"model": "k2p5", "task": "one"}]})
    assert response.status_code == 409


def test_keys_are_scoped_to_the_calling_api_key(client, app, keys):
    one, two = keys.make("agents:write"), keys.make("agents:write")
    body = {"model": "k2p5", "task": "mine"}
    assert "Idempotent-Replayed" not in post(client, one, "shared", body).headers
    assert "Idempotent-Replayed" not in post(client, two, "shared", body).headers
    assert agent_count(app) == 2


def test_in_progress_key_is_409(client, app, admin):
    conn = connection_for(app.config["DATABASE"])
    body = b'{"model": "k2p5", "task": "slow"}'
    fp = idempotency.fingerprint("POST", "/api/spawn", body)
    assert idempotency.claim(conn, admin.key_id, "busy", fp) is None
    response = client.post("/api/spawn", data=body, headers={
        **admin.headers, "Idempotency-Key": "busy", "Content-Type": "application/json"})
    assert response.status_code == 409
    assert response.json["error"]["message"] == "Request with this idempotency key is in progress"
    assert agent_count(app) == 0


@pytest.mark.parametrize("first_body", [
    {"model": "k2p5", "task": ""},          # 400: refused before execution
    {"model": "nope", "task": "x"},
])
def test_refusals_are_not_stored_so_a_fixed_retry_runs(client, app, admin, first_body):
    assert post(client, admin, "fix-me", first_body).status_code == 400
    retry = post(client, admin, "fix-me", {"model": "k2p5", "task": "fixed"})
    assert retry.status_code == 202 and "Idempotent-Replayed" not in retry.headers
    assert agent_count(app) == 1


def test_429_is_not_stored(client, app, keys):
    key = keys.make("agents:write", max_concurrent=1)
    post(client, key, "a", {"model": "k2p5", "task": "one"})
    assert post(client, key, "b", {"model": "k2p5", "task": "two"}).status_code == 429
    conn = connection_for(app.config["DATABASE"])
    conn.execute("UPDATE agents SET status = 'completed'")
    assert post(client, key, "b", {"model": "k2p5", "task": "two"}).status_code == 202


def test_a_409_outcome_is_stored_and_replayed(client, app, admin):
    agent_id = post(client, admin, "s", {"model": "k2p5", "task": "x"}).json["agent_id"]
    client.delete(f"/api/agent/{agent_id}", headers=admin.headers)
    delete = {**admin.headers, "Idempotency-Key": "del-1"}
    first = client.delete(f"/api/agent/{agent_id}", headers=delete)
    second = client.delete(f"/api/agent/{agent_id}", headers=delete)
    assert first.status_code == second.status_code == 409
    assert second.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("value", ["", '""', "x" * 256])
def test_bad_idempotency_key_is_400(client, app, admin, value):
    response = post(client, admin, value, {"model": "k2p5", "task": "x"})
    assert response.status_code == 400
    assert response.json["error"]["message"] == "Idempotency-Key must be 1 to 255 characters"
    assert agent_count(app) == 0


def test_keys_expire_after_24_hours_and_are_purged(client, app, admin):
    body = {"model": "k2p5", "task": "daily"}
    post(client, admin, "day", body)
    later = clock.now() + dt.timedelta(hours=24, seconds=1)
    clock.set_clock(lambda: later)
    assert "Idempotent-Replayed" not in post(client, admin, "day", body).headers
    assert agent_count(app) == 2
    post(client, admin, "other", body)
    clock.set_clock(lambda: later + dt.timedelta(hours=25))
    conn = connection_for(app.config["DATABASE"])
    assert idempotency.purge_expired(conn) == 2
    assert conn.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0] == 0


def test_unexpected_error_releases_the_key_and_rolls_back(client, app, admin):
    conn = connection_for(app.config["DATABASE"])
    conn.execute("CREATE TRIGGER explode BEFORE INSERT ON agents BEGIN"
                 " SELECT RAISE(ABORT, 'disk on fire'); END")
    response = post(client, admin, "boom", {"model": "k2p5", "task": "x"})
    assert response.status_code == 500
    assert conn.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0] == 0
    conn.execute("DROP TRIGGER explode")
    assert post(client, admin, "boom", {"model": "k2p5", "task": "x"}).status_code == 202

"""Privacy on spawn (API_REFERENCE "PII Handling", CONTRACT §9): detection, masking,
encryption at rest, retention and erasure, export; cost spike suspension."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import sqlite3

import pytest

from j1msky.cli import cli
from j1msky.db import connection_for, transaction
from j1msky.services import agentdata, clock
from tests.helpers import configure, wait_for

SECRET_TASK = "Email alice@example.com about card 4111 1111 1111 1111 before friday"


def db_bytes(app) -> bytes:
    blob = b""
    for suffix in ("", "-wal"):
        path = app.config["DATABASE"] + suffix
        if os.path.exists(path):
            with open(path, "rb") as fh:
                blob += fh.read()
    return blob


def events_for(app, agent_id: str) -> list[dict]:
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        return [json.loads(r[0]) for r in conn.execute(
            "SELECT data FROM events WHERE json_extract(data, '$.agent_id') = ? ORDER BY id",
            (agent_id,))]
    finally:
        conn.close()


def spawn(client, key, task=SECRET_TASK, **privacy):
    response = client.post("/api/spawn", headers=key.headers,
                           json={"model": "k2p5", "task": task, "privacy": privacy})
    assert response.status_code == 202, response.json
    return response.json["agent_id"]


def test_pii_is_detected_in_task_and_result(client, admin, start_runner):
    start_runner()
    agent = wait_for(client, admin, spawn(client, admin, detect_pii=True))
    assert agent["pii_detected"] == ["card", "email"]
    assert agent["privacy"]["detect_pii"] is True
    other = wait_for(client, admin, spawn(client, admin, task="nothing personal here"))
    assert other["pii_detected"] is None


def test_masking_reaches_events_and_webhook_payloads(client, app, admin, start_runner):
    configure(app, webhooks={"allowed_networks": ["127.0.0.0/8"]})
    client.post("/api/webhooks", headers=admin.headers,
                json={"url": "http://127.0.0.1:9/hook", "events": ["agent.completed"]})
    start_runner()
    agent_id = spawn(client, admin, mask_pii_in_logs=True)
    agent = wait_for(client, admin, agent_id)
    assert agent["task"] == SECRET_TASK  # the owner still reads it through the API
    for data in events_for(app, agent_id):
        assert "alice@example.com" not in json.dumps(data)
        assert "[email]" in data["task"] and "[card]" in data["task"]
    conn = sqlite3.connect(app.config["DATABASE"])
    [payload] = [r[0] for r in conn.execute("SELECT payload FROM webhook_deliveries")]
    conn.close()
    assert "alice@example.com" not in payload and "4111" not in payload


def test_encrypted_task_and_result_are_not_in_the_file_but_read_back(client, app, admin,
                                                                     start_runner):
    start_runner()
    agent_id = spawn(client, admin, encrypt_output=True)
    agent = wait_for(client, admin, agent_id)
    assert agent["status"] == "completed" and agent["encrypted"] is True
    assert agent["task"] == SECRET_TASK and "alice@example.com" in agent["result"]
    blob = db_bytes(app)
    for needle in (b"alice@example.com", b"4111 1111", b"before friday"):
        assert needle not in blob
    for data in events_for(app, agent_id):
        assert data["task"] is None and data["result"] is None and data["encrypted"] is True
    key_file = os.path.join(app.instance_path, "data.key")
    assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"


def test_data_key_can_come_from_the_environment(app, monkeypatch):
    from j1msky.services.crypto import DataKey
    raw = os.urandom(32)
    key = DataKey(app.instance_path, environ={"J1MSKY_DATA_KEY": base64.b64encode(raw).decode()})
    assert key.get() == raw
    assert not os.path.exists(os.path.join(app.instance_path, "data.key"))
    with pytest.raises(ValueError):
        DataKey(app.instance_path, environ={"J1MSKY_DATA_KEY": "c2hvcnQ="}).get()


def test_retention_erases_task_and_result_after_the_days_keeping_cost(client, app, admin,
                                                                      start_runner, cli_runner):
    start_runner()
    short = wait_for(client, admin, spawn(client, admin, retention_days=1))
    default = wait_for(client, admin, spawn(client, admin))
    later = clock.now() + dt.timedelta(hours=24, seconds=5)
    clock.set_clock(lambda: later)
    result = cli_runner.invoke(cli, ["purge"])  # what the daily job runs
    assert result.exit_code == 0, result.output
    assert "agent_data: 1" in result.output
    erased = client.get(f"/api/agent/{short['agent_id']}", headers=admin.headers).json
    assert erased["task"] is None and erased["result"] is None
    assert erased["cost"] == short["cost"] and erased["data_erased_at"]
    kept = client.get(f"/api/agent/{default['agent_id']}", headers=admin.headers).json
    assert kept["task"] == SECRET_TASK
    for data in events_for(app, short["agent_id"]):
        assert data["task"] is None and data["result"] is None
    clock.set_clock(lambda: later + dt.timedelta(days=30))
    conn = connection_for(app.config["DATABASE"])
    with transaction(conn):
        assert agentdata.erase_expired(conn) == 1  # the default 30 days


def test_delete_data_erases_at_once(client, app, admin, start_runner):
    waiting = spawn(client, admin)
    response = client.delete(f"/api/agent/{waiting}/data", headers=admin.headers)
    assert response.status_code == 409
    start_runner()
    agent = wait_for(client, admin, waiting)
    response = client.delete(f"/api/agent/{waiting}/data", headers=admin.headers)
    assert response.status_code == 200
    erased = client.get(f"/api/agent/{waiting}", headers=admin.headers).json
    assert erased["task"] is None and erased["result"] is None
    assert erased["cost"] == agent["cost"] and erased["usage"] == agent["usage"]
    assert b"alice@example.com" not in db_bytes(app)
    assert client.delete("/api/agent/subagent_1_1/data", headers=admin.headers).status_code == 404


def test_export_streams_every_agent_as_ndjson(client, admin, keys, start_runner):
    start_runner()
    ids = [spawn(client, admin, encrypt_output=bool(i % 2)) for i in range(3)]
    for agent_id in ids:
        wait_for(client, admin, agent_id)
    response = client.get("/api/export", headers=admin.headers)
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    records = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [r["agent_id"] for r in records] == ids
    assert all(r["task"] == SECRET_TASK for r in records)
    reader = keys.make("agents:read", "agents:write")
    assert client.get("/api/export", headers=reader.headers).status_code == 403


@pytest.mark.parametrize("privacy, field", [
    ({"detect_pii": "yes"}, "detect_pii"),
    ({"encrypt_output": 1}, "encrypt_output"),
    ({"mask_pii_in_logs": None}, "mask_pii_in_logs"),
    ({"retention_days": 0}, "retention_days"),
    ({"retention_days": "7"}, "retention_days"),
    ({"retention_days": 99999}, "retention_days"),
    ({"shred": True}, "shred"),
])
def test_bad_privacy_options_are_400_and_create_nothing(client, app, admin, privacy, field):
    response = client.post("/api/spawn", headers=admin.headers,
                           json={"model": "k2p5", "task": "x", "privacy": privacy})
    assert response.status_code == 400
    assert field in response.json["error"]["details"]["privacy"]
    conn = sqlite3.connect(app.config["DATABASE"])
    assert conn.execute("SELECT count(*) FROM agents").fetchone()[0] == 0
    conn.close()
    response = client.post("/api/spawn", headers=admin.headers,
                           json={"model": "k2p5", "task": "x", "privacy": "on"})
    assert response.status_code == 400


def test_cost_spike_suspends_the_key_until_an_admin_lifts_it(client, app, admin, keys,
                                                             start_runner):
    configure(app, security={"cost_spike_per_hour": 0.00001})
    spender = keys.make("agents:read", "agents:write")
    start_runner()
    wait_for(client, spender, spawn(client, spender, task="spend a little"))
    response = client.post("/api/spawn", headers=spender.headers,
                           json={"model": "k2p5", "task": "more"})
    assert response.status_code == 403
    assert "suspended from spawning" in response.json["error"]["message"]
    assert client.get("/api/agents", headers=spender.headers).status_code == 200
    conn = sqlite3.connect(app.config["DATABASE"])
    [violation] = [json.loads(r[0]) for r in conn.execute(
        "SELECT data FROM events WHERE type = 'security.violation'")]
    conn.close()
    assert violation["kind"] == "cost_spike" and violation["key_id"] == spender.key_id
    lifted = client.post(f"/api/keys/{spender.key_id}/unsuspend", headers=admin.headers)
    assert lifted.status_code == 200 and lifted.json["suspended_until"] is None
    configure(app, security={"cost_spike_per_hour": 100})
    assert client.post("/api/spawn", headers=spender.headers,
                       json={"model": "k2p5", "task": "again"}).status_code == 202


def test_a_cost_spike_suspension_lapses_after_the_hour(client, app, keys, start_runner):
    configure(app, security={"cost_spike_per_hour": 0.00001})
    spender = keys.make("agents:read", "agents:write")
    start_runner()
    wait_for(client, spender, spawn(client, spender, task="spend"))
    assert client.post("/api/spawn", headers=spender.headers,
                       json={"model": "k2p5", "task": "x"}).status_code == 403
    later = clock.now() + dt.timedelta(hours=1, seconds=1)
    clock.set_clock(lambda: later)
    assert client.post("/api/spawn", headers=spender.headers,
                       json={"model": "k2p5", "task": "x"}).status_code == 202

"""Webhooks (CONTRACT §8): registration rules, signed at-least-once delivery, retries,
410, redirects, isolation of slow receivers, the delivery log, test sends."""
from __future__ import annotations

import json
import sqlite3
import time

import pytest

from tests.helpers import configure, wait_for
from tests.webhook_receiver import verify

FAST_RETRIES = {"allowed_networks": ["127.0.0.0/8"], "retry_schedule_seconds": [0.1, 0.1, 0.1],
                "timeout_seconds": 1}


@pytest.fixture
def hooks_app(app):
    configure(app, webhooks=FAST_RETRIES)
    return app


def register(client, key, url, events=("agent.completed", "agent.failed"), secret=None):
    body = {"url": url, "events": list(events)}
    if secret:
        body["secret"] = secret
    response = client.post("/api/webhooks", headers=key.headers, json=body)
    assert response.status_code == 201, response.json
    return response.json


def logged_deliveries(client, key, hook, until, timeout: float = 5) -> list[dict]:
    """GET the delivery log until `until` holds for every delivery in it."""
    deadline = time.monotonic() + timeout
    while True:
        data = client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=key.headers
                          ).json["data"]
        if data and all(until(d) for d in data):
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.05)


def rows(app, table: str) -> list:
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        return conn.execute(f"SELECT * FROM {table}").fetchall()
    finally:
        conn.close()


def test_register_shows_a_generated_secret_once_and_never_again(client, hooks_app, admin,
                                                                webhook_receiver):
    created = register(client, admin, webhook_receiver.url + "/hook")
    assert created["secret"].startswith("whsec_")
    assert created["id"].startswith("wh_") and created["active"] is True
    listed = client.get("/api/webhooks", headers=admin.headers).json
    shown = client.get(f"/api/webhooks/{created['id']}", headers=admin.headers).json
    assert created["secret"] not in json.dumps(listed) + json.dumps(shown)
    assert shown["events"] == ["agent.completed", "agent.failed"]
    with open(hooks_app.config["DATABASE"], "rb") as fh:
        assert created["secret"][6:].encode() not in fh.read()


@pytest.mark.parametrize("body, field", [
    ({"url": "not a url", "events": ["agent.completed"]}, "url"),
    ({"url": "ftp://127.0.0.1/x", "events": ["agent.completed"]}, "url"),
    ({"url": "http://127.0.0.1:9/x", "events": ["agent.exploded"]}, "events"),
    ({"url": "http://127.0.0.1:9/x", "events": []}, "events"),
    ({"url": "http://127.0.0.1:9/x"}, "events"),
    ({"url": "http://169.254.169.254/latest/meta-data", "events": ["agent.completed"]}, "url"),
    ({"url": "http://[::1]:9/x", "events": ["agent.completed"]}, "url"),
    ({"url": "http://localhost:9/x", "events": ["agent.completed"]}, "url"),
    ({"url": "http://127.0.0.1:9/x", "events": ["agent.completed"], "secret": "short"}, "secret"),
    ({"url": "http://127.0.0.1:9/x", "events": ["agent.completed"], "colour": 1}, "colour"),
])
def test_bad_registrations_are_400_and_store_nothing(client, app, admin, body, field):
    configure(app, webhooks={"allowed_networks": ["10.9.9.0/24"]})  # not loopback
    response = client.post("/api/webhooks", headers=admin.headers, json=body)
    assert response.status_code == 400
    assert field in response.json["error"]["details"]
    assert rows(app, "webhooks") == []


def test_loopback_is_allowed_only_inside_allowed_networks(client, app, admin):
    body = {"url": "http://127.0.0.1:9/x", "events": ["agent.completed"]}
    assert client.post("/api/webhooks", headers=admin.headers, json=body).status_code == 400
    configure(app, webhooks={"allowed_networks": ["127.0.0.1/32"]})
    assert client.post("/api/webhooks", headers=admin.headers, json=body).status_code == 201


def test_agent_completion_is_delivered_signed_with_the_documented_payload(
        client, hooks_app, admin, webhook_receiver, start_runner, start_dispatcher):
    secret = "my-plain-webhook-secret"
    webhook_receiver.expect_secret(None, secret)
    register(client, admin, webhook_receiver.url + "/hook", secret=secret)
    start_runner()
    start_dispatcher()
    agent_id = client.post("/api/spawn", headers=admin.headers,
                           json={"model": "k2p5", "task": "notify me"}).json["agent_id"]
    agent = wait_for(client, admin, agent_id)
    [delivery] = webhook_receiver.wait_for(1)
    assert delivery["verified"], delivery["error"]
    payload = delivery["json"]
    assert payload["event"] == "agent.completed"
    assert payload["timestamp"].endswith("Z")
    assert payload["data"]["agent_id"] == agent_id
    assert payload["data"]["model"] == "k2p5" and payload["data"]["task"] == "notify me"
    assert payload["data"]["result"] == agent["result"]
    assert payload["data"]["cost"] == agent["cost"]
    assert delivery["headers"]["webhook-id"] == payload["id"]


def test_failed_attempts_are_retried_and_visible_in_the_delivery_log(
        client, hooks_app, admin, webhook_receiver, start_runner, start_dispatcher):
    hook = register(client, admin, webhook_receiver.url + "/hook")
    webhook_receiver.expect_secret(None, hook["secret"])
    webhook_receiver.set(status=500, fail_times=2)
    start_runner()
    start_dispatcher()
    client.post("/api/spawn", headers=admin.headers, json={"model": "k2p5", "task": "retry"})
    received = webhook_receiver.wait_for(3)
    assert [d["status"] for d in received] == [500, 500, 200]
    assert all(d["verified"] for d in received)
    assert len({d["headers"]["webhook-id"] for d in received}) == 1  # the same message
    [delivery] = logged_deliveries(client, admin, hook, until=lambda d: d["state"] != "pending")
    assert delivery["state"] == "delivered" and delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]
    assert delivery["attempt_log"][0]["error"] == "HTTP 500"
    assert all(a["duration_ms"] >= 0 and a["time"] for a in delivery["attempt_log"])


def test_gone_disables_the_webhook(client, hooks_app, admin, webhook_receiver, start_runner,
                                   start_dispatcher):
    hook = register(client, admin, webhook_receiver.url + "/hook")
    webhook_receiver.set(status=410)
    start_runner()
    start_dispatcher()
    for i in range(3):
        client.post("/api/spawn", headers=admin.headers, json={"model": "k2p5", "task": f"t{i}"})
    webhook_receiver.wait_for(1)
    deadline = time.monotonic() + 5
    while client.get(f"/api/webhooks/{hook['id']}", headers=admin.headers).json["active"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shown = client.get(f"/api/webhooks/{hook['id']}", headers=admin.headers).json
    assert shown["disabled_reason"] == "receiver answered 410 Gone"
    time.sleep(0.5)
    sent = webhook_receiver.count()  # the first, and those in flight when its 410 came
    assert sent <= hooks_app.extensions["j1msky_config"].get()["webhooks"][
        "max_in_flight_per_webhook"]
    time.sleep(0.5)
    assert webhook_receiver.count() == sent  # none started after it
    logged = client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin.headers
                        ).json["data"]
    assert {d["state"] for d in logged} <= {"failed", "cancelled"}
    assert sum(len(d["attempt_log"]) for d in logged) == sent  # each request logged once


def test_redirects_are_not_followed(client, hooks_app, admin, webhook_receiver, start_dispatcher):
    hook = register(client, admin, webhook_receiver.url + "/hook")
    webhook_receiver.set("/hook", redirect_to=webhook_receiver.url + "/elsewhere", fail_times=1)
    start_dispatcher()
    client.post(f"/api/webhooks/{hook['id']}/test", headers=admin.headers)
    received = webhook_receiver.wait_for(2)
    assert [(d["path"], d["status"]) for d in received] == [("/hook", 307), ("/hook", 200)]
    assert webhook_receiver.count("/elsewhere") == 0


def test_a_hanging_receiver_does_not_delay_a_healthy_one(client, hooks_app, admin,
                                                         webhook_receiver, start_runner,
                                                         start_dispatcher):
    register(client, admin, webhook_receiver.url + "/slow")
    register(client, admin, webhook_receiver.url + "/fast")
    webhook_receiver.set("/slow", hang=True)
    start_runner()
    start_dispatcher()
    started = time.monotonic()
    for i in range(5):
        client.post("/api/spawn", headers=admin.headers, json={"model": "k2p5", "task": f"t{i}"})
    webhook_receiver.wait_for(5, path="/fast", timeout=5)
    assert time.monotonic() - started < 3
    assert webhook_receiver.count("/slow") <= hooks_app.extensions["j1msky_config"].get()[
        "webhooks"]["max_in_flight_per_webhook"]
    webhook_receiver.set("/slow", hang=False)


def test_test_send_and_delete(client, hooks_app, admin, webhook_receiver, start_dispatcher):
    hook = register(client, admin, webhook_receiver.url + "/hook")
    webhook_receiver.expect_secret(None, hook["secret"])
    start_dispatcher()
    response = client.post(f"/api/webhooks/{hook['id']}/test", headers=admin.headers)
    assert response.status_code == 202
    [delivery] = webhook_receiver.wait_for(1)
    assert delivery["verified"] and delivery["json"]["event"] == "webhook.test"
    assert client.delete(f"/api/webhooks/{hook['id']}", headers=admin.headers).status_code == 200
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/deliveries"), ("POST", "/test")):
        response = client.open(f"/api/webhooks/{hook['id']}{path}", method=method,
                               headers=admin.headers)
        assert response.status_code == 404


def test_destination_is_checked_again_at_delivery(client, hooks_app, admin, webhook_receiver,
                                                  start_dispatcher):
    hook = register(client, admin, webhook_receiver.url + "/hook")
    configure(hooks_app, webhooks={"allowed_networks": []})
    start_dispatcher()
    client.post(f"/api/webhooks/{hook['id']}/test", headers=admin.headers)
    [delivery] = logged_deliveries(client, admin, hook, until=lambda d: d["attempts"] > 0)
    assert delivery["attempt_log"][0]["error"].startswith("destination refused")
    assert webhook_receiver.count() == 0


def test_key_revocation_is_an_event_delivered_to_subscribers(client, hooks_app, admin, keys,
                                                             webhook_receiver, start_dispatcher):
    hook = register(client, admin, webhook_receiver.url + "/hook", events=["key.revoked"])
    victim = keys.make("agents:read")
    start_dispatcher()
    client.delete(f"/api/keys/{victim.key_id}", headers=admin.headers,
                  json={"reason": "suspected_leak", "notify_user": True})
    [delivery] = webhook_receiver.wait_for(1)
    assert verify(hook["secret"], delivery["body"], delivery["headers"]) is None
    assert delivery["json"]["data"]["key_id"] == victim.key_id
    assert delivery["json"]["data"]["notify_user"] is True


def test_webhooks_need_admin_write(client, keys):
    key = keys.make("agents:read", "agents:write", "billing:read")
    assert client.get("/api/webhooks", headers=key.headers).status_code == 403


def test_a_long_backlog_at_a_hanging_receiver_does_not_starve_the_others(
        client, hooks_app, admin, webhook_receiver, start_dispatcher):
    slow = register(client, admin, webhook_receiver.url + "/slow")
    fast = register(client, admin, webhook_receiver.url + "/fast")
    webhook_receiver.set("/slow", hang=True)
    conn = sqlite3.connect(hooks_app.config["DATABASE"])
    conn.executemany(
        "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, state,"
        " next_attempt_at, created_at) VALUES (?, 'webhook.test', '{}', 'pending', ?, ?)",
        [(slow["id"], "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000Z")] * 800)
    conn.commit()
    conn.close()
    start_dispatcher()
    webhook_receiver.wait_for(1, path="/slow")
    client.post(f"/api/webhooks/{fast['id']}/test", headers=admin.headers)
    # Starved, it would wait for 800 timeouts; it may wait for one (the 1 s timeout).
    webhook_receiver.wait_for(1, path="/fast", timeout=5)
    webhook_receiver.set("/slow", hang=False)

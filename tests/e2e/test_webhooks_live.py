"""Webhooks end to end against a real `j1msky serve` and a real receiver."""
from __future__ import annotations

import time

import pytest
import requests

from tests.helpers import config_for_tests
from tests.live import free_port
from tests.webhook_receiver import WebhookReceiver

HOOKS = {"allowed_networks": ["127.0.0.0/8"], "retry_schedule_seconds": [0.3] * 20,
         "timeout_seconds": 2}


@pytest.fixture
def served(live_server_factory):
    server = live_server_factory(config_for_tests(webhooks=HOOKS))
    key = server.create_key("agents:read", "agents:write", "admin:write")["key"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return server, session


def register(server, session, url) -> dict:
    response = session.post(server.url + "/api/webhooks", timeout=5,
                            json={"url": url, "events": ["agent.completed"]})
    assert response.status_code == 201, response.text
    return response.json()


def spawn(server, session) -> str:
    return session.post(server.url + "/api/spawn", timeout=5,
                        json={"model": "k2p5", "task": "tell me when done"}).json()["agent_id"]


def deliveries(server, session, hook) -> list[dict]:
    return session.get(f"{server.url}/api/webhooks/{hook['id']}/deliveries", timeout=5
                       ).json()["data"]


def test_completion_is_delivered_and_verified(served, webhook_receiver):
    server, session = served
    server.start()
    hook = register(server, session, webhook_receiver.url + "/ha")
    webhook_receiver.expect_secret(None, hook["secret"])
    agent_id = spawn(server, session)
    [delivery] = webhook_receiver.wait_for(1)
    assert delivery["verified"], delivery["error"]
    assert delivery["json"]["data"]["agent_id"] == agent_id


def test_receiver_down_for_a_while_gets_it_when_it_returns(served):
    server, session = served
    server.start()
    port = free_port()
    hook = register(server, session, f"http://127.0.0.1:{port}/hook")
    spawn(server, session)
    deadline = time.monotonic() + 15
    while not deliveries(server, session, hook) or \
            deliveries(server, session, hook)[0]["attempts"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with WebhookReceiver(port=port, secret=hook["secret"]) as receiver:
        [delivery] = receiver.wait_for(1, timeout=15)
        assert delivery["verified"]
    [logged] = deliveries(server, session, hook)
    assert logged["state"] == "delivered"
    assert logged["attempts"] >= 3
    assert all(a["status_code"] is None and a["error"] for a in logged["attempt_log"][:-1])
    assert logged["attempt_log"][-1]["status_code"] == 200


def test_kill_9_between_the_event_and_its_delivery_still_delivers(served, webhook_receiver):
    server, session = served
    server.start()
    hook = register(server, session, webhook_receiver.url + "/hook")
    webhook_receiver.expect_secret(None, hook["secret"])
    webhook_receiver.set(hang=True)
    agent_id = spawn(server, session)
    webhook_receiver.wait_for(1)  # the delivery is in flight, unanswered
    server.kill()
    webhook_receiver.set(hang=False)
    server.start()
    received = webhook_receiver.wait_for(2, timeout=15)
    assert received[-1]["verified"] and received[-1]["status"] == 200
    assert received[-1]["json"]["data"]["agent_id"] == agent_id
    # The dispatcher records an answer on its next pass, a moment after the receiver has it.
    deadline = time.monotonic() + 5
    while deliveries(server, session, hook)[0]["state"] != "delivered":
        assert time.monotonic() < deadline, deliveries(server, session, hook)
        time.sleep(0.05)

"""Agents end to end: a real `j1msky serve`, the fake upstream over HTTP."""
from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers import UPSTREAM_ENV, upstream_config

FINISHED = ("completed", "failed", "cancelled")


class Client:
    def __init__(self, server, key: str):
        self.url = server.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def spawn(self, **body) -> dict:
        response = self.session.post(self.url + "/api/spawn", json=body, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()

    def agent(self, agent_id: str) -> dict:
        return self.session.get(f"{self.url}/api/agent/{agent_id}", timeout=10).json()

    def wait(self, agent_id: str, statuses=FINISHED, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            agent = self.agent(agent_id)
            if agent["status"] in statuses or time.monotonic() > deadline:
                return agent
            time.sleep(0.05)


@pytest.fixture
def served(live_server_factory, fake_upstream):
    """A started server whose providers are the fake upstream, and an admin client."""
    config = upstream_config(fake_upstream.url, agents={"workers": 2, "shutdown_grace_seconds": 1})
    server = live_server_factory(config, env=UPSTREAM_ENV)
    key = server.create_key("agents:read", "agents:write")["key"]
    server.start()
    return server, Client(server, key)


def statuses_in(server) -> dict:
    conn = sqlite3.connect(server.instance + "/j1msky.sqlite3")
    try:
        return dict(conn.execute("SELECT status, count(*) FROM agents GROUP BY status"))
    finally:
        conn.close()


def test_spawn_completes_with_the_upstream_text_and_exact_cost(served, fake_upstream):
    server, client = served
    fake_upstream.set("anthropic", text="def fib(n): return n", input_tokens=1000,
                      output_tokens=500)
    agent = client.wait(client.spawn(model="opus", task="fibonacci")["agent_id"])
    assert agent["status"] == "completed"
    assert agent["result"] == "def fib(n): return n"
    assert agent["cost"] == round(1000 * 0.015 / 1000 + 500 * 0.075 / 1000, 6)
    assert fake_upstream.call_count("anthropic") == 1


def test_cancel_mid_flight(served, fake_upstream):
    server, client = served
    fake_upstream.set(hang=True)
    spawned = client.spawn(model="sonnet", task="hang")
    client.wait(spawned["agent_id"], statuses=("running",))
    response = client.session.delete(f"{server.url}/api/agent/{spawned['agent_id']}", timeout=5)
    assert response.status_code == 200
    answer = response.json()  # a call already sent stays reserved until it answers
    assert round(answer["refund"] + answer["pending_charge"], 6) == spawned["estimated_cost"]
    assert client.agent(spawned["agent_id"])["status"] == "cancelled"
    fake_upstream.set(hang=False)
    # the worker is free again: the next agent runs at once
    assert client.wait(client.spawn(model="k2p5", task="next")["agent_id"])["status"] == \
        "completed"


def test_timeout(served, fake_upstream):
    server, client = served
    fake_upstream.set(hang=True)
    agent = client.wait(client.spawn(model="k2p5", task="slow", timeout=1)["agent_id"])
    assert agent["status"] == "failed" and "timed out" in agent["error"]
    fake_upstream.set(hang=False)


def test_fallback_when_one_upstream_is_down(served, fake_upstream):
    server, client = served
    fake_upstream.set("openai", fail_status=500)
    fake_upstream.set("anthropic", text="sonnet answered")
    agent = client.wait(client.spawn(model="k2p5", task="fall back")["agent_id"])
    assert agent["status"] == "completed"
    assert agent["fallback_from"] == "k2p5" and agent["result"] == "sonnet answered"


def test_kill_9_with_agents_in_flight_leaves_nothing_stuck(served, fake_upstream):
    server, client = served
    fake_upstream.set(hang=True)
    ids = [client.spawn(model="k2p5", task=f"in flight {i}")["agent_id"] for i in range(5)]
    client.wait(ids[0], statuses=("running",))
    client.wait(ids[1], statuses=("running",))
    server.kill()
    fake_upstream.set(hang=False)
    server.start()
    agents = [client.wait(agent_id) for agent_id in ids]
    assert sorted(a["status"] for a in agents) == ["completed"] * 3 + ["failed"] * 2
    assert {a["error"] for a in agents if a["status"] == "failed"} == {"interrupted by restart"}
    assert set(statuses_in(server)) <= set(FINISHED)


def test_concurrent_retries_with_one_idempotency_key_make_one_agent(served):
    server, client = served
    body = {"model": "k2p5", "task": "exactly once"}

    def attempt(_):
        return requests.post(server.url + "/api/spawn", json=body, timeout=10, headers={
            **client.session.headers, "Idempotency-Key": "retry-storm"})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(attempt, range(16)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {202, 409}, codes
    created = {r.json()["agent_id"] for r in responses if r.status_code == 202}
    assert len(created) == 1
    assert sum(statuses_in(server).values()) == 1


def test_sigterm_stops_gracefully(served, fake_upstream):
    server, client = served
    fake_upstream.set(hang=True)
    running = client.spawn(model="k2p5", task="too slow for shutdown")["agent_id"]
    client.wait(running, statuses=("running",))
    assert server.stop() == 0
    conn = sqlite3.connect(server.instance + "/j1msky.sqlite3")
    row = conn.execute("SELECT status, error FROM agents WHERE agent_id = ?", (running,)).fetchone()
    conn.close()
    assert row == ("failed", "interrupted by shutdown")
    fake_upstream.set(hang=False)

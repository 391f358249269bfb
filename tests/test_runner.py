"""The runner against the fake upstream over HTTP: providers, costs, fallback, timeout,
cancel mid-flight, recovery after a crash, bounded shutdown."""
from __future__ import annotations

import sqlite3
import time

import pytest

from j1msky.db import connection_for, transaction
from j1msky.services import agents
from tests.helpers import UPSTREAM_ENV, wait_for

pytestmark = pytest.mark.usefixtures("upstream")


def spawn(client, key, **body) -> str:
    response = client.post("/api/spawn", headers=key.headers, json=body)
    assert response.status_code == 202, response.json
    return response.json["agent_id"]


def test_sonnet_runs_on_the_anthropic_messages_api_with_exact_cost(
        client, admin, upstream, start_runner):
    upstream.set("anthropic", text="def fib(n): ...", input_tokens=1200, output_tokens=800)
    start_runner()
    agent = wait_for(client, admin, spawn(client, admin, model="sonnet", task="fibonacci"))
    assert agent["status"] == "completed"
    assert agent["result"] == "def fib(n): ..."
    assert agent["usage"] == {"input_tokens": 1200, "output_tokens": 800}
    assert agent["actual_cost"] == round(1200 * 0.003 / 1000 + 800 * 0.015 / 1000, 6)
    assert agent["simulated"] is False and agent["fallback_from"] is None
    [call] = upstream.requests("anthropic")
    assert call["headers"]["x-api-key"] == UPSTREAM_ENV["TEST_ANTHROPIC_KEY"]
    assert call["headers"]["anthropic-version"]
    assert call["json"]["model"] == "claude-sonnet-4-6"
    assert call["json"]["max_tokens"] == 4096
    assert call["json"]["messages"][-1]["content"] == "fibonacci"


def test_k2p5_runs_on_chat_completions(client, admin, upstream, start_runner):
    upstream.set("openai", text="ok", input_tokens=10, output_tokens=20)
    start_runner()
    agent = wait_for(client, admin, spawn(client, admin, model="k2p5", task="hello"))
    assert agent["status"] == "completed" and agent["result"] == "ok"
    assert agent["actual_cost"] == round(10 * 0.0006 / 1000 + 20 * 0.0025 / 1000, 6)
    [call] = upstream.requests("openai")
    assert call["headers"]["authorization"] == f"Bearer {UPSTREAM_ENV['TEST_KIMI_KEY']}"
    assert call["json"]["model"] == "kimi-k2.5"


def test_transient_429_is_retried_and_then_succeeds(client, admin, upstream, start_runner):
    upstream.set("anthropic", fail_status=429, fail_times=1, retry_after=0)
    start_runner()
    agent = wait_for(client, admin, spawn(client, admin, model="opus", task="retry me"))
    assert agent["status"] == "completed" and agent["fallback_from"] is None
    assert upstream.call_count("anthropic") == 2


def test_down_provider_falls_back_down_the_chain(client, admin, upstream, start_runner):
    upstream.set("anthropic", fail_status=503)
    upstream.set("openai", text="from kimi")
    start_runner()
    agent = wait_for(client, admin, spawn(client, admin, model="sonnet", task="fallback"))
    assert agent["status"] == "completed"
    assert agent["result"] == "from kimi"
    assert agent["fallback_from"] == "sonnet"
    assert upstream.call_count("anthropic") == 3  # first try + 2 retries
    assert upstream.call_count("openai") == 1


def test_every_provider_down_fails_the_agent_without_leaking_keys(
        client, admin, upstream, start_runner):
    upstream.set(fail_status=401)
    start_runner()
    agent = wait_for(client, admin, spawn(client, admin, model="opus", task="doomed"))
    assert agent["status"] == "failed"
    assert "no model could answer" in agent["error"]
    for secret in UPSTREAM_ENV.values():
        assert secret not in agent["error"]
    assert agent["actual_cost"] == 0


def test_timeout_fails_the_agent(client, admin, upstream, start_runner):
    upstream.set(hang=True)
    start_runner()
    started = time.monotonic()
    agent = wait_for(client, admin, spawn(client, admin, model="k2p5", task="slow", timeout=1))
    assert agent["status"] == "failed"
    assert agent["error"] == "Agent timed out after 1 seconds"
    assert time.monotonic() - started < 5
    upstream.set(hang=False)


def test_cancel_mid_flight_stops_waiting_on_the_provider(client, app, admin, upstream,
                                                         start_runner):
    upstream.set(hang=True)
    runner = start_runner()
    agent_id = spawn(client, admin, model="opus", task="hang")
    wait_for(client, admin, agent_id, statuses=("running",))
    while upstream.call_count() == 0:
        time.sleep(0.01)
    response = client.delete(f"/api/agent/{agent_id}", headers=admin.headers)
    assert response.status_code == 200
    deadline = time.monotonic() + 2
    while runner.cancels and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not runner.cancels, "the worker is still waiting on the provider"
    agent = client.get(f"/api/agent/{agent_id}", headers=admin.headers).json
    assert agent["status"] == "cancelled" and agent["actual_cost"] == 0
    # The call in flight keeps its estimate reserved: the provider will bill it.
    assert response.json["pending_charge"] == agent["pending_charge"] > 0
    assert round(response.json["refund"] + response.json["pending_charge"], 6) == \
        agent["estimated_cost"]
    upstream.set(hang=False)


def test_restart_requeues_waiting_agents_and_fails_interrupted_ones(client, app, admin,
                                                                   start_runner):
    waiting = spawn(client, admin, model="k2p5", task="waiting")
    interrupted = spawn(client, admin, model="k2p5", task="was running")
    conn = connection_for(app.config["DATABASE"])
    with transaction(conn):
        assert agents.mark_running(conn, interrupted) is not None
    start_runner()
    assert wait_for(client, admin, waiting)["status"] == "completed"
    agent = client.get(f"/api/agent/{interrupted}", headers=admin.headers).json
    assert agent["status"] == "failed" and agent["error"] == "interrupted by restart"


def test_shutdown_waits_a_bounded_time_then_fails_running_agents(client, app, admin, upstream,
                                                                  start_runner):
    upstream.set(hang=True)
    runner = start_runner()
    running = spawn(client, admin, model="k2p5", task="hangs")
    wait_for(client, admin, running, statuses=("running",))
    started = time.monotonic()
    runner.shutdown()
    assert time.monotonic() - started < 4  # grace is 2 s in the test config
    conn = sqlite3.connect(app.config["DATABASE"])
    status, error = conn.execute("SELECT status, error FROM agents WHERE agent_id = ?",
                                 (running,)).fetchone()
    conn.close()
    assert (status, error) == ("failed", "interrupted by shutdown")
    upstream.set(hang=False)

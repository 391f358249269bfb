"""Every provider call is paid for: calls left in flight by a cancel or a timeout are
charged when they answer, lost answers at their estimate, clear errors not at all."""
from __future__ import annotations

import sqlite3
import time

import pytest

from tests.helpers import billed_micros, configure, wait_for, wait_settled

pytestmark = pytest.mark.usefixtures("upstream")


def spawn(client, key, **body):
    return client.post("/api/spawn", headers=key.headers, json={"task": "count", **body})


def in_flight(app) -> int:
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        return conn.execute("SELECT count(*) FROM calls_in_flight").fetchone()[0]
    finally:
        conn.close()


def wait_sent(upstream, count: int) -> None:
    deadline = time.monotonic() + 5
    while upstream.call_count() < count:
        assert time.monotonic() < deadline, "the call never reached the upstream"
        time.sleep(0.01)


def events_of(client, key, agent_id: str) -> dict:
    feed = client.get("/api/events?limit=100", headers=key.headers).json["data"]
    return {e["type"]: e["data"] for e in feed if e["data"].get("agent_id") == agent_id}


def test_a_cancelled_call_is_charged_when_it_answers(client, app, admin, upstream, start_runner):
    upstream.set("anthropic", latency=1.0, input_tokens=1000, output_tokens=2000)
    start_runner()
    agent_id = spawn(client, admin, model="opus").json["agent_id"]
    wait_sent(upstream, 1)
    cancel = client.delete(f"/api/agent/{agent_id}", headers=admin.headers).json
    agent = client.get(f"/api/agent/{agent_id}", headers=admin.headers).json
    assert agent["status"] == "cancelled" and agent["actual_cost"] == 0
    assert cancel["pending_charge"] == agent["pending_charge"] > 0
    status = client.get("/api/orchestrator/status", headers=admin.headers).json
    assert status["today_reserved"] == cancel["pending_charge"]  # still counts in admission
    assert events_of(client, admin, agent_id)["agent.cancelled"]["pending_charge"] == \
        cancel["pending_charge"]

    wait_settled(app.config["DATABASE"])
    cost = round(1000 * 0.015 / 1000 + 2000 * 0.075 / 1000, 6)
    agent = client.get(f"/api/agent/{agent_id}", headers=admin.headers).json
    assert (agent["actual_cost"], agent["pending_charge"], agent["estimated_charge"]) == \
        (cost, 0, 0)
    assert agent["usage"] == {"input_tokens": 1000, "output_tokens": 2000}
    status = client.get("/api/orchestrator/status", headers=admin.headers).json
    billing = client.get("/api/billing/usage", headers=admin.headers).json
    assert status["today_spend"] == billing["total_cost"] == billing["by_model"]["opus"] == cost
    assert status["today_reserved"] == 0
    assert billing["by_provider"] == {"anthropic": cost}
    assert events_of(client, admin, agent_id)["agent.charged"]["cost"] == cost


def test_a_timed_out_call_is_charged_when_it_answers(client, app, admin, upstream,
                                                     start_runner):
    upstream.set("openai", latency=1.8, input_tokens=10, output_tokens=20)
    start_runner()
    started = time.monotonic()
    agent = wait_for(client, admin, spawn(client, admin, model="k2p5", timeout=1).json["agent_id"])
    assert time.monotonic() - started < 1.6  # the client hears of the timeout at once
    assert agent["status"] == "failed" and agent["error"].startswith("Agent timed out")
    assert agent["pending_charge"] > 0 and agent["actual_cost"] == 0
    wait_settled(app.config["DATABASE"])
    agent = client.get(f"/api/agent/{agent['agent_id']}", headers=admin.headers).json
    assert agent["actual_cost"] == round(10 * 0.0006 / 1000 + 20 * 0.0025 / 1000, 6)
    assert agent["pending_charge"] == 0


def test_a_read_timeout_is_charged_at_its_estimate_and_says_so(client, app, admin, upstream,
                                                               start_runner):
    configure(app, provider_calls={"read_timeout": 0.3, "retries": 0})
    upstream.set(latency=1.0)
    start_runner()
    agent = wait_for(client, admin, spawn(client, admin, model="sonnet").json["agent_id"])
    assert agent["status"] == "failed"  # sonnet, then its fallback k2p5, both lost
    wait_settled(app.config["DATABASE"])
    agent = client.get(f"/api/agent/{agent['agent_id']}", headers=admin.headers).json
    sonnet = agent["estimated_cost"]  # the priciest of the chain at the output cap
    assert agent["actual_cost"] == agent["estimated_charge"] > sonnet
    billing = client.get("/api/billing/usage", headers=admin.headers).json
    assert billing["estimated_cost_total"] == billing["total_cost"] == agent["actual_cost"]
    assert billing["by_model"]["sonnet"] == sonnet and upstream.answered() == []
    csv = client.get("/api/billing/usage?format=csv", headers=admin.headers).data.decode()
    assert csv.splitlines()[0].endswith(",cost,estimated_cost")
    assert f",{sonnet},{sonnet}" in csv


def test_a_team_step_charged_at_an_estimate_is_marked(client, app, admin, upstream,
                                                      start_runner):
    configure(app, provider_calls={"read_timeout": 0.3, "retries": 0})
    upstream.set(latency=1.0)  # team_coding's first step is k2p5, falling back to sonnet
    start_runner()
    response = client.post("/api/spawn-team", headers=admin.headers,
                           json={"team": "team_coding", "task": "x"})
    wait_for(client, admin, response.json["agent_id"])
    wait_settled(app.config["DATABASE"])
    agent = client.get(f"/api/agent/{response.json['agent_id']}", headers=admin.headers).json
    first = agent["steps"][0]
    assert first["estimated"] is True and first["cost"] > 0
    assert agent["status"] == "failed" and "estimated" not in agent["steps"][1]
    assert agent["estimated_charge"] == first["cost"] == agent["actual_cost"]


def test_retries_pay_for_lost_answers_but_not_for_clear_errors(client, app, admin, upstream,
                                                               start_runner):
    upstream.set("openai", fail_status=500, fail_times=1, input_tokens=5, output_tokens=5)
    start_runner()
    agent = wait_for(client, admin, spawn(client, admin, model="k2p5").json["agent_id"])
    assert agent["status"] == "completed" and upstream.call_count() == 2
    assert agent["estimated_charge"] == 0  # the 500 with an error body is not billed
    assert agent["actual_cost"] == round(5 * 0.0006 / 1000 + 5 * 0.0025 / 1000, 6)

    upstream.reset()
    upstream.set(drop=True)
    configure(app, provider_calls={"retries": 1})
    agent = wait_for(client, admin, spawn(client, admin, model="k2p5").json["agent_id"])
    wait_settled(app.config["DATABASE"])
    agent = client.get(f"/api/agent/{agent['agent_id']}", headers=admin.headers).json
    assert upstream.call_count("openai") == upstream.call_count("anthropic") == 2
    assert agent["status"] == "failed" and agent["actual_cost"] == agent["estimated_charge"] > 0
    assert agent["actual_cost"] > agent["estimated_cost"]  # four lost answers, each may be billed


def test_spawn_and_cancel_cannot_outrun_the_budget(client, app, admin, upstream, start_runner):
    configure(app, budget={"daily": 1}, agents={"max_concurrent_per_key": 100})
    upstream.set("anthropic", latency=1.5, input_tokens=100, output_tokens=100)
    start_runner()
    answers = []
    for _ in range(12):
        response = spawn(client, admin, model="opus")
        answers.append(response.status_code)
        if response.status_code == 202:
            wait_sent(upstream, answers.count(202))
            client.delete(f"/api/agent/{response.json['agent_id']}", headers=admin.headers)
    assert 429 in answers, "admission must count the charges still pending"
    assert answers.count(202) <= 4  # $1 holds three opus estimates (~$0.31 each)
    wait_settled(app.config["DATABASE"])
    config = app.extensions["j1msky_config"].get()
    status = client.get("/api/orchestrator/status", headers=admin.headers).json
    assert len(upstream.answered()) == answers.count(202)
    assert round(status["today_spend"] * 1e6) == billed_micros(config, upstream.answered())
    assert status["today_reserved"] == 0 and in_flight(app) == 0


def test_a_late_charge_counts_in_the_keys_cost_spike_window(client, app, admin, upstream,
                                                            start_runner):
    configure(app, security={"cost_spike_per_hour": 0.1})
    upstream.set("anthropic", latency=0.8, input_tokens=1000, output_tokens=2000)  # $0.165
    start_runner()
    agent_id = spawn(client, admin, model="opus").json["agent_id"]
    wait_sent(upstream, 1)
    client.delete(f"/api/agent/{agent_id}", headers=admin.headers)
    assert spawn(client, admin, model="k2p5").status_code == 202  # nothing charged yet
    wait_settled(app.config["DATABASE"])
    refused = spawn(client, admin, model="k2p5")
    assert refused.status_code == 403 and "cost spike" in refused.json["error"]["message"]

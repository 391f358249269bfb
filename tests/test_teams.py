"""POST /spawn-team (CONTRACT §5): steps in order, each fed the task and the previous output."""
from __future__ import annotations

import sqlite3
import time

import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.usefixtures("upstream")


def spawn_team(client, key, **body):
    return client.post("/api/spawn-team", headers=key.headers, json=body)


def test_team_runs_its_steps_in_order_feeding_each_the_previous_output(
        client, admin, upstream, start_runner):
    start_runner()
    response = spawn_team(client, admin, team="team_coding", task="Write fizzbuzz",
                          priority="high")
    assert response.status_code == 202
    body = response.json
    assert body["team"] == "team_coding" and body["status"] == "spawning"
    assert body["models"] == ["kimi-coding/kimi-k2.5", "anthropic/claude-sonnet-4-6"]
    assert response.headers["Location"] == f"/api/agent/{body['agent_id']}"

    agent = wait_for(client, admin, body["agent_id"])
    assert agent["status"] == "completed"
    [first] = upstream.requests("openai")
    [second] = upstream.requests("anthropic")
    assert first["json"]["messages"][0]["role"] == "system"
    assert "software engineer" in first["json"]["messages"][0]["content"]
    assert first["json"]["messages"][-1]["content"] == "Write fizzbuzz"
    assert "code reviewer" in second["json"]["system"]
    prompt = second["json"]["messages"][-1]["content"]
    assert "Write fizzbuzz" in prompt and "fake reply: Write fizzbuzz" in prompt
    steps = agent["steps"]
    assert [s["model"] for s in steps] == ["k2p5", "sonnet"]
    assert [s["status"] for s in steps] == ["completed", "completed"]
    assert steps[0]["output"] == "fake reply: Write fizzbuzz"
    assert agent["result"] == steps[1]["output"]
    assert agent["actual_cost"] == round(sum(s["cost"] for s in steps), 6)
    assert agent["team"] == "team_coding"


def test_a_team_step_falls_back_when_its_provider_is_down(client, admin, upstream, start_runner):
    upstream.set("openai", fail_status=503)
    start_runner()
    agent = wait_for(client, admin, spawn_team(client, admin, team="team_coding",
                                               task="x").json["agent_id"])
    assert agent["status"] == "completed"
    assert agent["steps"][0]["model"] == "sonnet"
    assert agent["steps"][0]["fallback_from"] == "k2p5"


def test_cancel_stops_the_remaining_steps(client, app, admin, upstream, start_runner):
    start_runner()
    upstream.set("anthropic", hang=True)
    agent_id = spawn_team(client, admin, team="team_research", task="long").json["agent_id"]
    while upstream.call_count("anthropic") == 0:
        time.sleep(0.01)
    response = client.delete(f"/api/agent/{agent_id}", headers=admin.headers)
    assert response.status_code == 200
    agent = client.get(f"/api/agent/{agent_id}", headers=admin.headers).json
    assert agent["status"] == "cancelled"
    assert [s["status"] for s in agent["steps"]] == ["completed", "pending", "pending"]
    assert agent["actual_cost"] == agent["steps"][0]["cost"] > 0
    assert response.json["pending_charge"] == agent["pending_charge"] > 0  # step 2 in flight
    assert response.json["refund"] == round(
        agent["estimated_cost"] - agent["actual_cost"] - agent["pending_charge"], 6)
    upstream.set("anthropic", hang=False)
    deadline = time.monotonic() + 5
    while agent["pending_charge"] and time.monotonic() < deadline:
        time.sleep(0.02)
        agent = client.get(f"/api/agent/{agent_id}", headers=admin.headers).json
    assert agent["pending_charge"] == 0 and agent["steps"][1]["cost"] > 0  # billed late
    assert agent["actual_cost"] == round(agent["steps"][0]["cost"] + agent["steps"][1]["cost"], 6)
    assert upstream.call_count("anthropic") == 1  # the third step never ran


@pytest.mark.parametrize("body, message", [
    ({"team": "team_pirates", "task": "x"},
     "Team must be one of: team_coding, team_creative, team_research, team_business"),
    ({"task": "x"}, "team: Missing data for required field."),
    ({"team": "team_coding", "task": " "}, "Task cannot be empty"),
    ({"team": "team_coding", "task": "x", "model": "k2p5"}, "Unknown field 'model'"),
    ({"team": "team_coding", "task": "x", "priority": "now"},
     "Priority must be one of: low, normal, high"),
])
def test_bad_team_spawns_are_400_and_create_nothing(client, app, admin, body, message):
    response = spawn_team(client, admin, **body)
    assert response.status_code == 400
    assert response.json["error"]["message"] == message
    conn = sqlite3.connect(app.config["DATABASE"])
    assert conn.execute("SELECT count(*) FROM agents").fetchone()[0] == 0
    conn.close()


def test_every_default_team_has_sensible_steps(client, admin, example_config):
    teams = example_config["teams"]
    assert set(teams) == {"team_coding", "team_creative", "team_research", "team_business"}
    for team in teams.values():
        assert len(team["steps"]) >= 2
        assert all(len(step["role"]) > 40 for step in team["steps"])

"""Agents (API_REFERENCE §1-§5, CONTRACT §5): spawn, status, cancel, batch, active list."""
from __future__ import annotations

import sqlite3

import pytest

from j1msky.db import get_db
from j1msky.services import agents as agents_service
from tests.helpers import agent_count, wait_for


def test_spawn_runs_to_completion_with_cost_and_result(client, admin, start_runner):
    start_runner()
    response = client.post("/api/spawn", headers=admin.headers, json={
        "model": "k2p5", "task": "Write a Python function to calculate fibonacci",
        "priority": "normal"})
    assert response.status_code == 202
    body = response.json
    assert body["success"] is True and body["status"] == "spawning" and body["model"] == "k2p5"
    assert body["agent_id"].startswith("subagent_")
    assert response.headers["Location"] == f"/api/agent/{body['agent_id']}"
    assert body["estimated_cost"] > 0

    agent = wait_for(client, admin, body["agent_id"])
    assert agent["status"] == "completed"
    assert "fibonacci" in agent["result"]
    assert agent["simulated"] is True
    usage = agent["usage"]
    expected = round((usage["input_tokens"] * 0.0006 + usage["output_tokens"] * 0.0025) / 1000, 6)
    assert agent["actual_cost"] == agent["cost"] == expected
    assert agent["actual_cost"] <= agent["estimated_cost"]
    for short, full in (("created", "created_at"), ("started", "started_at"),
                        ("completed", "completed_at")):
        assert agent[short] == agent[full] and agent[full].endswith("Z")


def test_spawn_without_model_picks_one(client, admin):
    response = client.post("/api/spawn", headers=admin.headers, json={"task": "hello"})
    assert response.status_code == 202
    assert response.json["model"] == "k2p5"


LONG = "x" * 2001


@pytest.mark.parametrize("body, status, message", [
    ({"model": "k2p5", "task": ""}, 400, "Task cannot be empty"),
    ({"model": "k2p5", "task": "   \n\t "}, 400, "Task cannot be empty"),
    ({"model": "k2p5"}, 400, "Task cannot be empty"),
    ({"model": "k2p5", "task": None}, 400, "Task cannot be empty"),
    ({"model": "k2p5", "task": LONG}, 400, "Task must be at most 2000 characters"),
    ({"model": "k2p5", "task": 42}, 400, "Task must be a string"),
    ({"model": "gpt-5", "task": "hi"}, 400, "Model must be one of: k2p5, sonnet, opus"),
    ({"model": "k2p5", "task": "hi", "priority": "urgent"}, 400,
     "Priority must be one of: low, normal, high"),
    ({"model": "k2p5", "task": "hi", "timeout": 0}, 400, "Timeout must be between 1 and 3600 seconds"),
    ({"model": "k2p5", "task": "hi", "timeout": -5}, 400, "Timeout must be between 1 and 3600 seconds"),
    ({"model": "k2p5", "task": "hi", "timeout": 3601}, 400,
     "Timeout must be between 1 and 3600 seconds"),
    ({"model": "k2p5", "task": "hi", "timeout": "300"}, 400,
     "Timeout must be a whole number of seconds"),
    ({"model": "k2p5", "task": "hi", "timeout": True}, 400,
     "Timeout must be a whole number of seconds"),
    ({"model": "k2p5", "task": "hi", "timeout": 30.5}, 400,
     "Timeout must be a whole number of seconds"),
    ({"model": "k2p5", "task": "hi", "colour": "blue"}, 400, "Unknown field 'colour'"),
    ({"model": "k2p5", "task": "hi", "team": "team_coding"}, 400, "Unknown field 'team'"),
])
def test_bad_spawns_are_refused_and_create_nothing(client, app, admin, body, status, message):
    response = client.post("/api/spawn", headers=admin.headers, json=body)
    assert response.status_code == status
    error = response.json["error"]
    assert error["message"] == message
    assert error["details"]
    assert agent_count(app) == 0


def test_task_of_exactly_2000_chars_after_trimming_is_accepted(client, admin):
    response = client.post("/api/spawn", headers=admin.headers,
                           json={"model": "opus", "task": "  " + "y" * 2000 + "  "})
    assert response.status_code == 202


def test_a_whole_number_written_as_a_float_is_that_number(client, admin):
    response = client.post("/api/spawn", headers=admin.headers,
                           json={"model": "k2p5", "task": "hi", "timeout": 30.0})
    assert response.status_code == 202 and response.json["timeout"] == 30


def test_unknown_agent_is_404(client, admin):
    for method in ("GET", "DELETE"):
        response = client.open("/api/agent/subagent_1_1", method=method, headers=admin.headers)
        assert response.status_code == 404
        assert response.json["error"]["message"] == "Agent 'subagent_1_1' not found"


def test_cancel_of_a_waiting_agent_refunds_its_reservation_and_it_never_runs(
        client, app, admin, start_runner):
    spawned = client.post("/api/spawn", headers=admin.headers,
                          json={"model": "sonnet", "task": "never run me"}).json
    response = client.delete(f"/api/agent/{spawned['agent_id']}", headers=admin.headers)
    assert response.status_code == 200
    assert response.json == {"success": True, "message": "Agent cancelled",
                             "agent_id": spawned["agent_id"], "status": "cancelled",
                             "refund": spawned["estimated_cost"], "pending_charge": 0.0}
    start_runner()
    other = client.post("/api/spawn", headers=admin.headers,
                        json={"model": "sonnet", "task": "run me"}).json
    assert wait_for(client, admin, other["agent_id"])["status"] == "completed"
    agent = client.get(f"/api/agent/{spawned['agent_id']}", headers=admin.headers).json
    assert agent["status"] == "cancelled" and agent["started_at"] is None
    assert agent["actual_cost"] == 0


def test_cancel_of_a_finished_agent_is_409_and_changes_nothing(client, admin, start_runner):
    start_runner()
    spawned = client.post("/api/spawn", headers=admin.headers,
                          json={"model": "k2p5", "task": "quick"}).json
    before = wait_for(client, admin, spawned["agent_id"])
    response = client.delete(f"/api/agent/{spawned['agent_id']}", headers=admin.headers)
    assert response.status_code == 409
    assert response.json["error"]["message"] == "Agent already completed"
    assert client.get(f"/api/agent/{spawned['agent_id']}", headers=admin.headers).json == before


def test_priority_high_runs_before_normal_before_low_fifo_within_a_level(
        client, app, admin, start_runner):
    from tests.helpers import configure
    configure(app, agents={"workers": 1})
    order = [("low", "l1"), ("normal", "n1"), ("high", "h1"), ("normal", "n2"), ("high", "h2"),
             ("low", "l2")]
    ids = {}
    for priority, name in order:
        ids[name] = client.post("/api/spawn", headers=admin.headers, json={
            "model": "k2p5", "task": name, "priority": priority}).json["agent_id"]
    start_runner()
    for agent_id in ids.values():
        assert wait_for(client, admin, agent_id)["status"] == "completed"
    conn = sqlite3.connect(app.config["DATABASE"])
    started = [r[0] for r in conn.execute("SELECT task FROM agents ORDER BY started_at")]
    conn.close()
    assert started == ["h1", "h2", "n1", "n2", "l1", "l2"]


def test_spawn_batch_creates_all(client, app, admin):
    response = client.post("/api/spawn-batch", headers=admin.headers, json={"agents": [
        {"model": "k2p5", "task": "one"}, {"model": "opus", "task": "two", "priority": "high"}]})
    assert response.status_code == 202
    assert response.json["count"] == 2
    assert [a["model"] for a in response.json["agents"]] == ["k2p5", "opus"]
    assert agent_count(app) == 2


@pytest.mark.parametrize("body, message", [
    ({"agents": []}, "agents must hold 1 to 50 spawn requests"),
    ({"agents": [{"model": "k2p5", "task": "ok"}] * 51}, "agents must hold 1 to 50 spawn requests"),
    ({"agents": [{"model": "k2p5", "task": "ok"}, {"model": "k2p5", "task": " "}]},
     "Task cannot be empty"),
    ({"agents": "nope"}, "agents: Not a valid list."),
    ({}, "agents: Missing data for required field."),
])
def test_spawn_batch_is_all_or_nothing(client, app, admin, body, message):
    response = client.post("/api/spawn-batch", headers=admin.headers, json=body)
    assert response.status_code == 400
    assert response.json["error"]["message"] == message
    assert agent_count(app) == 0


def test_batch_error_details_name_the_item(client, admin):
    response = client.post("/api/spawn-batch", headers=admin.headers, json={"agents": [
        {"model": "k2p5", "task": "ok"}, {"model": "nope", "task": "x"}]})
    assert response.json["error"]["details"] == {
        "agents": {"1": {"model": ["Model must be one of: k2p5, sonnet, opus"]}}}


def test_active_agents_lists_waiting_and_running(client, admin):
    ids = [client.post("/api/spawn", headers=admin.headers,
                       json={"model": "k2p5", "task": f"t{i}"}).json["agent_id"] for i in range(3)]
    client.delete(f"/api/agent/{ids[0]}", headers=admin.headers)
    body = client.get("/api/agents/active", headers=admin.headers).json
    assert body["count"] == 2
    assert [a["agent_id"] for a in body["agents"]] == ids[1:]
    assert body["total_cost_today"] == 0


def test_per_key_concurrency_limit_is_429(client, keys):
    key = keys.make("agents:write", max_concurrent=2)
    for _ in range(2):
        assert client.post("/api/spawn", headers=key.headers,
                           json={"model": "k2p5", "task": "x"}).status_code == 202
    response = client.post("/api/spawn", headers=key.headers, json={"model": "k2p5", "task": "x"})
    assert response.status_code == 429
    assert response.json["error"]["retry_after"] >= 1
    assert response.headers["Retry-After"]


def test_unavailable_model_without_simulation_is_503_naming_the_variable(client, app, admin):
    from tests.helpers import configure
    configure(app, simulate_missing_providers=False, providers={
        "anthropic": {"kind": "anthropic", "base_url": "http://127.0.0.1:9",
                      "api_key_env": "J1MSKY_TEST_UNSET_KEY", "hourly": 10},
        "kimi-coding": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                        "api_key_env": "J1MSKY_TEST_UNSET_KEY_2", "hourly": 10}})
    response = client.post("/api/spawn", headers=admin.headers, json={"model": "opus", "task": "x"})
    assert response.status_code == 503
    assert "J1MSKY_TEST_UNSET_KEY" in response.json["error"]["message"]
    assert agent_count(app) == 0
    health = client.get("/api/health", headers=admin.headers).json
    assert health["status"] == "unhealthy" and health["models_configured"] == 0


def test_an_agent_id_drawn_twice_is_drawn_again_and_audited_under_the_new_one(
        client, app, admin, monkeypatch):
    first = client.post("/api/spawn", json={"task": "one"}, headers=admin.headers).get_json()
    drawn = iter([first["agent_id"], "subagent_1_000001"])
    monkeypatch.setattr(agents_service, "new_agent_id", lambda: next(drawn))
    second = client.post("/api/spawn", json={"task": "two"}, headers=admin.headers)
    assert second.status_code == 202
    assert second.get_json()["agent_id"] == "subagent_1_000001"
    with app.app_context():
        audited = [r[0] for r in get_db().execute(
            "SELECT resource_id FROM audit_log WHERE event = 'agent.spawn' ORDER BY id")]
        reserved = get_db().execute("SELECT reserved_micros FROM budget_days").fetchone()[0]
    assert audited == [first["agent_id"], "subagent_1_000001"]
    assert reserved == round((first["estimated_cost"] + second.get_json()["estimated_cost"])
                             * 1_000_000)

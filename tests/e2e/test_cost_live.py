"""Cost control against a real `j1msky serve`: concurrent spawns at the edge of the budget,
and totals that survive kill -9."""
from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers import UPSTREAM_ENV, billed_micros, upstream_config, wait_settled

OPEN_LIMITS = {"spawn": "100000/hour", "agent": "100000/hour", "agents": "100000/hour",
               "per_ip": "100000/minute"}


@pytest.fixture
def served(live_server_factory, fake_upstream):
    def make(**sections):
        config = upstream_config(fake_upstream.url, rate_limits=OPEN_LIMITS, **sections)
        config["agents"] = {**config["agents"], "workers": 4, "max_concurrent_per_key": 10000}
        server = live_server_factory(config, env=UPSTREAM_ENV)
        key = server.create_key("agents:read", "agents:write", "billing:read")["key"]
        return server, {"Authorization": f"Bearer {key}"}
    return make


def db(server) -> sqlite3.Connection:
    return sqlite3.connect(server.instance + "/j1msky.sqlite3")


def wait_idle(server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    conn = db(server)
    try:
        while conn.execute("SELECT count(*) FROM agents WHERE status IN ('spawning', 'running')"
                           ).fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        conn.close()


def test_200_concurrent_spawns_cannot_overshoot_a_nearly_spent_budget(served, fake_upstream):
    server, auth = served(budget={"daily": 10})
    fake_upstream.set(input_tokens=20, output_tokens=4096)  # every agent costs its full cap
    conn = db(server)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    conn.execute("INSERT INTO budget_days (day, spent_micros) VALUES (?, ?)", (today, 9_700_000))
    conn.commit()
    conn.close()
    server.start()

    def spawn(i):
        return requests.post(server.url + "/api/spawn", headers=auth, timeout=30,
                             json={"model": "sonnet", "task": f"spend {i}"})

    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(spawn, range(200)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {202, 429}, codes
    refused = [r.json()["error"] for r in responses if r.status_code == 429]
    assert refused and all(e["retry_after"] >= 1 and "budget" in e["message"] for e in refused)
    accepted = [r.json() for r in responses if r.status_code == 202]
    estimate = max(a["estimated_cost"] for a in accepted)
    assert sum(a["estimated_cost"] for a in accepted) <= 0.3 + 1e-9
    wait_idle(server)
    status = requests.get(server.url + "/api/orchestrator/status", headers=auth, timeout=5).json()
    assert status["today_spend"] <= 10 + estimate
    assert status["budget_alert_level"] == "critical"
    assert status["today_spend"] == round(9.7 + sum(
        requests.get(f"{server.url}/api/agent/{a['agent_id']}", headers=auth, timeout=5
                     ).json()["cost"] for a in accepted), 6)


def test_counters_spend_and_alert_level_survive_kill_9(served, fake_upstream):
    server, auth = served(budget={"daily": 0.5})
    fake_upstream.set(input_tokens=1000, output_tokens=3000)  # sonnet: $0.048 an answer
    server.start()
    for i in range(6):
        assert requests.post(server.url + "/api/spawn", headers=auth, timeout=10,
                             json={"model": "sonnet", "task": f"t{i}"}).status_code == 202
    wait_idle(server)

    def snapshot():
        status = requests.get(server.url + "/api/orchestrator/status", headers=auth,
                              timeout=5).json()
        limits = requests.get(server.url + "/api/rate-limits", headers=auth, timeout=5).json()
        billing = requests.get(server.url + "/api/billing/usage", headers=auth, timeout=5).json()
        return ({k: status[k] for k in ("today_spend", "budget_alert_level", "usage_summary",
                                        "budget_utilization_pct", "provider_usage")},
                limits, billing)

    before = snapshot()
    assert before[0]["budget_alert_level"] == "notice"  # 6 x $0.048 = 57.6% of $0.50
    assert before[1]["limits"]["anthropic"]["used"] == 6
    server.kill()
    server.start()
    assert snapshot() == before



def settled(server, timeout: float = 30) -> None:
    wait_settled(server.instance + "/j1msky.sqlite3", timeout)


def get(server, auth, path: str) -> dict:
    return requests.get(server.url + path, headers=auth, timeout=10).json()


@pytest.mark.parametrize("ending", ["cancel", "timeout"])
def test_spawns_ended_early_are_refused_once_their_calls_use_the_budget(
        served, fake_upstream, example_config, ending):
    """The loop of issue 10: a $1 budget, opus agents whose upstream takes 3 s, each
    cancelled after 0.4 s (or timing out after 1 s), 30 times."""
    server, auth = served(budget={"daily": 1})
    fake_upstream.set("anthropic", latency=3, input_tokens=200, output_tokens=300)
    server.start()
    codes, cancels = [], []
    for i in range(30):
        body = {"model": "opus", "task": f"spend {i}"} | ({"timeout": 1} if ending == "timeout"
                                                         else {})
        response = requests.post(server.url + "/api/spawn", headers=auth, json=body, timeout=10)
        codes.append(response.status_code)
        time.sleep(0.4)
        if response.status_code == 202 and ending == "cancel":
            cancels.append(requests.delete(f"{server.url}/api/agent/{response.json()['agent_id']}",
                                           headers=auth, timeout=10).json())
    assert set(codes) == {202, 429}, codes
    assert codes.count(202) < 30 - 10, "spawns must be refused while calls are pending"
    for cancel in cancels:
        assert cancel["pending_charge"] > 0
    settled(server)
    answered = fake_upstream.answered()
    assert len(answered) == codes.count(202) == fake_upstream.call_count()
    status = get(server, auth, "/api/orchestrator/status")
    billing = get(server, auth, "/api/billing/usage")
    assert round(status["today_spend"] * 1e6) == billed_micros(example_config, answered)
    assert status["today_spend"] == billing["total_cost"] and status["today_reserved"] == 0
    assert billing["estimated_cost_total"] == 0
    charged = [e for e in get(server, auth, "/api/events?type=agent.charged&limit=100")["data"]]
    assert len(charged) == codes.count(202)


def test_a_read_timeout_is_charged_at_its_estimate_live(served, fake_upstream):
    server, auth = served(provider_calls={"read_timeout": 0.5, "retries": 0})
    fake_upstream.set(latency=2)
    server.start()
    agent_id = requests.post(server.url + "/api/spawn", headers=auth, timeout=10,
                             json={"model": "opus", "task": "lost"}).json()["agent_id"]
    settled(server)
    agent = get(server, auth, f"/api/agent/{agent_id}")
    assert agent["status"] == "failed" and agent["actual_cost"] == agent["estimated_charge"] > 0
    billing = get(server, auth, "/api/billing/usage")
    assert billing["estimated_cost_total"] == billing["total_cost"] == agent["actual_cost"]


def test_kill_9_with_calls_in_flight_charges_their_estimates(served, fake_upstream,
                                                            example_config):
    server, auth = served(budget={"daily": 5})
    fake_upstream.set("anthropic", latency=3, input_tokens=100, output_tokens=100)
    server.start()
    spawned = [requests.post(server.url + "/api/spawn", headers=auth, timeout=10,
                             json={"model": "opus", "task": f"t{i}"}).json() for i in range(3)]
    deadline = time.monotonic() + 10
    while fake_upstream.call_count() < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    requests.delete(f"{server.url}/api/agent/{spawned[0]['agent_id']}", headers=auth, timeout=10)
    server.kill()
    server.start()
    settled(server)
    status = get(server, auth, "/api/orchestrator/status")
    agents = [get(server, auth, f"/api/agent/{a['agent_id']}") for a in spawned]
    assert [a["status"] for a in agents] == ["cancelled", "failed", "failed"]
    for agent in agents:  # each call may have been billed: charged at its estimate
        assert agent["actual_cost"] == agent["estimated_charge"] == agent["estimated_cost"]
        assert agent["pending_charge"] == 0
    assert status["today_spend"] == round(sum(a["actual_cost"] for a in agents), 6)
    assert status["today_reserved"] == 0
    assert status["today_spend"] * 1e6 >= billed_micros(example_config, fake_upstream.answered())

"""Cost control against a real `j1msky serve`: concurrent spawns at the edge of the budget,
and totals that survive kill -9."""
from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers import UPSTREAM_ENV, upstream_config

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


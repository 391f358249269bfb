"""The numbers agree to the cent: after a few hundred agents of mixed models, teams,
failures, fallbacks and cancellations, every total tells the same story."""
from __future__ import annotations

import itertools
import sqlite3

import pytest

from tests.helpers import billed_micros, configure, wait_settled

pytestmark = pytest.mark.usefixtures("upstream")
MODELS = itertools.cycle(["k2p5", "sonnet", "opus"])
TEAMS = itertools.cycle(["team_coding", "team_research", "team_creative", "team_business"])


def spawn_mixed(client, key, count: int, teams_every: int = 5) -> list[str]:
    ids = []
    for i in range(count):
        if i % teams_every == 0:
            response = client.post("/api/spawn-team", headers=key.headers,
                                   json={"team": next(TEAMS), "task": f"team task {i}"})
        else:
            response = client.post("/api/spawn", headers=key.headers,
                                   json={"model": next(MODELS), "task": f"task {i}" * (i % 7 + 1)})
        assert response.status_code == 202, response.json
        ids.append(response.json["agent_id"])
    return ids


def drain(app, timeout: float = 60) -> None:
    wait_settled(app.config["DATABASE"], timeout)


def test_spend_totals_and_provider_counters_agree(client, app, admin, upstream, start_runner):
    configure(app, agents={"workers": 4, "max_concurrent_per_key": 1000},
              budget={"daily": 1000}, rate_limits={"spawn": "10000/hour", "agent": "10000/hour"},
              provider_calls={"circuit_threshold": 10000})  # breakers are tested elsewhere
    start_runner()
    spawn_mixed(client, admin, 120)                      # healthy
    drain(app)
    upstream.set("anthropic", fail_status=503)           # sonnet/opus fall back to k2p5
    spawn_mixed(client, admin, 60)
    drain(app)
    upstream.set(fail_status=401)                        # every provider refuses: failures
    spawn_mixed(client, admin, 30)
    drain(app)
    upstream.set(latency=0.05)                           # slow enough to cancel some mid-flight
    ids = spawn_mixed(client, admin, 60)
    for agent_id in ids[::3]:
        client.delete(f"/api/agent/{agent_id}", headers=admin.headers)
    drain(app)
    upstream.set(latency=1.5)                            # time out, then charged late
    for i in range(8):
        response = client.post("/api/spawn", headers=admin.headers,
                               json={"model": next(MODELS), "task": f"slow {i}", "timeout": 1})
        assert response.status_code == 202, response.json
    drain(app)

    conn = sqlite3.connect(app.config["DATABASE"])
    statuses = dict(conn.execute("SELECT status, count(*) FROM agents GROUP BY status"))
    assert sum(statuses.values()) == 278
    timed_out = conn.execute("SELECT count(*) FROM agents WHERE error LIKE 'Agent timed out%'"
                             " AND actual_micros > 0").fetchone()[0]
    assert timed_out == 8, "timed-out agents are charged for the calls they left in flight"
    assert conn.execute("SELECT sum(pending_micros) + sum(estimated_charge_micros) FROM agents"
                        ).fetchone()[0] == 0
    assert statuses["completed"] and statuses["failed"] and statuses["cancelled"]
    assert conn.execute("SELECT count(*) FROM agents WHERE fallback_from IS NOT NULL"
                        ).fetchone()[0] > 0
    sum_actual = conn.execute("SELECT sum(actual_micros) FROM agents").fetchone()[0] / 1e6
    reserved = conn.execute("SELECT sum(reserved_micros) FROM budget_days").fetchone()[0]
    counters = dict(conn.execute("SELECT provider, calls FROM provider_usage"))
    conn.close()

    status = client.get("/api/orchestrator/status", headers=admin.headers).json
    billing = client.get("/api/billing/usage", headers=admin.headers).json
    assert status["today_spend"] == round(sum_actual, 6) == billing["total_cost"]
    config = app.extensions["j1msky_config"].get()
    assert round(sum_actual * 1e6) == billed_micros(config, upstream.answered())
    assert billing["estimated_cost_total"] == 0
    assert round(sum(billing["by_model"].values()), 6) == billing["total_cost"]
    assert round(sum(billing["by_day"].values()), 6) == billing["total_cost"]
    assert round(sum(billing["by_provider"].values()), 6) == billing["total_cost"]
    assert reserved == 0
    assert counters["anthropic"] == upstream.call_count("anthropic")
    assert counters["kimi-coding"] == upstream.call_count("openai")
    assert status["provider_usage"]["anthropic"]["current"] == counters["anthropic"]

"""Cost control (CONTRACT §7): hourly provider windows, budget reservation and alerts,
status, recommend-model, billing, and the numbers agreeing with each other."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sqlite3

import pytest

from j1msky import scheduler
from j1msky.db import connection_for
from j1msky.services import clock
from tests.helpers import configure, wait_for

pytestmark = pytest.mark.usefixtures("upstream")
UTC = dt.timezone.utc


def at(moment: dt.datetime):
    clock.set_clock(lambda: moment)


def spawn(client, key, **body):
    return client.post("/api/spawn", headers=key.headers, json=body)


def events_of(app, event_type: str) -> list[dict]:
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        return [json.loads(r[0]) for r in conn.execute(
            "SELECT data FROM events WHERE type = ? ORDER BY id", (event_type,))]
    finally:
        conn.close()


# Hourly provider windows ----------------------------------------------------------------

def test_provider_at_its_limit_is_skipped_for_the_fallback(client, app, admin, upstream,
                                                           start_runner):
    configure(app, providers={**app.extensions["j1msky_config"].get()["providers"],
                              "anthropic": {**app.extensions["j1msky_config"].get()[
                                  "providers"]["anthropic"], "hourly": 2}})
    start_runner()
    done = [wait_for(client, admin, spawn(client, admin, model="sonnet", task=f"t{i}"
                                           ).json["agent_id"]) for i in range(3)]
    assert [a["status"] for a in done] == ["completed"] * 3
    assert [a["fallback_from"] for a in done] == [None, None, "sonnet"]
    assert upstream.call_count("anthropic") == 2 and upstream.call_count("openai") == 1
    limits = client.get("/api/rate-limits", headers=admin.headers).json["limits"]
    assert limits["anthropic"] == {"used": 2, "limit": 2, "remaining": 0,
                                   "reset_at": limits["anthropic"]["reset_at"]}
    assert limits["kimi-coding"]["used"] == 1


def test_with_every_provider_at_its_limit_spawn_is_429_until_the_window_ends(client, app, admin):
    at(dt.datetime(2026, 3, 10, 14, 59, 30, tzinfo=UTC))
    conn = connection_for(app.config["DATABASE"])
    conn.execute("INSERT INTO provider_usage VALUES ('anthropic', ?, 1000), ('kimi-coding', ?, 1000)",
                 (clock.iso(dt.datetime(2026, 3, 10, 14, tzinfo=UTC)),) * 2)
    response = spawn(client, admin, model="opus", task="no capacity")
    assert response.status_code == 429
    assert response.json["error"]["retry_after"] == 31
    assert conn.execute("SELECT count(*) FROM agents").fetchone()[0] == 0
    at(dt.datetime(2026, 3, 10, 15, 0, 1, tzinfo=UTC))  # a missed reset: the read rolls it
    assert spawn(client, admin, model="opus", task="new hour").status_code == 202


def test_window_roll_resets_counters_and_moves_reset_at(client, app, admin):
    conn = connection_for(app.config["DATABASE"])
    at(dt.datetime(2026, 3, 10, 9, 59, 0, tzinfo=UTC))
    conn.execute("INSERT INTO provider_usage VALUES ('anthropic', ?, 7)",
                 (clock.iso(dt.datetime(2026, 3, 10, 9, tzinfo=UTC)),))
    before = client.get("/api/rate-limits", headers=admin.headers).json["limits"]["anthropic"]
    assert before["used"] == 7 and before["reset_at"] == "2026-03-10T10:00:00Z"
    at(dt.datetime(2026, 3, 10, 10, 0, 0, tzinfo=UTC))
    with app.app_context():
        scheduler.reset_provider_windows()
    assert tuple(conn.execute("SELECT calls, window_start FROM provider_usage").fetchone()) == \
        (0, "2026-03-10T10:00:00.000000Z")
    after = client.get("/api/rate-limits", headers=admin.headers).json["limits"]["anthropic"]
    assert after == {"used": 0, "limit": 1000, "remaining": 1000,
                     "reset_at": "2026-03-10T11:00:00Z"}


def test_scheduler_registers_the_periodic_jobs(app):
    sched = scheduler.start(app)
    try:
        jobs = {job.id: job for job in sched.get_jobs()}
        assert {"reset_provider_windows", "purge_idempotency_keys"} <= set(jobs)
        assert str(jobs["reset_provider_windows"].trigger).startswith("cron[")
        assert "minute='0'" in str(jobs["reset_provider_windows"].trigger)
    finally:
        sched.shutdown(wait=False)


# Budget ------------------------------------------------------------------------------------

def test_reservations_stop_spawns_before_the_budget_is_overshot(client, app, admin):
    configure(app, budget={"daily": 0.2})  # sonnet reserves ~$0.0615 (4096 output tokens)
    accepted = 0
    while True:
        response = spawn(client, admin, model="sonnet", task="reserve me")
        if response.status_code != 202:
            break
        accepted += 1
    assert response.status_code == 429
    assert response.json["error"]["message"] == \
        "Daily budget would be exceeded by this agent's estimated cost"
    status = client.get("/api/orchestrator/status", headers=admin.headers).json
    assert accepted == 3
    assert status["today_reserved"] <= 0.2 and status["today_spend"] == 0


def test_an_estimate_that_fills_the_budget_exactly_is_reserved_and_the_next_is_not(
        client, app, admin):
    estimate = spawn(client, admin, model="sonnet", task="x").json["estimated_cost"]
    assert client.delete(f"/api/agent/{agents_of(app)[0]}", headers=admin.headers).status_code == 200
    configure(app, budget={"daily": round(2 * estimate, 6)})
    assert [spawn(client, admin, model="sonnet", task="x").status_code for _ in range(3)] == \
        [202, 202, 429]
    status = client.get("/api/orchestrator/status", headers=admin.headers).json
    assert status["today_reserved"] == round(2 * estimate, 6)


def test_an_estimate_past_the_whole_budget_is_refused_on_a_fresh_day(client, app, admin):
    configure(app, budget={"daily": 0.01})  # sonnet reserves ~$0.0615
    response = spawn(client, admin, model="sonnet", task="too big")
    assert response.status_code == 429
    assert response.json["error"]["message"] == \
        "Daily budget would be exceeded by this agent's estimated cost"
    conn = connection_for(app.config["DATABASE"])
    assert conn.execute("SELECT count(*) FROM budget_days").fetchone()[0] == 0
    assert agents_of(app) == []


def agents_of(app) -> list[str]:
    conn = connection_for(app.config["DATABASE"])
    return [r[0] for r in conn.execute("SELECT agent_id FROM agents ORDER BY id")]


def test_budget_429_lasts_until_the_end_of_the_budget_day_in_its_time_zone(client, app, admin):
    configure(app, timezone="America/New_York", budget={"daily": 1})
    at(dt.datetime(2026, 3, 10, 23, 0, 0, tzinfo=UTC))  # 19:00 in New York
    conn = connection_for(app.config["DATABASE"])
    conn.execute("INSERT INTO budget_days (day, spent_micros) VALUES ('2026-03-10', 1000000)")
    response = spawn(client, admin, model="k2p5", task="over budget")
    assert response.status_code == 429
    assert response.json["error"]["message"] == "Daily budget exhausted"
    assert response.json["error"]["retry_after"] == 5 * 3600 + 1
    at(dt.datetime(2026, 3, 11, 5, 0, 1, tzinfo=UTC))  # 00:00:01 in New York
    assert spawn(client, admin, model="k2p5", task="a new day").status_code == 202


def test_alert_levels_change_with_spend_and_each_change_is_an_event(client, app, admin, upstream,
                                                                    start_runner):
    configure(app, budget={"daily": 0.1}, agents={"max_output_tokens": 1000})
    upstream.set("anthropic", input_tokens=0, output_tokens=1000)  # sonnet: $0.015 each
    start_runner()
    levels = []
    for i in range(4):
        agent_id = spawn(client, admin, model="sonnet", task=f"spend {i}").json["agent_id"]
        assert wait_for(client, admin, agent_id)["status"] == "completed"
        levels.append(client.get("/api/orchestrator/status", headers=admin.headers
                                 ).json["budget_alert_level"])
    # 15%, 30%, 45%, 60%
    assert levels == ["ok", "ok", "ok", "notice"]
    alerts = events_of(app, "budget.alert")
    assert [(a["previous_level"], a["level"]) for a in alerts] == [("ok", "notice")]
    assert alerts[0]["budget_utilization_pct"] == 60.0


def test_status_has_every_documented_field_and_they_agree(client, app, admin, upstream,
                                                           start_runner):
    upstream.set(input_tokens=1000, output_tokens=1000)
    start_runner()
    for model in ("k2p5", "k2p5", "sonnet"):
        wait_for(client, admin, spawn(client, admin, model=model, task="x").json["agent_id"])
    status = client.get("/api/orchestrator/status", headers=admin.headers).json
    assert set(status) >= {"timestamp", "models_active", "usage_summary", "recent_usage",
                           "daily_budget", "today_spend", "budget_remaining",
                           "budget_utilization_pct", "budget_alert_level", "monthly_forecast",
                           "provider_usage"}
    assert status["usage_summary"]["top_models"] == [
        {"model": "k2p5", "calls": 2, "tokens": 4000},
        {"model": "sonnet", "calls": 1, "tokens": 2000}]
    assert status["usage_summary"]["total_calls"] == status["recent_usage"] == 3
    spend = 2 * (0.0006 + 0.0025) + (0.003 + 0.015)
    assert status["today_spend"] == round(spend, 6)
    assert status["budget_remaining"] == round(50 - spend, 6)
    assert status["budget_utilization_pct"] == round(spend / 50 * 100, 2)
    assert status["provider_usage"]["kimi-coding"]["current"] == 2
    assert status["provider_usage"]["anthropic"]["utilization_pct"] == 0.1


def test_monthly_forecast_projects_month_to_date_over_days_elapsed(client, app, admin):
    at(dt.datetime(2026, 2, 10, 12, tzinfo=UTC))
    conn = connection_for(app.config["DATABASE"])
    conn.execute("INSERT INTO budget_days (day, spent_micros) VALUES ('2026-02-01', 20000000),"
                 " ('2026-02-10', 5000000), ('2026-01-31', 99000000)")
    forecast = client.get("/api/orchestrator/status", headers=admin.headers
                          ).json["monthly_forecast"]
    assert forecast == {"projected_spend": 70.0, "budget_ceiling": 1500,
                        "delta_to_budget": 1430.0}


# recommend-model --------------------------------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ({"task_type": "coding"}, "k2p5"),
    ({"task_type": "coding", "complexity": "high"}, "opus"),
    ({"task_type": "writing", "complexity": "low"}, "k2p5"),
    ({"task_type": "research", "priority": "high"}, "opus"),
    ({"task_type": "research", "priority": "low"}, "k2p5"),
    ({"task_type": "research", "priority": "high", "complexity": "low"}, "k2p5"),
])
def test_recommend_model_routes_by_task_type_complexity_and_priority(client, admin, body,
                                                                     expected):
    response = client.post("/api/orchestrator/recommend-model", headers=admin.headers,
                           json={"estimated_tokens": 2500, **body})
    assert response.status_code == 200
    assert response.json["recommended_model"] == expected
    assert response.json["budget_available"] is True
    assert response.json["estimated_cost"] > 0 and response.json["reason"]
    assert set(response.json) >= {"daily_budget", "today_spend", "budget_remaining"}


def test_recommend_model_skips_what_does_not_fit_the_budget(client, app, admin):
    configure(app, budget={"daily": 0.05})
    body = {"task_type": "coding", "complexity": "high", "estimated_tokens": 10000}
    answer = client.post("/api/orchestrator/recommend-model", headers=admin.headers, json=body).json
    assert answer["recommended_model"] == "k2p5"  # opus $0.45, sonnet $0.09 do not fit
    assert "exceeds the remaining" in answer["reason"]
    body["estimated_tokens"] = 1_000_000
    answer = client.post("/api/orchestrator/recommend-model", headers=admin.headers, json=body).json
    assert answer["recommended_model"] is None and answer["budget_available"] is False


def test_spawn_without_model_uses_the_recommendation(client, app, admin):
    configure(app, budget={"daily": 0.1}, routing={"task_models": {"general": ["opus", "sonnet"]}})
    response = spawn(client, admin, task="pick for me")  # opus would cost ~$0.18: too much
    assert response.status_code == 202 and response.json["model"] == "sonnet"


@pytest.mark.parametrize("body, field", [
    ({"task_type": "juggling"}, "task_type"),
    ({}, "task_type"),
    ({"task_type": "coding", "complexity": "extreme"}, "complexity"),
    ({"task_type": "coding", "priority": "asap"}, "priority"),
    ({"task_type": "coding", "estimated_tokens": -5}, "estimated_tokens"),
    ({"task_type": "coding", "estimated_tokens": 10**12}, "estimated_tokens"),
    ({"task_type": "coding", "estimated_tokens": "many"}, "estimated_tokens"),
    ({"task_type": "coding", "budget": 5}, "budget"),
])
def test_bad_recommend_requests_are_400(client, admin, body, field):
    response = client.post("/api/orchestrator/recommend-model", headers=admin.headers, json=body)
    assert response.status_code == 400
    assert field in response.json["error"]["details"]


# Billing ----------------------------------------------------------------------------------

def test_billing_usage_totals_and_csv(client, app, admin, keys, upstream, start_runner):
    other = keys.make("agents:write")
    upstream.set(input_tokens=1000, output_tokens=1000)
    start_runner()
    for key, model in ((admin, "k2p5"), (admin, "opus"), (other, "k2p5")):
        wait_for(client, admin, spawn(client, key, model=model, task="bill me").json["agent_id"])
    usage = client.get("/api/billing/usage", headers=admin.headers).json
    k2p5, opus = 0.0006 + 0.0025, 0.015 + 0.075
    assert usage["by_model"] == {"k2p5": round(2 * k2p5, 6), "opus": round(opus, 6)}
    assert usage["total_cost"] == round(2 * k2p5 + opus, 6)
    assert usage["by_provider"] == {"anthropic": round(opus, 6), "kimi-coding": round(2 * k2p5, 6)}
    assert usage["by_key"] == {admin.key_id: round(k2p5 + opus, 6), other.key_id: round(k2p5, 6)}
    today = dt.datetime.now(UTC).date()
    assert usage["by_day"] == {today.isoformat(): usage["total_cost"]}
    assert usage["period"] == f"{today.replace(day=1)} to {today}"
    response = client.get("/api/billing/usage?format=csv", headers=admin.headers)
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 3
    assert round(sum(float(r["cost"]) for r in rows), 6) == usage["total_cost"]


@pytest.mark.parametrize("query, field", [
    ("start=2026-13-01", "start"), ("end=yesterday", "end"),
    ("start=2026-03-10&end=2026-03-01", "end"), ("format=xml", "format"), ("month=3", "month"),
])
def test_bad_billing_queries_are_400(client, admin, query, field):
    response = client.get(f"/api/billing/usage?{query}", headers=admin.headers)
    assert response.status_code == 400
    assert field in response.json["error"]["details"]


def test_billing_needs_billing_read(client, keys):
    key = keys.make("agents:read", "agents:write", "admin:write")
    assert client.get("/api/billing/usage", headers=key.headers).status_code == 403

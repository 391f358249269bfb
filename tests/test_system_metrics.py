"""GET /system (the host, from psutil) and GET /metrics (Prometheus text format)."""
from __future__ import annotations

import re
import time
from collections import namedtuple

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from j1msky.db import connection_for
from j1msky.services import agents, providers
from j1msky.services import host as system
from tests.helpers import configure, wait_for

Reading = namedtuple("Reading", "label current high critical")  # psutil's shwtemp
FAMILIES = {
    "j1msky_agents": "gauge",
    "j1msky_agent_duration_seconds": "histogram",
    "j1msky_spend_today_dollars": "gauge",
    "j1msky_daily_budget_dollars": "gauge",
    "j1msky_budget_utilization_ratio": "gauge",
    "j1msky_provider_calls": "counter",
    "j1msky_provider_window_calls": "gauge",
    "j1msky_provider_hourly_limit": "gauge",
    "j1msky_provider_circuit_open": "gauge",
    "j1msky_webhook_deliveries": "counter",
    "j1msky_http_requests": "counter",
}


class Scrape:
    """One parsed GET /api/metrics."""

    def __init__(self, client, key):
        response = client.get("/api/metrics", headers=key.headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.content_type.startswith("text/plain; version=0.0.4")
        self.text = response.get_data(as_text=True)
        self.types = {}
        self.samples = []
        for family in text_string_to_metric_families(self.text):
            self.types[family.name] = family.type
            self.samples += family.samples

    def value(self, name: str, **labels) -> float | None:
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, (name, labels)
        return found[0] if found else None

    def labels_of(self, name: str) -> list[dict]:
        return [s.labels for s in self.samples if s.name == name]


def spawn(client, key, **body) -> str:
    response = client.post("/api/spawn", headers=key.headers, json={"task": "t", **body})
    assert response.status_code == 202, response.json
    return response.json["agent_id"]


@pytest.fixture
def reader(keys):
    return keys.make("agents:read")


@pytest.fixture
def fresh_breakers():
    providers.reset_breakers()
    yield
    providers.reset_breakers()


# /system ---------------------------------------------------------------------------------

def test_system_reports_the_documented_fields_and_the_extras(client, reader):
    response = client.get("/api/system", headers=reader.headers)
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"cpu_temp", "load_average", "memory_usage", "uptime", "disk_free",
                         "active_agents", "uptime_seconds", "disk_free_bytes", "process_rss_mb"}
    assert body["cpu_temp"] is None or isinstance(body["cpu_temp"], float)
    assert isinstance(body["load_average"], (int, float)) and body["load_average"] >= 0
    assert 0 <= body["memory_usage"] <= 100
    assert re.fullmatch(r"\d+h \d{1,2}m", body["uptime"])
    seconds = body["uptime_seconds"]
    assert isinstance(seconds, int) and body["uptime"] == f"{seconds // 3600}h {seconds % 3600 // 60}m"
    assert re.fullmatch(r"\d+(\.\d)?[BKMGTP]", body["disk_free"])
    assert isinstance(body["disk_free_bytes"], int) and body["disk_free_bytes"] > 0
    assert body["process_rss_mb"] > 0
    assert body["active_agents"] == 0


def test_active_agents_counts_spawning_and_running_ones(app, client, admin, reader):
    ids = [spawn(client, admin, model="k2p5") for _ in range(3)]  # no runner: they wait
    assert client.get("/api/system", headers=reader.headers).json["active_agents"] == 3
    agents.mark_running(connection_for(app.config["DATABASE"]), ids[0])
    assert client.delete(f"/api/agent/{ids[1]}", headers=admin.headers).status_code == 200
    assert client.get("/api/v4/system", headers=reader.headers).json["active_agents"] == 2


@pytest.mark.parametrize("sensors, zone, expected", [
    ({"coretemp": [Reading("Core 0", 41.0, 80, 90)],
      "cpu_thermal": [Reading("", 48.312, None, None)]}, None, 48.3),   # a Raspberry Pi
    ({"acpitz": [Reading("", 37.55, None, None)]}, None, 37.5),          # first sensor
    ({}, "51234\n", 51.2),                                               # thermal zone 0
    ({}, None, None),                                                    # no sensor at all
])
def test_cpu_temp_prefers_the_pi_sensor_then_any_then_thermal_zone(
        monkeypatch, tmp_path, sensors, zone, expected):
    monkeypatch.setattr(system.psutil, "sensors_temperatures", lambda: sensors, raising=False)
    path = tmp_path / "temp"
    if zone is not None:
        path.write_text(zone)
    monkeypatch.setattr(system, "THERMAL_ZONE", str(path))
    assert system.cpu_temp() == expected


@pytest.mark.parametrize("size, text", [
    (45 * 2**30, "45G"), (int(3.2 * 2**30), "3.2G"), (512 * 2**20, "512M"), (100, "100B"),
    (int(1.5 * 2**40), "1.5T"), (0, "0B"),
])
def test_disk_free_reads_like_df_h(size, text):
    assert system.human_bytes(size) == text


def test_system_needs_agents_read_and_has_its_own_rate_limit(app, client, keys, reader):
    writer = keys.make("agents:write", "billing:read", "admin:write")
    assert client.get("/api/system").status_code == 401
    refused = client.get("/api/system", headers=writer.headers)
    assert refused.status_code == 403 and "agents:read" in refused.json["error"]["message"]
    configure(app, rate_limits={"system": "2/hour"})
    answers = [client.get(path, headers=reader.headers) for path in
               ("/api/system", "/api/v4/system", "/api/system")]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "2"
    assert answers[2].json["error"]["retry_after"] >= 1


# /metrics --------------------------------------------------------------------------------

def test_metrics_need_agents_read(client, keys):
    writer = keys.make("agents:write", "billing:read", "admin:write")
    assert client.get("/api/metrics").status_code == 401
    refused = client.get("/api/metrics", headers=writer.headers)
    assert refused.status_code == 403 and refused.json["success"] is False


def test_metrics_expose_every_family_with_its_type(client, reader):
    scrape = Scrape(client, reader)
    for name, kind in FAMILIES.items():
        assert scrape.types.get(name) == kind, name
    assert "process_resident_memory_bytes" in scrape.types
    assert "_created" not in scrape.text  # no second series per counter child


def test_agents_durations_and_spend_after_agents_finish(app, client, admin, reader,
                                                        start_runner):
    configure(app, providers={"anthropic": {"kind": "simulated", "hourly": 1000, "delay": 30}})
    early = spawn(client, admin, model="sonnet")
    client.delete(f"/api/agent/{early}", headers=admin.headers)  # cancelled before it ran
    start_runner()
    done = [wait_for(client, admin, spawn(client, admin, model=m)) for m in ("k2p5", "k2p5")]
    slow = spawn(client, admin, model="opus")
    wait_for(client, admin, slow, statuses=("running",))
    time.sleep(0.2)
    client.delete(f"/api/agent/{slow}", headers=admin.headers)        # cancelled while running
    assert {a["status"] for a in done} == {"completed"}

    scrape = Scrape(client, reader)
    assert scrape.value("j1msky_agents", model="k2p5", status="completed") == 2
    assert scrape.value("j1msky_agents", model="sonnet", status="cancelled") == 1
    assert scrape.value("j1msky_agents", model="opus", status="cancelled") == 1
    assert scrape.value("j1msky_agents", model="opus", status="running") == 0
    assert scrape.value("j1msky_agents", model="sonnet", status="completed") == 0
    count = "j1msky_agent_duration_seconds_count"
    assert scrape.value(count, model="k2p5", status="completed") == 2
    assert scrape.value(count, model="opus", status="cancelled") == 1
    assert scrape.value(count, model="sonnet", status="cancelled") is None  # never ran
    assert 0.2 <= scrape.value("j1msky_agent_duration_seconds_sum", model="opus",
                               status="cancelled") < 5
    assert scrape.value("j1msky_agent_duration_seconds_bucket", model="k2p5",
                        status="completed", le="+Inf") == 2

    spent = sum(client.get(f"/api/agent/{a['agent_id']}", headers=admin.headers).json["cost"]
                for a in done)
    status = client.get("/api/orchestrator/status", headers=admin.headers).json
    assert scrape.value("j1msky_spend_today_dollars") == pytest.approx(spent, abs=1e-6)
    assert scrape.value("j1msky_spend_today_dollars") == pytest.approx(status["today_spend"])
    assert scrape.value("j1msky_daily_budget_dollars") == status["daily_budget"]
    assert scrape.value("j1msky_budget_utilization_ratio") == pytest.approx(
        spent / status["daily_budget"], abs=1e-9)


def test_http_requests_are_counted_by_route_template_not_path(client, admin, reader):
    agent_id = spawn(client, admin, model="k2p5")
    for _ in range(3):
        assert client.get(f"/api/v4/agent/{agent_id}", headers=reader.headers).status_code == 200
    for missing in ("subagent_1_000001", "subagent_1_000002"):
        assert client.get(f"/api/v4/agent/{missing}", headers=reader.headers).status_code == 404
    client.get("/api/no/such/thing", headers=reader.headers)
    client.get("/api/no/such/other", headers=reader.headers)
    client.delete("/api/health", headers=reader.headers)       # 405: no rule for the method
    client.open("/api/agents", method="BREW", headers=reader.headers)

    scrape = Scrape(client, reader)
    total = "j1msky_http_requests_total"
    route = "/api/v4/agent/<agent_id>"
    assert scrape.value(total, route=route, method="GET", status="200") == 3
    assert scrape.value(total, route=route, method="GET", status="404") == 2
    assert scrape.value(total, route="/api/spawn", method="POST", status="202") == 1
    assert scrape.value(total, route="unmatched", method="GET", status="404") == 2
    assert scrape.value(total, route="unmatched", method="DELETE", status="405") == 1
    assert scrape.value(total, route="unmatched", method="OTHER", status="405") == 1
    assert not any("subagent_" in labels["route"] or "such" in labels["route"]
                   for labels in scrape.labels_of(total))


def test_every_app_has_its_own_registry(tmp_path, client, client_for, reader):
    other = tmp_path / "other"
    other.mkdir()
    client_for(other).get("/api/nothing-here")
    scrape = Scrape(client, reader)
    assert scrape.value("j1msky_http_requests_total", route="unmatched", method="GET",
                        status="404") is None
    assert b"j1msky_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_circuit_open_follows_the_breakers(client, reader, fresh_breakers):
    providers.breaker_for("anthropic", threshold=1, reset_timeout=60).record_failure()
    providers.breaker_for("kimi-coding", threshold=5).record_failure()
    scrape = Scrape(client, reader)
    assert scrape.value("j1msky_provider_circuit_open", provider="anthropic") == 1
    assert scrape.value("j1msky_provider_circuit_open", provider="kimi-coding") == 0
    providers.breaker_for("anthropic").record_success()
    assert Scrape(client, reader).value("j1msky_provider_circuit_open", provider="anthropic") == 0


@pytest.mark.usefixtures("upstream")
def test_provider_calls_count_every_http_attempt(client, admin, reader, upstream, start_runner):
    upstream.set("anthropic", fail_status=429, fail_times=1, retry_after=0)
    start_runner()
    assert wait_for(client, admin, spawn(client, admin, model="opus"))["status"] == "completed"
    assert wait_for(client, admin, spawn(client, admin, model="k2p5"))["status"] == "completed"
    scrape = Scrape(client, reader)
    assert upstream.call_count("anthropic") == 2                     # a 429, then the answer
    assert scrape.value("j1msky_provider_calls_total", provider="anthropic") == 2
    assert scrape.value("j1msky_provider_calls_total", provider="kimi-coding") == 1
    assert scrape.value("j1msky_provider_window_calls", provider="anthropic") == 2
    assert scrape.value("j1msky_provider_hourly_limit", provider="anthropic") == 1000
    assert scrape.value("j1msky_provider_circuit_open", provider="anthropic") == 0


def test_simulated_providers_are_never_counted_as_calls(client, admin, reader, start_runner):
    start_runner()
    wait_for(client, admin, spawn(client, admin, model="sonnet"))
    scrape = Scrape(client, reader)
    assert scrape.value("j1msky_provider_calls_total", provider="anthropic") == 0
    assert scrape.value("j1msky_provider_window_calls", provider="anthropic") == 0


def test_webhook_deliveries_are_counted_by_outcome(app, client, admin, reader, webhook_receiver,
                                                   start_dispatcher):
    configure(app, webhooks={"allowed_networks": ["127.0.0.0/8"], "timeout_seconds": 1,
                             "retry_schedule_seconds": [0.05, 0.05, 0.05]})
    webhook_receiver.set("/flaky", status=500, fail_times=1)   # retry, then delivered
    webhook_receiver.set("/down", status=500)                  # 3 retries, then failed
    webhook_receiver.set("/gone", status=410)                  # disabled
    hooks = []
    for path in ("/flaky", "/down", "/gone"):
        made = client.post("/api/webhooks", headers=admin.headers, json={
            "url": webhook_receiver.url + path, "events": ["agent.completed"]})
        assert made.status_code == 201
        hooks.append(made.json["id"])
        assert client.post(f"/api/webhooks/{made.json['id']}/test",
                           headers=admin.headers).status_code in (200, 202)
    start_dispatcher()
    deadline = time.monotonic() + 10
    while any(d["state"] == "pending"
              for hook in hooks
              for d in client.get(f"/api/webhooks/{hook}/deliveries",
                                  headers=admin.headers).json["data"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    scrape = Scrape(client, reader)
    outcomes = {outcome: scrape.value("j1msky_webhook_deliveries_total", outcome=outcome)
                for outcome in ("delivered", "retry", "failed", "disabled")}
    assert outcomes == {"delivered": 1, "retry": 4, "failed": 1, "disabled": 1}
    assert webhook_receiver.count() == 2 + 4 + 1

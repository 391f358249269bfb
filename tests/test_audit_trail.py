"""The audit trail records what the reference documents, in its shape, PII masked
when asked, and never a key, secret or signature."""
from __future__ import annotations

import pytest

from tests.helpers import configure, wait_for


def entries(client, key, **params) -> list[dict]:
    response = client.get("/api/security/audit", headers=key.headers,
                          query_string={"limit": 100, **params})
    assert response.status_code == 200, response.json
    return response.json["data"]


def test_spawn_and_completion_are_audited_in_the_documented_shape(client, admin, start_runner):
    start_runner()
    agent_id = client.post("/api/spawn", headers={**admin.headers, "User-Agent": "j1msky-sdk/1.0"},
                           json={"model": "k2p5", "task": "Generate report for Q4"}
                           ).json["agent_id"]
    wait_for(client, admin, agent_id)
    [spawn] = entries(client, admin, event="agent.spawn")
    assert set(spawn) >= {"timestamp", "event", "severity", "api_key_id", "ip_address",
                          "user_agent", "request_id", "resource", "details"}
    assert spawn["severity"] == "info" and spawn["api_key_id"] == admin.key_id
    assert spawn["user_agent"] == "j1msky-sdk/1.0" and spawn["ip_address"] == "127.0.0.1"
    assert spawn["resource"] == {"type": "agent", "id": agent_id}
    assert spawn["details"]["task_preview"] == "Generate report for Q4"
    assert spawn["details"]["model"] == "k2p5" and spawn["details"]["estimated_cost"] > 0
    [done] = entries(client, admin, event="agent.complete")
    assert done["resource"]["id"] == agent_id and done["details"]["cost"] >= 0


def test_failures_are_audited_as_warnings(client, app, admin, start_runner):
    configure(app, simulate_missing_providers=False, providers={
        "anthropic": {"kind": "anthropic", "base_url": "http://127.0.0.1:9",
                      "api_key_env": "J1MSKY_TEST_SET_KEY", "hourly": 10},
        "kimi-coding": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                        "api_key_env": "J1MSKY_TEST_SET_KEY", "hourly": 10}},
        provider_calls={"retries": 0})
    import os
    os.environ["J1MSKY_TEST_SET_KEY"] = "sk-test-unreachable"
    try:
        start_runner()
        agent_id = client.post("/api/spawn", headers=admin.headers,
                               json={"model": "opus", "task": "doomed"}).json["agent_id"]
        wait_for(client, admin, agent_id)
    finally:
        del os.environ["J1MSKY_TEST_SET_KEY"]
    [failed] = entries(client, admin, event="agent.fail")
    assert failed["severity"] == "warning" and failed["details"]["error"]
    assert "sk-test-unreachable" not in str(failed)


def test_masked_and_encrypted_tasks_in_audit_previews(client, admin):
    task = "Call +44 20 7946 0958 or mail bob@example.org"
    client.post("/api/spawn", headers=admin.headers, json={
        "model": "k2p5", "task": task, "privacy": {"mask_pii_in_logs": True}})
    client.post("/api/spawn", headers=admin.headers, json={
        "model": "k2p5", "task": task, "privacy": {"encrypt_output": True}})
    masked, sealed = sorted(entries(client, admin, event="agent.spawn"),
                            key=lambda e: int(e["id"][4:]))
    assert masked["details"]["task_preview"] == "Call [phone] or mail [email]"
    assert "task_preview" not in sealed["details"]


@pytest.mark.parametrize("level, recorded", [("standard", False), ("verbose", True)])
def test_key_use_is_audited_only_at_the_verbose_level(client, app, admin, level, recorded):
    configure(app, audit={"log_level": level})
    client.get("/api/agents", headers=admin.headers)
    used = entries(client, admin, event="api.key.used")
    assert bool(used) is recorded


def test_config_changes_and_violations_are_audited(client, app, admin):
    response = client.put("/api/security/ip-whitelist", headers=admin.headers,
                          json={"allowed_ips": ["127.0.0.1/32"], "enforce": True})
    assert response.status_code == 200
    [change] = entries(client, admin, event="config.change")
    assert change["details"]["changes"]["enforce"] == {"old": False, "new": True}
    refused = client.get("/api/agents", headers=admin.headers,
                         environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert refused.status_code == 403
    [violation] = entries(client, admin, event="security.violation")
    assert violation["details"]["kind"] == "ip_not_whitelisted"
    assert violation["ip_address"] == "10.1.2.3"

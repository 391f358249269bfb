"""The real commands: `j1msky init`, `j1msky keys create --json`, `j1msky serve` over HTTP."""
from __future__ import annotations

import requests

from tests.helpers import config_for_tests


def test_init_keys_serve_and_talk_over_http(live_server_factory):
    server = live_server_factory(config_for_tests())
    admin = server.create_key("agents:read", "agents:write", "admin:write")
    assert admin["key"].startswith("live_sk_") and admin["api_secret"] is None
    server.start()
    auth = {"Authorization": f"Bearer {admin['key']}"}

    health = requests.get(server.url + "/api/health", headers=auth, timeout=5)
    assert health.status_code == 200
    assert health.json()["models_configured"] == 3
    assert health.headers["X-Request-Id"].startswith("req_")

    assert requests.get(server.url + "/api/health", timeout=5).status_code == 401
    missing = requests.get(server.url + "/api/v4/nothing", headers=auth, timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404

    made = requests.post(server.url + "/api/v4/keys", headers=auth, timeout=5,
                         json={"name": "sdk", "scopes": ["agents:read"]})
    assert made.status_code == 201
    assert requests.get(server.url + "/api/agents", timeout=5, headers={
        "Authorization": f"Bearer {made.json()['key']}"}).status_code == 200
    assert server.stop() == 0


def test_serve_refuses_more_than_one_worker(live_server_factory):
    server = live_server_factory(config_for_tests())
    result = server.cli("serve", "--workers", "2", check=False)
    assert result.returncode == 1
    assert "exactly one worker" in result.stderr


def test_serve_warns_about_simulated_models_naming_the_variables(live_server_factory):
    server = live_server_factory()  # the example config: real providers, no keys set
    server.start()
    server.stop()
    log = server.log()
    assert "served by the built-in simulator" in log
    assert "ANTHROPIC_API_KEY" in log and "KIMI_API_KEY" in log

"""The real commands: `j1msky init`, `j1msky keys create --json`, `j1msky serve` over HTTP."""
from __future__ import annotations

import re

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


def served_lines(server) -> list[str]:
    return [line for line in server.log().splitlines() if '"GET /api/' in line]


def test_access_log_is_off_by_default_and_a_config_switch(live_server_factory):
    quiet = live_server_factory(config_for_tests()).start()
    assert requests.get(quiet.url + "/api/health?probe=1", timeout=5).status_code == 401
    assert quiet.stop() == 0
    assert "Booting worker" in quiet.log()                 # gunicorn's own lines still come
    assert served_lines(quiet) == []

    logged = live_server_factory(config_for_tests(server={"access_log": True})).start()
    assert requests.get(logged.url + "/api/health?probe=1", timeout=5).status_code == 401
    assert logged.stop() == 0
    line = [line for line in served_lines(logged) if "probe=1" in line][-1]
    assert re.fullmatch(r'127\.0\.0\.1 "GET /api/health\?probe=1 HTTP/1\.1" 401 \d+ \d+ms', line)


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

"""Blocks on a real `j1msky serve`: an automatic block never stops the owner's valid key,
a manual one stops everything, and `j1msky blocks` lifts either while the service runs."""
from __future__ import annotations

import time

import pytest
import requests
from requests.adapters import HTTPAdapter

from j1msky.ipguard import AUTO_BLOCKED_MESSAGE
from tests.helpers import config_for_tests

BAD_KEY = {"Authorization": "Bearer live_sk_" + "x" * 32}
OTHER_DEVICE = "127.0.0.2"  # stands in for a second device on the LAN


class FromAddress(HTTPAdapter):
    """Connections from a chosen local address (another device, on loopback)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


def session_from(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


@pytest.fixture
def served(live_server_factory):
    server = live_server_factory(config_for_tests(
        security={"auth_failures_to_block": 3, "auto_block_hours": 1}))
    key = server.create_key("agents:read", "admin:write")["key"]
    server.start()
    yield server, {"Authorization": f"Bearer {key}"}
    server.stop()


def message(response) -> str:
    return response.json()["error"]["message"]


def eventually(check, timeout: float = 1.5) -> bool:
    """check() true within timeout (the service reloads its copy of blocks every second)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_auto_block_keeps_the_owner_in_and_the_cli_lifts_it(served):
    server, owner = served
    health = server.url + "/api/health"
    for _ in range(3):
        assert requests.get(health, headers=BAD_KEY, timeout=5).status_code == 401
    refused = requests.get(health, headers=BAD_KEY, timeout=5)
    assert refused.status_code == 401 and message(refused) == AUTO_BLOCKED_MESSAGE
    assert refused.json()["error"]["your_ip"] == "127.0.0.1"
    assert requests.get(health, headers=owner, timeout=5).status_code == 200
    listed = requests.get(server.url + "/api/security/blocked-ips", headers=owner, timeout=5)
    assert [b["ip"] for b in listed.json()["data"]] == ["127.0.0.1"]
    # Blocking yourself outright is refused, as the allow list refuses locking you out.
    mine = requests.post(server.url + "/api/security/block-ip", json={"ip": "127.0.0.1"},
                         headers=owner, timeout=5)
    assert mine.status_code == 409 and mine.json()["error"]["your_ip"] == "127.0.0.1"

    shown = server.cli("blocks", "list").stdout
    assert shown.startswith("127.0.0.1  auth_failures  ")
    assert "repeated authentication failures" in shown
    assert server.cli("blocks", "remove", "127.0.0.1").stdout == "Unblocked 127.0.0.1\n"
    assert eventually(lambda: message(requests.get(health, headers=BAD_KEY, timeout=5))
                      == "Invalid API key")
    assert server.cli("blocks", "list").stdout == ""


def test_manual_block_stops_a_valid_key_until_the_cli_lifts_it(served):
    server, owner = served
    device = session_from(OTHER_DEVICE)
    health = server.url + "/api/health"
    assert device.get(health, headers=owner, timeout=5).status_code == 200
    made = requests.post(server.url + "/api/security/block-ip",
                         json={"ip": OTHER_DEVICE, "reason": "lost laptop"}, headers=owner,
                         timeout=5)
    assert made.status_code == 201
    refused = device.get(health, headers=owner, timeout=5)
    assert refused.status_code == 403 and message(refused) == "IP blocked"
    assert "lost laptop" in server.cli("blocks", "list").stdout

    server.cli("blocks", "remove", OTHER_DEVICE)
    assert eventually(lambda: device.get(health, headers=owner, timeout=5).status_code == 200)
    again = server.cli("blocks", "remove", OTHER_DEVICE, check=False)
    assert again.returncode == 1 and again.stderr == f"Error: {OTHER_DEVICE} is not blocked\n"


def test_the_read_path_counts_wrong_keys_and_limits_each_key(live_server_factory):
    """GET /api/agent/{id}, the hot read path, on a real server: no key is a 401 that is
    not counted, wrong keys are counted until the address is blocked, and a valid key
    from that address still passes and is held to its own per-key limit."""
    server = live_server_factory(config_for_tests(
        security={"auth_failures_to_block": 3, "auto_block_hours": 1},
        rate_limits={"agent": "4/hour", "per_ip": "100/minute"}))
    owner = {"Authorization": f"Bearer {server.create_key('agents:read')['key']}"}
    server.start()
    device, path = session_from(OTHER_DEVICE), server.url + "/api/agent/subagent_1_1"

    no_key = [device.get(path, timeout=5) for _ in range(5)]
    assert {(r.status_code, message(r)) for r in no_key} == {(401, "Missing API key: send"
                                                                " 'Authorization: Bearer <key>'")}
    assert [r.headers["X-RateLimit-Remaining"] for r in no_key] == ["99", "98", "97", "96", "95"]
    wrong = [device.get(path, headers=BAD_KEY, timeout=5) for _ in range(3)]
    assert [message(r) for r in wrong] == ["Invalid API key"] * 3
    refused = device.get(path, headers=BAD_KEY, timeout=5)
    assert refused.status_code == 401 and message(refused) == AUTO_BLOCKED_MESSAGE
    assert refused.json()["error"]["your_ip"] == OTHER_DEVICE

    answers = [device.get(path, headers=owner, timeout=5) for _ in range(5)]
    assert [r.status_code for r in answers] == [404, 404, 404, 404, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["3", "2", "1", "0", "0"]
    assert {r.headers["X-RateLimit-Limit"] for r in answers} == {"4"}
    assert int(answers[-1].headers["Retry-After"]) == answers[-1].json()["error"]["retry_after"]
    assert requests.get(path, headers=owner, timeout=5).status_code == 429  # per key, not per IP
    assert server.stop() == 0

"""IP allow list, blocked addresses, automatic blocks, client address (CONTRACT §9)."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from j1msky.ipguard import AUTO_BLOCKED_MESSAGE, resolve_client_ip
from j1msky.services import clock
from tests.helpers import config_for_tests, configure

ALLOWED = ["10.0.0.0/8", "2001:db8::1"]


def at(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def health(client, key, address: str, **kw):
    return client.get("/api/health", headers={**key.headers, **kw.pop("headers", {})},
                      **at(address), **kw)


def violations(app) -> list[dict]:
    conn = sqlite3.connect(app.config["DATABASE"])
    rows = conn.execute("SELECT data FROM events WHERE type = 'security.violation'"
                        " ORDER BY id").fetchall()
    conn.close()
    return [json.loads(data) for (data,) in rows]


def blocked_rows(app) -> list[tuple]:
    conn = sqlite3.connect(app.config["DATABASE"])
    rows = conn.execute("SELECT ip, reason, source, expires_at FROM blocked_ips ORDER BY ip").fetchall()
    conn.close()
    return rows


def config_bytes(app) -> bytes:
    with open(app.config["CONFIG_PATH"], "rb") as fh:
        return fh.read()


def assert_refused(response, message: str, ip: str):
    """403 in the contract's shape: code, message, your_ip, request_id and nothing else."""
    assert response.status_code == 403
    assert response.json == {"success": False, "error": {
        "code": 403, "message": message, "request_id": response.headers["X-Request-Id"],
        "your_ip": ip}}


def freeze(moment: dt.datetime) -> list[dt.datetime]:
    """Inject a clock; returns a one-item list whose item the test moves."""
    now = [moment]
    clock.set_clock(lambda: now[0])
    return now


# -- the allow list ------------------------------------------------------------------------

@pytest.mark.parametrize("address, allowed", [
    ("10.1.2.3", True),            # inside the IPv4 CIDR
    ("11.0.0.1", False),
    ("2001:db8::1", True),         # the single IPv6 address
    ("2001:db8::2", False),
    ("::ffff:10.0.0.1", True),     # IPv4-mapped IPv6 peer matches the IPv4 network
    ("::ffff:192.168.0.1", False),
])
def test_allow_list_admits_only_listed_addresses(app, client, admin, address, allowed):
    configure(app, security={"allowed_ips": ALLOWED, "enforce": True})
    response = health(client, admin, address)
    if allowed:
        assert response.status_code == 200
    else:
        shown = address.removeprefix("::ffff:")
        assert_refused(response, "IP not whitelisted", shown)


def test_allow_list_is_not_enforced_when_enforce_is_false(app, client, admin):
    configure(app, security={"allowed_ips": ALLOWED, "enforce": False})
    assert health(client, admin, "192.168.7.7").status_code == 200


def test_empty_allow_list_refuses_nobody_even_when_enforced(app, client, admin):
    configure(app, security={"allowed_ips": [], "enforce": True})
    assert health(client, admin, "192.168.7.7").status_code == 200


def test_refusal_comes_before_authentication_and_routing(app, client):
    configure(app, security={"allowed_ips": ALLOWED, "enforce": True})
    assert_refused(client.get("/api/health", **at("192.168.7.7")), "IP not whitelisted",
                   "192.168.7.7")
    assert_refused(client.get("/api/no-such-route", **at("192.168.7.7")), "IP not whitelisted",
                   "192.168.7.7")
    assert client.get("/api/no-such-route", **at("10.0.0.1")).status_code == 404


def test_a_refusal_is_a_violation_event_when_log_violations_is_on(app, client, admin):
    configure(app, security={"allowed_ips": ALLOWED, "enforce": True, "log_violations": True})
    health(client, admin, "192.168.7.7")
    client.post("/api/spawn", headers=admin.headers, json={"task": "x"}, **at("192.168.7.8"))
    assert violations(app) == [
        {"kind": "ip_not_whitelisted", "ip": "192.168.7.7", "path": "/api/health", "method": "GET"},
        {"kind": "ip_not_whitelisted", "ip": "192.168.7.8", "path": "/api/spawn", "method": "POST"},
    ]
    assert admin.key not in json.dumps(violations(app))


def test_repeated_refusals_of_one_address_are_recorded_once_a_minute(app, client, admin):
    configure(app, security={"allowed_ips": ALLOWED, "enforce": True, "log_violations": True})
    for _ in range(5):
        assert health(client, admin, "192.168.7.7").status_code == 403
    assert len(violations(app)) == 1


def test_no_violation_event_when_log_violations_is_off(app, client, admin):
    configure(app, security={"allowed_ips": ALLOWED, "enforce": True, "log_violations": False})
    assert health(client, admin, "192.168.7.7").status_code == 403
    assert violations(app) == []


def test_hand_edited_config_applies_without_restart(app, client, admin, instance):
    app.extensions["j1msky_config"].check_interval = 0
    assert health(client, admin, "192.168.7.7").status_code == 200
    (instance / "config.json").write_text(json.dumps(config_for_tests(
        security={"allowed_ips": ["10.0.0.0/8"], "enforce": True})))
    assert_refused(health(client, admin, "192.168.7.7"), "IP not whitelisted", "192.168.7.7")
    (instance / "config.json").write_text(json.dumps(config_for_tests(
        security={"allowed_ips": ["10.0.0.0/8", "192.168.0.0/16"], "enforce": True})))
    assert health(client, admin, "192.168.7.7").status_code == 200


# -- the client's address ------------------------------------------------------------------

def test_spoofed_forwarded_for_is_ignored_without_a_trusted_proxy(app, client, admin):
    configure(app, security={"allowed_ips": ALLOWED, "enforce": True})
    response = health(client, admin, "192.168.7.7", headers={"X-Forwarded-For": "10.0.0.1"})
    assert_refused(response, "IP not whitelisted", "192.168.7.7")


def test_behind_a_trusted_proxy_the_rightmost_untrusted_address_is_the_client(app, client,
                                                                              admin):
    configure(app, security={"allowed_ips": ALLOWED, "enforce": True,
                             "trusted_proxies": ["172.16.0.0/12"]})
    proxy = "172.16.0.5"
    # The client wrote 10.0.0.1 itself; the proxy appended the address it really saw.
    spoofed = health(client, admin, proxy, headers={"X-Forwarded-For": "10.0.0.1, 192.168.7.7"})
    assert_refused(spoofed, "IP not whitelisted", "192.168.7.7")
    # An inner trusted proxy's hop is skipped.
    chained = health(client, admin, proxy,
                     headers={"X-Forwarded-For": "192.168.7.7, 10.0.0.7, 172.16.0.9"})
    assert chained.status_code == 200


@pytest.mark.parametrize("peer, forwarded, expected", [
    ("192.168.1.1", ["10.0.0.1"], "192.168.1.1"),                  # untrusted peer: socket
    ("172.16.0.5", ["10.0.0.1, 192.168.1.1"], "192.168.1.1"),       # right-most untrusted
    ("172.16.0.5", ["10.0.0.1", "192.168.1.1"], "192.168.1.1"),     # several header lines
    ("172.16.0.5", ["192.168.1.1, 172.16.0.9"], "192.168.1.1"),     # inner proxy skipped
    ("172.16.0.5", ["172.16.0.8"], "172.16.0.8"),                   # only proxies: left-most
    ("172.16.0.5", [], "172.16.0.5"),                               # no header: the peer
    ("172.16.0.5", ["garbage"], "172.16.0.5"),                      # unreadable: the peer
    ("172.16.0.5", ["10.0.0.1, garbage"], "172.16.0.5"),
    ("172.16.0.5", ["garbage, 10.0.0.1"], "10.0.0.1"),              # never reached
    ("::ffff:172.16.0.5", ["2001:DB8::1"], "2001:db8::1"),          # normalised forms
])
def test_resolve_client_ip(peer, forwarded, expected):
    assert resolve_client_ip(peer, forwarded, ["172.16.0.0/12"]) == expected


def test_per_ip_rate_limit_counts_the_forwarded_client(app, client, admin):
    configure(app, rate_limits={"per_ip": "2/minute"},
              security={"trusted_proxies": ["172.16.0.0/12"]})
    first = {"X-Forwarded-For": "192.168.7.7"}
    assert [health(client, admin, "172.16.0.5", headers=first).status_code
            for _ in range(3)] == [200, 200, 429]
    second = {"X-Forwarded-For": "192.168.7.8"}
    assert health(client, admin, "172.16.0.5", headers=second).status_code == 200


# -- PUT/GET /security/ip-whitelist ----------------------------------------------------------

def test_ip_whitelist_round_trip_writes_config_json(app, client, admin):
    body = {"allowed_ips": ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"], "enforce": True,
            "log_violations": False}
    put = client.put("/api/security/ip-whitelist", headers=admin.headers, json=body)
    assert put.status_code == 200
    assert put.json == {"success": True, **body, "trusted_proxies": []}
    got = client.get("/api/v4/security/ip-whitelist", headers=admin.headers)
    assert got.json == {**body, "trusted_proxies": []}
    on_disk = json.loads(config_bytes(app))
    assert {k: on_disk["security"][k] for k in body} == body
    assert on_disk["providers"] == config_for_tests()["providers"]  # the rest kept
    assert_refused(health(client, admin, "192.168.7.7"), "IP not whitelisted", "192.168.7.7")
    # Fields not sent keep their value.
    client.put("/api/security/ip-whitelist", headers=admin.headers, json={"enforce": False})
    assert client.get("/api/security/ip-whitelist", headers=admin.headers).json == {
        **body, "enforce": False, "trusted_proxies": []}


def test_ip_whitelist_needs_admin_scope(client, keys):
    reader = keys.make("agents:read")
    assert client.get("/api/security/ip-whitelist", headers=reader.headers).status_code == 403
    assert client.get("/api/security/ip-whitelist").status_code == 401


def test_put_that_would_lock_out_the_caller_is_409_and_changes_nothing(app, client, admin):
    before = config_bytes(app)
    response = client.put("/api/security/ip-whitelist", headers=admin.headers,
                          json={"allowed_ips": ["10.0.0.0/8"], "enforce": True})
    assert response.status_code == 409
    assert "lock you out" in response.json["error"]["message"]
    assert response.json["error"]["your_ip"] == "127.0.0.1"
    assert config_bytes(app) == before
    # Turning enforcement on later with the list already saved is refused the same way.
    saved = client.put("/api/security/ip-whitelist", headers=admin.headers,
                       json={"allowed_ips": ["10.0.0.0/8"]})
    assert saved.status_code == 200
    before = config_bytes(app)
    assert client.put("/api/security/ip-whitelist", headers=admin.headers,
                      json={"enforce": True}).status_code == 409
    assert config_bytes(app) == before
    # From inside the list it is fine.
    assert client.put("/api/security/ip-whitelist", headers=admin.headers,
                      json={"enforce": True}, **at("10.0.0.4")).status_code == 200


BAD_WHITELISTS = [
    ({"allowed_ips": ["10.0.0.300"]}, "allowed_ips", "'10.0.0.300' is not an IP address or CIDR"),
    ({"allowed_ips": ["10.0.0.0/33"]}, "allowed_ips", "'10.0.0.0/33' is not an IP address"),
    ({"allowed_ips": ["10.0.0.5/8"]}, "allowed_ips", "did you mean '10.0.0.0/8'"),
    ({"allowed_ips": ["2001:db8::g"]}, "allowed_ips", "'2001:db8::g' is not an IP address"),
    ({"allowed_ips": ["127.0.0.1", " 10.0.0.1"]}, "allowed_ips", "' 10.0.0.1' is not"),
    ({"allowed_ips": "10.0.0.1"}, "allowed_ips", "Not a valid list"),
    ({"allowed_ips": [42]}, "allowed_ips", "Not a valid string"),
    ({"enforce": "yes"}, "enforce", "Not a valid boolean"),
    ({"enforce": 1}, "enforce", "Not a valid boolean"),
    ({"log_violations": None}, "log_violations", "may not be null"),
    ({"trusted_proxies": ["proxy.local"]}, "trusted_proxies", "'proxy.local' is not"),
    ({"allowed_ips": [], "colour": "red"}, "colour", "Unknown field 'colour'"),
    ({}, "_schema", "Send at least one of"),
]


@pytest.mark.parametrize("body, field, message", BAD_WHITELISTS)
def test_bad_ip_whitelist_is_400_and_leaves_config_json_alone(app, client, admin, body, field,
                                                               message):
    before = config_bytes(app)
    response = client.put("/api/security/ip-whitelist", headers=admin.headers, json=body)
    assert response.status_code == 400
    error = response.json["error"]
    assert response.json["success"] is False and error["code"] == 400
    assert message in error["message"]
    assert field in error["details"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert config_bytes(app) == before


BAD_BLOCKS = [
    ({"ip": "10.0.0.0/8"}, "ip", "is a network"),
    ({"ip": "not-an-ip"}, "ip", "'not-an-ip' is not an IP address"),
    ({"ip": ""}, "ip", "is not an IP address"),
    ({"ip": 167772161}, "ip", "Not a valid string"),
    ({"reason": "x"}, "ip", "Missing data"),
    ({"ip": "10.0.0.9", "duration_hours": 0}, "duration_hours", "more than 0"),
    ({"ip": "10.0.0.9", "duration_hours": -1}, "duration_hours", "more than 0"),
    ({"ip": "10.0.0.9", "duration_hours": 8761}, "duration_hours", "at most 8760"),
    ({"ip": "10.0.0.9", "duration_hours": "24"}, "duration_hours", "must be a number"),
    ({"ip": "10.0.0.9", "duration_hours": True}, "duration_hours", "must be a number"),
    ({"ip": "10.0.0.9", "reason": ""}, "reason", "1 to 200"),
    ({"ip": "10.0.0.9", "reason": "x" * 201}, "reason", "1 to 200"),
    ({"ip": "10.0.0.9", "reason": 5}, "reason", "Not a valid string"),
    ({"ip": "10.0.0.9", "until": "never"}, "until", "Unknown field 'until'"),
]


@pytest.mark.parametrize("body, field, message", BAD_BLOCKS)
def test_bad_block_is_400_and_blocks_nothing(app, client, admin, body, field, message):
    response = client.post("/api/security/block-ip", headers=admin.headers, json=body)
    assert response.status_code == 400
    error = response.json["error"]
    assert message in error["message"] and field in error["details"]
    assert blocked_rows(app) == []


def test_non_finite_duration_is_refused(app, client, admin):
    response = client.post("/api/security/block-ip", headers=admin.headers,
                           data='{"ip": "10.0.0.9", "duration_hours": NaN}',
                           content_type="application/json")
    assert response.status_code == 400 and blocked_rows(app) == []


# -- blocked addresses ----------------------------------------------------------------------

def test_blocked_ip_is_refused_even_with_a_valid_key_until_unblocked(app, client, admin):
    freeze(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    made = client.post("/api/security/block-ip", headers=admin.headers,
                       json={"ip": "198.51.100.100", "reason": "suspicious_activity",
                             "duration_hours": 24})
    assert made.status_code == 201
    assert made.json == {"success": True, "ip": "198.51.100.100", "reason": "suspicious_activity",
                         "source": "manual", "created_at": "2026-03-01T12:00:00Z",
                         "expires_at": "2026-03-02T12:00:00Z"}
    assert_refused(health(client, admin, "198.51.100.100"), "IP blocked", "198.51.100.100")
    assert_refused(client.get("/api/nowhere", **at("198.51.100.100")), "IP blocked",
                   "198.51.100.100")
    assert health(client, admin, "198.51.100.101").status_code == 200

    listed = client.get("/api/security/blocked-ips", headers=admin.headers).json
    assert listed == {"data": [{k: v for k, v in made.json.items() if k != "success"}],
                      "count": 1}

    lifted = client.delete("/api/security/blocked-ips/198.51.100.100", headers=admin.headers)
    assert lifted.status_code == 200 and lifted.json["ip"] == "198.51.100.100"
    assert health(client, admin, "198.51.100.100").status_code == 200
    assert client.delete("/api/security/blocked-ips/198.51.100.100",
                         headers=admin.headers).status_code == 404
    assert client.delete("/api/security/blocked-ips/nonsense",
                         headers=admin.headers).status_code == 400


def test_block_under_an_idempotency_key_applies_at_once_and_replays(app, client, admin):
    headers = {**admin.headers, "Idempotency-Key": "block-1"}
    body = {"ip": "10.0.0.9", "duration_hours": 1}
    first = client.post("/api/security/block-ip", headers=headers, json=body)
    assert first.status_code == 201
    assert health(client, admin, "10.0.0.9").status_code == 403
    again = client.post("/api/security/block-ip", headers=headers, json=body)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json


def test_blocked_refusal_is_a_violation_without_the_reason(app, client, admin):
    client.post("/api/security/block-ip", headers=admin.headers,
                json={"ip": "2001:DB8::7", "reason": "secret-reason", "duration_hours": 1})
    refused = health(client, admin, "2001:db8:0::7")  # same address, other spelling
    assert_refused(refused, "IP blocked", "2001:db8::7")
    assert "secret-reason" not in refused.get_data(as_text=True)
    assert violations(app) == [{"kind": "ip_blocked", "ip": "2001:db8::7",
                                "path": "/api/health", "method": "GET"}]


def test_block_expires(app, client, admin):
    now = freeze(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    client.post("/api/security/block-ip", headers=admin.headers,
                json={"ip": "10.0.0.9", "duration_hours": 0.5})
    assert health(client, admin, "10.0.0.9").status_code == 403
    now[0] += dt.timedelta(minutes=29)
    assert health(client, admin, "10.0.0.9").status_code == 403
    now[0] += dt.timedelta(minutes=1)
    assert health(client, admin, "10.0.0.9").status_code == 200
    assert client.get("/api/security/blocked-ips", headers=admin.headers).json["count"] == 0
    assert client.delete("/api/security/blocked-ips/10.0.0.9",
                         headers=admin.headers).status_code == 404


def test_block_without_duration_lasts_until_unblocked(app, client, admin):
    made = client.post("/api/security/block-ip", headers=admin.headers, json={"ip": "10.0.0.9"})
    assert made.status_code == 201
    assert made.json["reason"] == "manual" and made.json["expires_at"] is None
    freeze(dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc))
    assert health(client, admin, "10.0.0.9").status_code == 403


def test_blocking_your_own_address_is_409(app, client, admin):
    response = client.post("/api/security/block-ip", headers=admin.headers,
                           json={"ip": "::ffff:127.0.0.1"})
    assert response.status_code == 409 and response.json["error"]["your_ip"] == "127.0.0.1"
    assert blocked_rows(app) == []


def test_a_block_made_by_another_process_is_seen(app, client, admin, monkeypatch):
    assert health(client, admin, "10.0.0.9").status_code == 200
    conn = sqlite3.connect(app.config["DATABASE"])
    conn.execute("INSERT INTO blocked_ips VALUES ('10.0.0.9', 'cli', 'manual', ?, NULL)",
                 (clock.now_iso(),))
    conn.commit()
    conn.close()
    monkeypatch.setattr(app.extensions["j1msky_ipguard"], "REFRESH", 0)
    assert health(client, admin, "10.0.0.9").status_code == 403


# -- automatic blocks -----------------------------------------------------------------------

def bad_key(address: str) -> dict:
    return {"headers": {"Authorization": "Bearer live_sk_" + "x" * 32}, **at(address)}


def assert_auto_blocked(response, ip: str):
    assert response.status_code == 401
    assert response.json == {"success": False, "error": {
        "code": 401, "message": AUTO_BLOCKED_MESSAGE,
        "request_id": response.headers["X-Request-Id"], "your_ip": ip}}


def test_repeated_auth_failures_block_that_address_only(app, client, admin):
    configure(app, security={"auth_failures_to_block": 3, "auto_block_hours": 2})
    freeze(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    attacker = "203.0.113.9"
    assert [client.get("/api/health", **bad_key(attacker)).status_code
            for _ in range(3)] == [401, 401, 401]
    assert_auto_blocked(client.get("/api/health", **bad_key(attacker)), attacker)
    assert health(client, admin, "203.0.113.10").status_code == 200
    assert blocked_rows(app) == [(attacker, "repeated authentication failures", "auth_failures",
                                  "2026-03-01T14:00:00.000000Z")]
    [auto, refused] = violations(app)
    assert auto == {"kind": "ip_auto_blocked", "ip": attacker, "failures": 3,
                    "expires_at": "2026-03-01T14:00:00Z", "path": "/api/health", "method": "GET"}
    assert refused["kind"] == "ip_blocked"


def test_an_automatic_block_never_stops_a_valid_key(app, client, admin):
    """The owner's fuzzer or typo blocks the address, not the owner's own valid key."""
    configure(app, security={"auth_failures_to_block": 3})
    me = "192.168.1.20"
    for _ in range(3):
        client.get("/api/health", **bad_key(me))
    assert health(client, admin, me).status_code == 200
    listed = client.get("/api/security/blocked-ips", headers=admin.headers, **at(me))
    assert listed.status_code == 200 and listed.json["data"][0]["ip"] == me
    legacy = client.get("/api/status?agent_id=nope", headers={"X-API-Key": admin.key}, **at(me))
    assert legacy.status_code == 404  # the v3 header is a valid credential too
    # Without a valid credential nothing gets through, not even the routes that need none,
    # and the refused attempts are not counted towards anything further.
    assert_auto_blocked(client.get("/api/health", **bad_key(me)), me)
    assert_auto_blocked(client.get("/api/openapi.json", **at(me)), me)
    assert_auto_blocked(client.get("/api/nowhere", **at(me)), me)
    assert_auto_blocked(client.get("/api/health", headers={"X-API-Key": "live_sk_" + "y" * 32},
                                   **at(me)), me)
    assert failure_rows(app) == []
    lifted = client.delete(f"/api/security/blocked-ips/{me}", headers=admin.headers, **at(me))
    assert lifted.status_code == 200
    assert client.get("/api/health", **bad_key(me)).json["error"]["message"] == "Invalid API key"


def test_a_manual_block_stops_valid_keys_even_over_an_automatic_one(app, client, admin):
    configure(app, security={"auth_failures_to_block": 2})
    for _ in range(2):
        client.get("/api/health", **bad_key("203.0.113.9"))
    assert health(client, admin, "203.0.113.9").status_code == 200
    assert client.post("/api/security/block-ip", headers=admin.headers,
                       json={"ip": "203.0.113.9", "reason": "probing"}).status_code == 201
    assert_refused(health(client, admin, "203.0.113.9"), "IP blocked", "203.0.113.9")
    assert [r[2] for r in blocked_rows(app)] == ["manual"]


def failure_rows(app) -> list[tuple]:
    conn = sqlite3.connect(app.config["DATABASE"])
    rows = conn.execute("SELECT ip, failed_at FROM auth_failures ORDER BY rowid").fetchall()
    conn.close()
    return rows


def test_auth_failure_counts_survive_a_restart(app, client, admin, instance, client_for):
    configure(app, security={"auth_failures_to_block": 3, "auth_failure_window_seconds": 300})
    for _ in range(2):
        assert client.get("/api/health", **bad_key("203.0.113.9")).status_code == 401
    assert [ip for ip, _ in failure_rows(app)] == ["203.0.113.9"] * 2
    restarted = client_for(instance)  # a new app, as after a restart: nothing in memory
    refused = restarted.get("/api/health", **bad_key("203.0.113.9"))
    assert refused.json["error"]["message"] == "Invalid API key"  # the third failure
    assert_auto_blocked(restarted.get("/api/health", **bad_key("203.0.113.9")), "203.0.113.9")
    assert [r[2] for r in blocked_rows(app)] == ["auth_failures"]
    assert failure_rows(app) == []  # forgotten once they blocked the address


def test_auth_failures_outside_the_window_do_not_add_up(app, client, admin):
    configure(app, security={"auth_failures_to_block": 3, "auth_failure_window_seconds": 60})
    now = freeze(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    for _ in range(2):
        client.get("/api/health", **bad_key("203.0.113.9"))
    now[0] += dt.timedelta(seconds=61)
    for _ in range(2):
        client.get("/api/health", **bad_key("203.0.113.9"))
    assert health(client, admin, "203.0.113.9").status_code == 200
    assert blocked_rows(app) == []


def test_requests_without_a_key_are_not_counted_as_failures(app, client, admin):
    configure(app, security={"auth_failures_to_block": 2})
    for _ in range(4):
        assert client.get("/api/health", **at("203.0.113.9")).status_code == 401
    assert health(client, admin, "203.0.113.9").status_code == 200


def test_automatic_block_lapses_and_is_cleaned_up(app, client, admin, monkeypatch):
    configure(app, security={"auth_failures_to_block": 2, "auto_block_hours": 1})
    monkeypatch.setattr(app.extensions["j1msky_ipguard"], "REFRESH", 0)
    now = freeze(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    for _ in range(2):
        client.get("/api/health", **bad_key("203.0.113.9"))
    assert_auto_blocked(client.get("/api/health", **at("203.0.113.9")), "203.0.113.9")
    now[0] += dt.timedelta(hours=1, seconds=1)
    assert client.get("/api/health", **at("203.0.113.9")).json["error"]["message"] \
        .startswith("Missing API key")
    assert client.get("/api/security/blocked-ips", headers=admin.headers).json["count"] == 0
    assert blocked_rows(app) == []  # expired rows are deleted when the copy reloads


# -- j1msky blocks ---------------------------------------------------------------------------

def test_blocks_commands_list_and_remove(app, client, admin, cli_runner):
    from j1msky.cli import cli
    freeze(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    client.post("/api/security/block-ip", headers=admin.headers,
                json={"ip": "2001:DB8::7", "reason": "probing", "duration_hours": 2})
    client.post("/api/security/block-ip", headers=admin.headers, json={"ip": "10.0.0.9"})
    listed = cli_runner.invoke(cli, ["blocks", "list"])
    assert listed.exit_code == 0
    assert listed.output == ("10.0.0.9  manual  until removed  manual\n"
                             "2001:db8::7  manual  2026-03-01T14:00:00Z  probing\n")
    removed = cli_runner.invoke(cli, ["blocks", "remove", "2001:db8:0::7"])  # any spelling
    assert removed.exit_code == 0 and removed.output == "Unblocked 2001:db8::7\n"
    assert health(client, admin, "2001:db8::7").status_code == 200
    assert [r[0] for r in blocked_rows(app)] == ["10.0.0.9"]


@pytest.mark.parametrize("ip, error", [("nonsense", "'nonsense' is not an IP address"),
                                       ("10.0.0.0/8", "'10.0.0.0/8' is not an IP address"),
                                       ("10.0.0.1", "10.0.0.1 is not blocked")])
def test_blocks_remove_refuses_what_it_cannot_lift(app, client, admin, cli_runner, ip, error):
    from j1msky.cli import cli
    client.post("/api/security/block-ip", headers=admin.headers, json={"ip": "10.0.0.9"})
    result = cli_runner.invoke(cli, ["blocks", "remove", ip])
    assert result.exit_code == 1 and result.output == f"Error: {error}\n"
    assert [r[0] for r in blocked_rows(app)] == ["10.0.0.9"]

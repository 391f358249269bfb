"""/security/audit: options in config.json, levels and events, the listed trail, no secrets,
retention by the daily job and `j1msky purge`."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os

import pytest

from j1msky import scheduler
from j1msky.api.audit import record_request
from j1msky.cli import cli
from j1msky.db import connection_for
from j1msky.services import audit, clock
from tests.helpers import configure

ALL_EVENTS = list(audit.EVENTS)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def config_of(app) -> dict:
    return app.extensions["j1msky_config"].get()


def record(app, event: str, severity: str = "info", **kw) -> int | None:
    return audit.record(connection_for(app.config["DATABASE"]), config_of(app), event,
                        severity=severity, **kw)


def rows(app) -> list[dict]:
    conn = connection_for(app.config["DATABASE"])
    return [dict(r) for r in conn.execute("SELECT * FROM audit_log ORDER BY id")]


def at(moment: dt.datetime) -> None:
    clock.set_clock(lambda: moment)


# Options -----------------------------------------------------------------------------------

def test_options_round_trip_and_are_written_to_config_json(client, app, admin):
    options = {"enabled": True, "log_level": "verbose", "retention_days": 30,
               "include_request_body": True, "include_response_body": False,
               "events": ["agent.spawn", "config.change", "security.violation"]}
    response = client.post("/api/security/audit", headers=admin.headers, json=options)
    assert response.status_code == 200, response.json
    assert response.json["settings"] == options
    assert response.json["changed"] == ["events", "include_request_body", "log_level",
                                        "retention_days"]
    with open(os.path.join(app.instance_path, "config.json"), encoding="utf-8") as fh:
        on_disk = json.load(fh)
    assert on_disk["audit"] == {k: options[k] for k in ("enabled", "log_level",
                                                        "include_request_body",
                                                        "include_response_body", "events")}
    assert on_disk["retention"]["audit_days"] == 30
    assert on_disk["providers"]["anthropic"]["kind"] == "simulated"  # the rest is kept
    for path in ("/api/security/audit/settings", "/api/v4/security/audit/settings"):
        got = client.get(path, headers=admin.headers)
        assert got.status_code == 200 and got.json["settings"] == options


def test_an_options_change_is_audited_with_old_and_new_values(client, app, admin):
    client.post("/api/security/audit", headers=admin.headers,
                json={"log_level": "verbose", "retention_days": 90})
    [entry] = client.get("/api/security/audit", headers=admin.headers,
                         query_string={"event": "config.change"}).json["data"]
    assert entry["severity"] == "info"
    assert entry["api_key_id"] == admin.key_id
    assert entry["ip_address"] == "127.0.0.1"
    assert entry["request_id"].startswith("req_")
    assert entry["resource"] == {"type": "config", "id": "audit"}
    assert entry["details"] == {"section": "audit", "changes": {
        "log_level": {"old": "standard", "new": "verbose"}}}  # 90 days was already in force


def test_switching_auditing_off_is_the_last_thing_audited(client, app, admin):
    response = client.post("/api/security/audit", headers=admin.headers, json={"enabled": False})
    assert response.status_code == 200 and response.json["settings"]["enabled"] is False
    [entry] = rows(app)
    assert (entry["event"], entry["severity"]) == ("config.change", "warning")
    assert record(app, "security.violation", "critical") is None
    client.post("/api/security/audit", headers=admin.headers, json={"log_level": "minimal"})
    assert len(rows(app)) == 1


def test_empty_options_change_nothing(client, app, admin):
    response = client.post("/api/security/audit", headers=admin.headers, json={})
    assert response.status_code == 200 and response.json["changed"] == []
    assert response.json["settings"] == audit.settings(config_of(app))
    assert rows(app) == []


BAD_OPTIONS = [
    ({"enabled": "yes"}, "enabled", "enabled must be true or false"),
    ({"enabled": 1}, "enabled", "enabled must be true or false"),
    ({"include_request_body": None}, "include_request_body",
     "include_request_body must be true or false"),
    ({"include_response_body": "false"}, "include_response_body",
     "include_response_body must be true or false"),
    ({"log_level": "loud"}, "log_level", "log_level must be one of: minimal, standard, verbose"),
    ({"log_level": 2}, "log_level", "log_level must be a string"),
    ({"retention_days": 0}, "retention_days", "retention_days must be between 1 and 3650"),
    ({"retention_days": 3651}, "retention_days", "retention_days must be between 1 and 3650"),
    ({"retention_days": "90"}, "retention_days", "retention_days must be an integer"),
    ({"retention_days": 90.5}, "retention_days", "retention_days must be an integer"),
    ({"retention_days": True}, "retention_days", "retention_days must be an integer"),
    ({"events": ["agent.spawn", "agent.explode"]}, "events", "Event must be one of:"),
    ({"events": "agent.spawn"}, "events", "events must be a list of event names"),
    ({"events": [7]}, "events", "Event must be a string"),
    ({"colour": "red"}, "colour", "Unknown field 'colour'"),
    ({"enabled": True, "retention": {"audit_days": 5}}, "retention", "Unknown field 'retention'"),
]


@pytest.mark.parametrize("body, field, message", BAD_OPTIONS)
def test_bad_options_are_400_and_leave_config_json_alone(client, app, admin, body, field, message):
    path = os.path.join(app.instance_path, "config.json")
    before = open(path, "rb").read()
    response = client.post("/api/security/audit", headers=admin.headers, json=body)
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == 400 and error["request_id"].startswith("req_")
    assert field in error["details"]
    assert message in error["message"]
    assert open(path, "rb").read() == before
    assert rows(app) == []


@pytest.mark.parametrize("data", ["not json", "[1, 2]", ""])
def test_a_body_that_is_not_a_json_object_is_400(client, admin, data):
    response = client.post("/api/security/audit", headers={**admin.headers,
                                                            "Content-Type": "application/json"},
                           data=data)
    assert response.status_code == 400 and response.json["success"] is False


def test_audit_needs_the_admin_write_scope(client, keys):
    reader = keys.make("agents:read", "agents:write", "billing:read")
    for method, path in (("GET", "/api/security/audit"), ("GET", "/api/security/audit/settings"),
                         ("POST", "/api/security/audit")):
        response = client.open(path, method=method, headers=reader.headers,
                               json={"enabled": False} if method == "POST" else None)
        assert response.status_code == 403, path
        assert "admin:write" in response.json["error"]["message"]
        assert client.open(path, method=method).status_code == 401


# What gets recorded ------------------------------------------------------------------------

SAMPLES = [(event, severity) for event in ALL_EVENTS for severity in audit.SEVERITIES]
EXPECTED = {
    "minimal": {(e, s) for e, s in SAMPLES if s != "info" or e == "security.violation"},
    "standard": {(e, s) for e, s in SAMPLES if e != "api.key.used"},
    "verbose": set(SAMPLES),
}


@pytest.mark.parametrize("level", ["minimal", "standard", "verbose"])
def test_log_level_decides_what_is_recorded(app, level):
    configure(app, audit={"log_level": level})
    made = {(e, s) for e, s in SAMPLES if record(app, e, s) is not None}
    assert made == EXPECTED[level]
    assert {(r["event"], r["severity"]) for r in rows(app)} == EXPECTED[level]


def test_only_the_chosen_events_are_recorded(app):
    configure(app, audit={"log_level": "verbose", "events": ["agent.fail", "security.violation"]})
    for event in ALL_EVENTS:
        record(app, event, "critical")
    assert [r["event"] for r in rows(app)] == ["agent.fail", "security.violation"]
    configure(app, audit={"enabled": False})
    assert record(app, "security.violation", "critical") is None
    assert len(rows(app)) == 2


def test_unknown_event_or_severity_is_a_programming_error(app):
    with pytest.raises(ValueError):
        record(app, "agent.explode")
    with pytest.raises(ValueError):
        record(app, "agent.spawn", "fatal")


def test_bodies_are_kept_only_when_the_settings_say_so(app):
    body = {"model": "k2p5", "task": "hello"}
    record(app, "agent.spawn", request_body=json.dumps(body), response_body=b'{"ok": true}')
    configure(app, audit={"include_request_body": True, "include_response_body": True})
    record(app, "agent.spawn", request_body=json.dumps(body), response_body=b'{"ok": true}')
    record(app, "agent.spawn", request_body="plain text", response_body=None)
    plain, both, text = [audit.entry_view(r) for r in rows(app)]
    assert "request_body" not in plain and "response_body" not in plain
    assert both["request_body"] == body and both["response_body"] == {"ok": True}
    assert text["request_body"] == "plain text" and "response_body" not in text


def test_entry_has_the_documented_shape(app):
    at(T0)
    record(app, "agent.spawn", api_key_id="key_abc123", ip_address="192.168.1.100",
           user_agent="j1msky-sdk/1.0.0", request_id="req_xyz789",
           resource={"type": "agent", "id": "subagent_1234567890_1234"},
           details={"model": "k2p5", "task_preview": "Generate report...", "estimated_cost": 0.05})
    [row] = rows(app)
    assert audit.entry_view(row) == {
        "id": f"aud_{row['id']}", "timestamp": "2026-03-01T12:00:00Z", "event": "agent.spawn",
        "severity": "info", "api_key_id": "key_abc123", "ip_address": "192.168.1.100",
        "user_agent": "j1msky-sdk/1.0.0", "request_id": "req_xyz789",
        "resource": {"type": "agent", "id": "subagent_1234567890_1234"},
        "details": {"model": "k2p5", "task_preview": "Generate report...",
                    "estimated_cost": 0.05}}


def test_mask_pii_masks_details_and_bodies(app):
    configure(app, audit={"include_request_body": True})
    record(app, "agent.spawn", details={"task_preview": "mail ann@example.com"},
           request_body='{"task": "mail ann@example.com"}', mask_pii=True)
    entry = audit.entry_view(rows(app)[0])
    assert entry["details"]["task_preview"] == "mail [email]"
    assert entry["request_body"] == {"task": "mail [email]"}


# Listing -----------------------------------------------------------------------------------

def seed(app, admin, other) -> None:
    """30 entries a minute apart from T0: every third a warning, keys alternating."""
    for i in range(30):
        at(T0 + dt.timedelta(minutes=i))
        record(app, "agent.fail" if i % 3 == 0 else "agent.spawn",
               "warning" if i % 3 == 0 else "info",
               api_key_id=admin.key_id if i % 2 == 0 else other.key_id,
               resource={"type": "agent", "id": f"subagent_{i}"}, details={"n": i})
    clock.set_clock(None)


def listed(client, admin, **query) -> dict:
    response = client.get("/api/security/audit", headers=admin.headers, query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def test_entries_are_listed_newest_first_with_filters(client, app, admin, keys):
    other = keys.make("agents:read")
    seed(app, admin, other)
    body = listed(client, admin, limit=5)
    assert [e["details"]["n"] for e in body["data"]] == [29, 28, 27, 26, 25]
    assert body["pagination"]["total"] == 30 and body["pagination"]["has_more"] is True
    assert body["links"]["next"] == "/api/security/audit?limit=5&offset=5"
    ns = lambda b: sorted(e["details"]["n"] for e in b["data"])  # noqa: E731
    assert ns(listed(client, admin, event="agent.fail", limit=100)) == list(range(0, 30, 3))
    assert ns(listed(client, admin, severity="info", limit=100)) == \
        [n for n in range(30) if n % 3]
    assert ns(listed(client, admin, api_key_id=other.key_id, limit=100)) == list(range(1, 30, 2))
    assert ns(listed(client, admin, since="2026-03-01T12:10:00Z",
                     until="2026-03-01T12:15:00Z")) == [10, 11, 12, 13, 14]
    assert ns(listed(client, admin, event="agent.fail", api_key_id=admin.key_id,
                     since="2026-03-01T12:10:00Z")) == [12, 18, 24]
    assert ns(listed(client, admin, filter=json.dumps(
        {"resource_id": {"in": ["subagent_3", "subagent_4"]}}))) == [3, 4]
    assert ns(listed(client, admin, sort="timestamp", limit=3)) == [0, 1, 2]


def test_cursor_pages_cover_every_entry_once(client, app, admin, keys):
    seed(app, admin, keys.make("agents:read"))
    first = listed(client, admin, limit=7, severity="info")
    seen = [e["id"] for e in first["data"]]
    cursor = first["pagination"]["next_cursor"]
    while cursor:
        page = listed(client, admin, limit=7, severity="info", cursor=cursor)
        seen += [e["id"] for e in page["data"]]
        cursor = page["pagination"]["cursor"] if page["pagination"]["has_more"] else None
    assert len(seen) == len(set(seen)) == 20
    stamps = [e["timestamp"] for e in listed(client, admin, severity="info", limit=20)["data"]]
    assert stamps == sorted(stamps, reverse=True)
    other = client.get("/api/security/audit", headers=admin.headers,
                       query_string={"cursor": first["pagination"]["next_cursor"],
                                     "severity": "warning"})
    assert other.status_code == 400 and "cursor" in other.json["error"]["details"]


@pytest.mark.parametrize("query", [{"limit": 0}, {"since": "yesterday"}, {"colour": "red"},
                                   {"sort": "details"}, {"filter": '{"details": "x"}'},
                                   {"cursor": "garbage!!"}])
def test_bad_list_arguments_are_400_with_details(client, admin, query):
    response = client.get("/api/security/audit", headers=admin.headers, query_string=query)
    assert response.status_code == 400 and response.json["error"]["details"]


# No secrets --------------------------------------------------------------------------------

def test_keys_secrets_and_signatures_never_reach_the_database(app, keys):
    key = keys.make("agents:read", signing=True)
    whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = hmac.new(key.api_secret.encode(), b"payload", hashlib.sha256).hexdigest()
    authorization = f"Bearer {key.key}"
    secrets_ = [key.key, key.api_secret, whsec, signature, authorization,
                key.key[8:30], key.api_secret[4:40]]
    configure(app, audit={"log_level": "verbose", "include_request_body": True,
                          "include_response_body": True})
    details = {"api_key": key.key, "note": f"caller used {key.key} today",
               "headers": {"Authorization": authorization, "X-Signature": signature,
                           "X-Timestamp": "2026-03-01T12:00:00Z"},
               "webhook": {"url": "https://example.com/hook", "secret": whsec},
               "text": f"secret {whsec} and {key.api_secret}, signed {signature}",
               "list": [{"signature": signature}, key.api_secret],
               "require_signature": True, "token": 12345}
    body = json.dumps({"key": key.key, "api_secret": key.api_secret,
                       "message": f"Authorization: {authorization}"})
    record(app, "api.key.used", user_agent=f"curl {key.key}", request_id=key.key,
           details=details, request_body=body,
           response_body=f"api_secret={key.api_secret}&sig={signature}&whsec={whsec}".encode())
    with app.test_request_context("/api/spawn", method="POST", data=body,
                                  headers={"Authorization": authorization,
                                           "User-Agent": f"sdk/{key.key}",
                                           "X-Signature": signature}):
        record_request("security.violation", severity="warning", details={"why": authorization},
                       response_body={"secret": whsec})
    stored = rows(app)
    assert len(stored) == 2
    dumped = json.dumps(stored)
    assert "[redacted]" in dumped
    entry = audit.entry_view(stored[0])
    assert entry["details"]["require_signature"] is True  # a flag, not a secret
    assert entry["details"]["headers"]["X-Timestamp"] == "2026-03-01T12:00:00Z"
    assert entry["details"]["webhook"]["url"] == "https://example.com/hook"
    connection_for(app.config["DATABASE"]).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = [app.config["DATABASE"] + suffix for suffix in ("", "-wal")]
    raw = b"".join(open(f, "rb").read() for f in files if os.path.exists(f))
    for secret in secrets_:
        assert secret not in dumped, secret
        assert secret.encode() not in raw, secret


@pytest.mark.parametrize("name, secret", [
    ("api_key", True), ("X-API-Key", True), ("webhook_secret", True), ("access_token", True),
    ("password", True), ("authorization", True), ("key", True), ("x-signature", True),
    ("key_id", False), ("api_key_id", False), ("input_tokens", False), ("task_preview", False),
])
def test_secret_names(name, secret):
    assert audit.secret_name(name) is secret


@pytest.mark.parametrize("text, kept, gone", [
    ("password=hunter2&name=pi", "name=pi", "hunter2"),
    ("Authorization: Basic dXNlcjpwYXNz\nHost: pi.local", "Host: pi.local", "dXNlcjpwYXNz"),
    ("X-Api-Key: opaque123 tokens=5", "tokens=5", "opaque123"),
])
def test_plain_text_bodies_lose_named_secrets(app, text, kept, gone):
    configure(app, audit={"include_request_body": True})
    record(app, "agent.spawn", request_body=text)
    stored = rows(app)[0]["request_body"]
    assert kept in stored and gone not in stored and "[redacted]" in stored


# Retention ---------------------------------------------------------------------------------

def test_entries_are_purged_after_retention_days(client, app, admin):
    client.post("/api/security/audit", headers=admin.headers, json={"retention_days": 10})
    at(T0)
    record(app, "agent.spawn", details={"n": "old"})
    at(T0 + dt.timedelta(days=9, hours=23))
    record(app, "agent.spawn", details={"n": "young"})
    conn = connection_for(app.config["DATABASE"])
    at(T0 + dt.timedelta(days=10))
    assert audit.purge(conn, config_of(app)) == 0  # exactly ten days: not older yet
    at(T0 + dt.timedelta(days=10, seconds=1))
    assert audit.purge(conn, config_of(app)) == 1
    assert [json.loads(r["details"]) for r in rows(app) if r["event"] == "agent.spawn"] == \
        [{"n": "young"}]


def test_j1msky_purge_runs_the_retention_jobs(app, cli_runner):
    at(T0)
    record(app, "agent.spawn")
    record(app, "security.violation", "critical")
    at(T0 + dt.timedelta(days=91))
    record(app, "agent.complete")
    result = cli_runner.invoke(cli, ["purge"])
    assert result.exit_code == 0, result.output
    assert "audit_log: 2 removed" in result.output
    for name in ("events", "idempotency_keys"):
        assert f"{name}: 0 removed" in result.output
    assert [r["event"] for r in rows(app)] == ["agent.complete"]


def test_the_daily_job_is_the_same_retention_run(app):
    assert (scheduler.run_retention, {"trigger": "cron", "hour": 3, "minute": 17}) in scheduler.JOBS
    assert {"events", "audit_log", "idempotency_keys"} <= set(scheduler.RETENTION)
    at(T0)
    record(app, "agent.spawn")
    at(T0 + dt.timedelta(days=91))
    with app.app_context():
        assert scheduler.run_retention()["audit_log"] == 1

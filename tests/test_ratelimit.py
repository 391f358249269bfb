"""API rate limits (CONTRACT §4, §7): per key on named routes, per IP before authentication."""
from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest
from limits import parse_many

from j1msky.config import ConfigError, validate_config
from j1msky.ratelimit import CounterStorage
from j1msky.services import keys as key_service
from tests.helpers import configure

TASK = {"model": "k2p5", "task": "hello"}
OTHER_ADDRESS = {"REMOTE_ADDR": "10.0.0.9"}


def spawn(client, key, path="/api/spawn", **kw):
    return client.post(path, headers={**key.headers, **kw.pop("headers", {})}, json=TASK, **kw)


def assert_refused(response, window: int):
    """A 429 in the contract's error shape, its Retry-After agreeing with retry_after."""
    assert response.status_code == 429
    body = response.json
    assert body["success"] is False
    error = body["error"]
    assert error["code"] == 429 and error["message"] == "Rate limit exceeded"
    assert isinstance(error["retry_after"], int) and 1 <= error["retry_after"] <= window
    assert response.headers["Retry-After"] == str(error["retry_after"])
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_spawn_limit_is_per_key_and_refuses_in_the_error_shape(app, client, keys, admin):
    configure(app, rate_limits={"spawn": "3/hour"})
    remaining = [spawn(client, admin) for _ in range(3)]
    assert [r.status_code for r in remaining] == [202, 202, 202]
    assert [r.headers["X-RateLimit-Remaining"] for r in remaining] == ["2", "1", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == "3" for r in remaining)
    assert "Retry-After" not in remaining[0].headers

    refused = spawn(client, admin)
    assert_refused(refused, 3600)
    assert refused.headers["X-RateLimit-Limit"] == "3"

    other = keys.make("agents:write")
    assert spawn(client, other).status_code == 202


def test_api_v4_and_v3_spawn_share_one_counter(app, client, admin):
    configure(app, rate_limits={"spawn": "3/hour"})
    assert spawn(client, admin, "/api/spawn").status_code == 202
    assert spawn(client, admin, "/api/v4/spawn").status_code == 202
    v3 = client.post("/api/agent", headers={"X-API-Key": admin.key}, json=TASK)
    assert v3.status_code == 202 and v3.headers["X-RateLimit-Remaining"] == "0"
    assert_refused(spawn(client, admin, "/api/v4/spawn"), 3600)
    assert_refused(spawn(client, admin, "/api/spawn"), 3600)


def test_rejected_spawn_under_idempotency_key_is_not_stored(app, client, admin):
    configure(app, rate_limits={"spawn": "1/hour"})
    assert spawn(client, admin, headers={"Idempotency-Key": "first"}).status_code == 202
    assert spawn(client, admin, headers={"Idempotency-Key": "second"}).status_code == 429
    configure(app, rate_limits={"spawn": "5/hour"})
    retried = spawn(client, admin, headers={"Idempotency-Key": "second"})
    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers


@pytest.mark.parametrize("name, paths", [
    ("agent", ["/api/agent/{id}", "/api/v4/agent/{id}", "/api/status?agent_id={id}"]),
    ("agents", ["/api/agents", "/api/v4/agents", "/api/agents?status=spawning"]),
])
def test_read_limits_send_headers_counting_down(app, client, admin, name, paths):
    configure(app, rate_limits={name: "5/hour"})
    agent_id = spawn(client, admin).json["agent_id"]
    seen = []
    for path in paths:
        response = client.get(path.format(id=agent_id),
                              headers={**admin.headers, "X-API-Key": admin.key})
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        reset = int(response.headers["X-RateLimit-Reset"])
        assert time.time() < reset <= time.time() + 3601
        seen.append(response.headers["X-RateLimit-Remaining"])
    assert seen == ["4", "3", "2"]


def test_each_request_counts_once_against_each_limit(app, client, admin):
    configure(app, rate_limits={"per_ip": "10/minute", "spawn": "5/hour"})
    health = client.get("/api/health", headers=admin.headers)
    assert health.headers["X-RateLimit-Limit"] == "10"          # only the per-IP limit here
    assert health.headers["X-RateLimit-Remaining"] == "9"
    assert spawn(client, admin).headers["X-RateLimit-Remaining"] == "4"
    assert client.get("/api/health", headers=admin.headers).headers["X-RateLimit-Remaining"] == "7"


def test_per_ip_limit_stops_bad_keys_before_any_key_lookup(app, client, admin, monkeypatch):
    configure(app, rate_limits={"per_ip": "4/minute"})
    lookups = []
    real_find = key_service.find_by_key
    monkeypatch.setattr(key_service, "find_by_key",
                        lambda conn, token: lookups.append(token) or real_find(conn, token))
    garbled = {"Authorization": "Bearer live_sk_" + "x" * 32}
    answers = [client.get("/api/agents"), client.get("/api/agents", headers=garbled),
               client.get("/api/health", headers={"Authorization": "Bearer nonsense"}),
               client.get("/api/agents", headers=garbled)]
    assert [r.status_code for r in answers] == [401, 401, 401, 401]
    assert answers[-1].headers["X-RateLimit-Remaining"] == "0"
    assert len(lookups) == 2

    assert_refused(client.get("/api/agents", headers=garbled), 60)
    assert_refused(client.get("/api/agents", headers=admin.headers), 60)
    assert len(lookups) == 2

    elsewhere = client.get("/api/agents", headers=admin.headers, environ_base=OTHER_ADDRESS)
    assert elsewhere.status_code == 200
    assert elsewhere.headers["X-RateLimit-Remaining"] == "99"   # its own per-key "agents" limit


def test_limit_change_applies_without_restart(app, client, admin):
    configure(app, rate_limits={"spawn": "1/hour"})
    assert spawn(client, admin).status_code == 202
    assert spawn(client, admin).status_code == 429
    configure(app, rate_limits={"spawn": "3 per hour"})
    response = spawn(client, admin)
    assert response.status_code == 202 and response.headers["X-RateLimit-Limit"] == "3"
    configure(app, rate_limits={"per_ip": "1/minute"})
    assert client.get("/api/health", headers=admin.headers).status_code == 200
    assert_refused(client.get("/api/health", headers=admin.headers), 60)


@pytest.mark.parametrize("value", ["100/hour", "100 per hour", "10/minute", "5 per 2 hours",
                                   "1/second", "7/days"])
def test_limit_formats_the_config_accepts_are_flask_limiter_ones(value):
    config = validate_config({"rate_limits": {"spawn": value}})
    assert config["rate_limits"]["spawn"] == value
    assert parse_many(value)


@pytest.mark.parametrize("value", ["lots", "100", "100/fortnight", "100/hour;1/second", "",
                                   "-1/hour"])
def test_bad_limit_formats_are_refused_by_config_validation(value):
    with pytest.raises(ConfigError, match=r"rate_limits\.spawn"):
        validate_config({"rate_limits": {"spawn": value}})


def test_team_and_batch_spawns_count_against_the_spawn_limit(client, app, admin):
    configure(app, rate_limits={"spawn": "5/hour"})
    assert client.post("/api/spawn-team", headers=admin.headers,
                       json={"team": "team_coding", "task": "x"}).status_code == 202
    batch = {"agents": [{"model": "k2p5", "task": f"b{i}"} for i in range(4)]}
    assert client.post("/api/spawn-batch", headers=admin.headers, json=batch).status_code == 202
    response = client.post("/api/spawn", headers=admin.headers, json={"model": "k2p5", "task": "x"})
    assert response.status_code == 429


def test_concurrent_requests_each_count_once_and_start_no_threads(app, admin):
    """Eight request threads at once: every hit is counted, none fails, and counting
    starts no thread (limits' MemoryStorage started a timer thread as it went, and two
    request threads could start the same one: a 500)."""
    configure(app, rate_limits={"agents": "1000/hour"})
    before = set(threading.enumerate())
    started = set()

    def list_agents(_):
        client = app.test_client()
        statuses = []
        for _ in range(40):
            statuses.append(client.get("/api/agents?limit=1", headers=admin.headers).status_code)
            started.update(t.name for t in set(threading.enumerate()) - before
                           if not t.name.startswith("request"))
        return statuses

    with concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="request") as pool:
        statuses = [s for batch in pool.map(list_agents, range(8)) for s in batch]
    assert not started
    assert statuses == [200] * 320
    last = app.test_client().get("/api/agents?limit=1", headers=admin.headers)
    assert last.headers["X-RateLimit-Remaining"] == str(1000 - 321)


def test_a_counter_past_its_window_starts_again():
    storage = CounterStorage()
    storage.SWEEP_AT = 2
    assert [storage.incr("a", 1), storage.incr("a", 1), storage.incr("b", 60)] == [1, 2, 1]
    assert storage.get("a") == 2 and time.time() < storage.get_expiry("a") <= time.time() + 1
    time.sleep(1.05)
    assert storage.get("a") == 0 and storage.get("b") == 1
    assert storage.incr("c", 60) == 1                     # the dict is full: ended windows go
    assert set(storage.counters) == {"b", "c"}
    assert storage.incr("a", 60, amount=3) == 3

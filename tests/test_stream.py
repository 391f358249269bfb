"""GET /events/stream: Server-Sent Events of the feed's events, resumable, bounded."""
from __future__ import annotations

import json
import threading
import time

import pytest

from j1msky.config import ConfigError, validate_config
from j1msky.db import connection_for, transaction
from j1msky.services import events, stream
from tests.helpers import configure
from tests.test_events import emit_many, follow

STREAM = "/api/events/stream"


def parse(text: str) -> list[dict]:
    """SSE text -> its blocks, each {field: value} (comments under ':')."""
    blocks = []
    for block in text.split("\n\n"):
        if not block:
            continue
        fields = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        blocks.append(fields)
    return blocks


def read_events(response, count: int, timeout: float = 5) -> list[dict]:
    """Read `count` event messages (pings skipped) from a streaming test response."""
    got, buffer, deadline = [], "", time.monotonic() + timeout
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        complete, _, buffer = buffer.rpartition("\n\n")
        got += [b for b in parse(complete) if "event" in b]
        if len(got) >= count or time.monotonic() > deadline:
            break
    return got


def open_stream(client, key, headers=None, **query):
    return client.get(STREAM, headers={**key.headers, **(headers or {})}, query_string=query,
                      buffered=False)


@pytest.fixture
def live_config(app):
    configure(app, streams={"max_seconds": 5, "heartbeat_seconds": 0.2, "retry_seconds": 1})


def emit_later(app, event_type: str, count: int, delay: float = 0.1) -> threading.Thread:
    thread = threading.Timer(delay, emit_many, (app, count, event_type))
    thread.start()
    return thread


def test_stream_pushes_new_events_with_sse_headers(client, app, admin, live_config):
    emit_many(app, 3)  # older: a stream without Last-Event-ID starts from now
    response = open_stream(client, admin)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    first = next(iter(response.response)).decode()
    assert first == "retry: 1000\n\n"
    emit_later(app, "agent.completed", 2)
    got = read_events(response, 2)
    response.close()
    feed, _ = follow(client, admin)
    assert [json.loads(b["data"]) for b in got] == feed[3:]
    assert [b["event"] for b in got] == ["agent.completed"] * 2
    # id: is the feed's cursor: polling from it gives what comes after
    after = client.get("/api/events", headers=admin.headers,
                       query_string={"cursor": got[0]["id"]}).json["data"]
    assert after == feed[4:]


def test_quiet_stream_sends_ping_comments(client, admin, live_config):
    response = open_stream(client, admin)
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry:")
    began = time.monotonic()
    assert next(chunks) == b": ping\n\n"
    assert 0.1 < time.monotonic() - began < 2
    response.close()


@pytest.mark.parametrize("how", ["header", "query", "header over query"])
def test_last_event_id_resumes_without_gap_or_repeat(client, app, admin, live_config, how):
    emit_many(app, 5)
    feed, _ = follow(client, admin)
    cursor = client.get("/api/events?limit=2", headers=admin.headers).json["pagination"]["cursor"]
    stale = client.get("/api/events?limit=1", headers=admin.headers).json["pagination"]["cursor"]
    headers = {"Last-Event-ID": cursor} if how.startswith("header") else {}
    query = {"cursor": cursor if how == "query" else stale} if how != "header" else {}
    response = open_stream(client, admin, headers, **query)
    got = read_events(response, 3)
    response.close()
    assert [json.loads(b["data"]) for b in got] == feed[2:]


def test_type_filter_takes_a_list(client, app, admin, live_config):
    response = open_stream(client, admin, type="agent.failed,agent.completed")
    next(iter(response.response))
    conn = connection_for(app.config["DATABASE"])
    with transaction(conn):
        for kind in ("agent.spawned", "agent.completed", "agent.started", "agent.failed"):
            events.emit(conn, kind, {})
    got = read_events(response, 2)
    response.close()
    assert [b["event"] for b in got] == ["agent.completed", "agent.failed"]


@pytest.mark.parametrize("query, headers, field", [
    ({"type": "agent.exploded"}, {}, "type"),
    ({"type": "agent.completed,nope"}, {}, "type"),
    ({"limit": "5"}, {}, "limit"),
    ({"cursor": "garbage!!"}, {}, "cursor"),
    ({}, {"Last-Event-ID": "eyJhIjogOTk5OTk5fQ"}, "cursor"),
])
def test_bad_stream_arguments_are_400(client, admin, query, headers, field):
    response = client.get(STREAM, headers={**admin.headers, **headers}, query_string=query)
    assert response.status_code == 400
    assert response.json["success"] is False
    assert field in response.json["error"]["details"]


def test_stream_needs_agents_read(client, keys):
    assert client.get(STREAM).status_code == 401
    billing = keys.make("billing:read")
    response = client.get(STREAM, headers=billing.headers)
    assert response.status_code == 403 and response.json["success"] is False


def test_streams_beyond_the_cap_get_503_with_retry_after(client, app, admin):
    configure(app, server={"threads": 4},
              streams={"max_seconds": 5, "heartbeat_seconds": 3, "retry_seconds": 1})
    held = [open_stream(client, admin) for _ in range(2)]  # half of 4 threads
    assert [r.status_code for r in held] == [200, 200]
    refused = client.get(STREAM, headers=admin.headers)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "3"
    assert refused.json["error"]["retry_after"] == 3
    assert "GET /api/events" in refused.json["error"]["message"]
    held.pop().close()  # a closed stream gives its place back
    again = open_stream(client, admin)
    assert again.status_code == 200
    for response in (again, *held):
        response.close()
    assert stream.gate.open == 0


def test_stream_ends_at_max_seconds(client, admin):
    # config_for_tests: streams.max_seconds 0.1
    began = time.monotonic()
    response = client.get(STREAM, headers=admin.headers)
    assert response.status_code == 200 and response.get_data(as_text=True) == "retry: 2000\n\n"
    assert time.monotonic() - began < 2


def test_stop_ends_the_generator_at_once(app):
    stop = threading.Event()
    body = stream.follow(app.config["DATABASE"], after_id=0, stop=stop, heartbeat=60,
                         deadline=time.monotonic() + 60)
    assert next(body).startswith("retry:")
    threading.Timer(0.1, lambda: (stop.set(), events.bell.ring())).start()
    began = time.monotonic()
    assert list(body) == []
    assert time.monotonic() - began < 1


@pytest.mark.parametrize("threads, max_open, ok", [(8, 4, True), (8, 5, False), (8, None, True),
                                                   (3, 1, True), (3, 2, False), (1, 0, True)])
def test_max_open_is_at_most_half_the_threads(threads, max_open, ok):
    config = {"server": {"threads": threads}, "streams": {"max_open": max_open}}
    if ok:
        expected = threads // 2 if max_open is None else max_open
        assert stream.Gate().limit(validate_config(config)) == expected
    else:
        with pytest.raises(ConfigError, match="streams.max_open"):
            validate_config(config)


def test_the_worker_thread_count_bounds_the_default(example_config):
    gate = stream.Gate()
    assert gate.limit(example_config) == 4  # server.threads 8
    gate.threads = 2  # `j1msky serve --threads 2`
    assert gate.limit(example_config) == 1

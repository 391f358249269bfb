"""GET /api/events/stream on a real `j1msky serve`: following it across reconnects, the
cap, SIGTERM, vanished clients, and the Python SDK's reconnecting generator."""
from __future__ import annotations

import itertools
import json
import re
import threading
import time

import psutil
import requests

from j1msky import Agency
from j1msky.config import defaults
from tests.helpers import config_for_tests

ALL_SCOPES = ("agents:read", "agents:write", "billing:read", "admin:write")
UNLIMITED = "1000000/hour"


def stream_config(**streams) -> dict:
    """Limits raised for bulk spawns; opus on a provider that takes 1 s a call."""
    models = defaults()["models"]
    models["opus"] = {**models["opus"], "provider": "slow"}
    return config_for_tests(
        providers={"anthropic": {"kind": "simulated", "hourly": 1000000, "delay": 0},
                   "kimi-coding": {"kind": "simulated", "hourly": 1000000, "delay": 0},
                   "slow": {"kind": "simulated", "hourly": 1000000, "delay": 1}},
        models=models,
        agents={"workers": 4, "max_concurrent_per_key": 100000, "shutdown_grace_seconds": 1},
        rate_limits={"spawn": UNLIMITED, "agent": UNLIMITED, "agents": UNLIMITED,
                     "per_ip": "1000000/minute"},
        budget={"daily": 1000000, "monthly_ceiling": 30000000},
        server={"access_log": True},  # test_wait_for_completion... counts the requests served
        streams={"max_seconds": 300, "heartbeat_seconds": 0.2, "retry_seconds": 0.1, **streams})


def start(factory, threads: int = 8, **streams):
    server = factory(stream_config(**streams), threads=threads)
    key = server.create_key(*ALL_SCOPES)["key"]
    server.start()
    return server, {"Authorization": f"Bearer {key}"}


def open_stream(server, auth, **headers) -> requests.Response:
    return requests.get(server.url + "/api/events/stream", headers={**auth, **headers},
                        stream=True, timeout=(5, 10))


def hold(server, auth, count: int) -> list[requests.Response]:
    """Open `count` streams, waiting for places that closed streams still hold (a stream
    learns that its client has gone at its next heartbeat)."""
    held = []

    def one_more():
        response = open_stream(server, auth)
        if response.status_code == 200:
            held.append(response)
        else:
            response.close()
        return len(held) == count
    wait_until(one_more, 5, f"{count} streams to be accepted")
    return held


def blocks(response: requests.Response):
    """The SSE blocks of a response as {field: value} dicts, pings included (as {"": ...})."""
    fields = {}
    for raw in response.iter_lines():
        line = raw.decode()
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            yield fields
            fields = {}


class Follower(threading.Thread):
    """Follows the stream like EventSource: on each end, waits `retry:` and reconnects
    with Last-Event-ID. Keeps every event and counts the connections."""

    def __init__(self, server, auth, **query):
        super().__init__(daemon=True)
        self.server, self.auth, self.query = server, auth, query
        self.events: list[dict] = []
        self.start_id: str | None = None
        self.last_id: str | None = None
        self.connections = 0
        self.stopped = threading.Event()
        self.started_at = threading.Event()
        self.error: BaseException | None = None

    def run(self):
        retry = 1.0
        try:
            while not self.stopped.is_set():
                headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
                with requests.get(self.server.url + "/api/events/stream", params=self.query,
                                  headers={**self.auth, **headers}, stream=True,
                                  timeout=(5, 10)) as response:
                    assert response.status_code == 200, response.text
                    self.connections += 1
                    for block in blocks(response):
                        retry = int(block.get("retry", retry * 1000)) / 1000
                        if "id" in block:
                            self.last_id = block["id"]
                            self.start_id = self.start_id or block["id"]
                            self.started_at.set()
                        if "data" in block:
                            self.events.append(json.loads(block["data"]))
                        if self.stopped.is_set():
                            return
                time.sleep(retry)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc
            self.started_at.set()


def spawn_batches(server, auth, batches: int, size: int = 50, model: str = "k2p5") -> list[str]:
    ids = []
    for _ in range(batches):
        answer = requests.post(server.url + "/api/spawn-batch", headers=auth, timeout=30,
                               json={"agents": [{"model": model, "task": f"stream {i}"}
                                                for i in range(size)]})
        assert answer.status_code == 202, answer.text
        ids += [a["agent_id"] for a in answer.json()["agents"]]
    return ids


def feed_after(server, auth, cursor: str) -> list[dict]:
    """GET /api/events from `cursor` to its end."""
    seen = []
    while True:
        page = requests.get(server.url + "/api/events", headers=auth, timeout=10,
                            params={"cursor": cursor, "limit": 100}).json()
        seen += page["data"]
        cursor = page["pagination"]["cursor"] or cursor
        if not page["pagination"]["has_more"]:
            return seen


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def all_finished(server, auth) -> bool:
    active = requests.get(server.url + "/api/agents/active", headers=auth, timeout=10).json()
    return active["count"] == 0


def test_stream_follows_1050_events_across_reconnects_without_gap_or_repeat(
        live_server_factory):
    server, auth = start(live_server_factory, max_seconds=1)
    follower = Follower(server, auth)
    follower.start()
    assert follower.started_at.wait(10) and follower.error is None
    for _ in range(7):  # 350 agents (spawned, started, completed each) over about 2 s
        spawn_batches(server, auth, 1)
        time.sleep(0.3)
    wait_until(lambda: all_finished(server, auth), 60, "the agents to finish")
    feed = feed_after(server, auth, follower.start_id)
    assert len(feed) >= 1050
    wait_until(lambda: len(follower.events) >= len(feed) or follower.error, 30,
               "the follower to catch up")
    follower.stopped.set()
    assert follower.error is None
    assert [e["id"] for e in follower.events] == [e["id"] for e in feed]
    assert follower.events == feed  # the same payloads as the feed
    assert follower.connections >= 2  # it crossed at least one max_seconds close


def test_client_dropped_mid_stream_resumes_with_last_event_id(live_server_factory):
    server, auth = start(live_server_factory)
    response = open_stream(server, auth)
    spawn_batches(server, auth, 1, size=10)
    seen, last = [], None
    for block in blocks(response):
        last = block.get("id", last)
        if "data" in block:
            seen.append(json.loads(block["data"]))
        if len(seen) == 7:
            break
    response.close()  # the client vanishes mid-stream
    wait_until(lambda: all_finished(server, auth), 30, "the agents to finish")
    resumed = open_stream(server, auth, **{"Last-Event-ID": last})
    rest, expected = [], None
    for block in blocks(resumed):
        if "data" in block:
            rest.append(json.loads(block["data"]))
        expected = expected or feed_after(server, auth, last)
        if len(rest) >= len(expected):
            break
    resumed.close()
    assert len(seen) + len(rest) == 30
    assert [e["id"] for e in rest] == [e["id"] for e in expected]
    numbers = [int(e["id"][4:]) for e in seen + rest]
    assert numbers == list(range(numbers[0], numbers[0] + 30))


def test_streams_beyond_the_cap_get_503_and_polling_still_answers(live_server_factory):
    server, auth = start(live_server_factory, threads=4)  # at most 2 streams
    held = [open_stream(server, auth) for _ in range(2)]
    assert [r.status_code for r in held] == [200, 200]
    refused = requests.get(server.url + "/api/events/stream", headers=auth, timeout=5)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"  # ceil(heartbeat_seconds)
    assert refused.json()["success"] is False and refused.json()["error"]["code"] == 503
    assert requests.get(server.url + "/api/events", headers=auth, timeout=5).status_code == 200
    held.pop().close()
    held += hold(server, auth, 1)  # the closed stream's place is given back
    for response in held:
        response.close()


def test_sigterm_ends_open_streams_at_once(live_server_factory):
    server, auth = start(live_server_factory, threads=4, heartbeat_seconds=15)
    held = [open_stream(server, auth) for _ in range(2)]
    readers = [blocks(r) for r in held]
    for reader in readers:
        assert "retry" in next(reader)
    began = time.monotonic()
    assert server.stop(timeout=30) == 0
    assert time.monotonic() - began < 5  # streams would hold the worker 30 s (graceful_timeout)
    for reader in readers:
        assert list(reader) == []  # a clean end of the stream, not a reset


def worker_process(server) -> psutil.Process:
    children = psutil.Process(server.process.pid).children()
    assert len(children) == 1
    return children[0]


def connect_and_vanish(server, auth, cycles: int) -> int:
    """Open a stream, read its first block, drop the connection; `cycles` times. A 503
    (places still held by streams that have not yet noticed) is retried. Returns the 503s."""
    accepted = refused = 0
    while accepted < cycles:
        response = open_stream(server, auth)
        if response.status_code == 200:
            next(blocks(response))
            accepted += 1
        else:
            assert response.status_code == 503
            refused += 1
            time.sleep(0.02)
        response.close()  # gone, without a word: the next heartbeat finds out
    return refused


def test_vanished_clients_leave_no_thread_connection_or_place_behind(live_server_factory):
    server, auth = start(live_server_factory, heartbeat_seconds=0.1)
    worker = worker_process(server)
    # Warm up: the pool starts request threads, and each opens its own database
    # connection, as requests first need them.
    connect_and_vanish(server, auth, 50)
    time.sleep(0.5)
    threads_before, files_before = worker.num_threads(), worker.num_fds()
    connect_and_vanish(server, auth, 200)
    wait_until(lambda: worker.num_fds() <= files_before, 10, "the streams' files to close")
    assert worker.num_threads() == threads_before
    assert worker.num_fds() == files_before
    for response in hold(server, auth, 4):  # every place is free again
        response.close()


def test_sdk_stream_reconnects_and_resumes(live_server_factory):
    server, auth = start(live_server_factory, max_seconds=0.5)
    agency = Agency(auth["Authorization"][7:], server.url, backoff_base=0.01, backoff_max=0.5)
    live = agency.events.stream(types=["agent.completed"]).connect()
    start_position = live.last_event_id
    got = []
    consumer = threading.Thread(target=lambda: got.extend(
        itertools.islice(live, 20)), daemon=True)
    consumer.start()
    spawned = []
    for _ in range(4):  # over about 2 s: the stream is closed and resumed several times
        spawned += spawn_batches(server, auth, 1, size=10)
        time.sleep(0.5)
    consumer.join(30)
    assert not consumer.is_alive()
    position = live.last_event_id
    live.close()
    with agency.events.stream(["agent.completed"], last_event_id=position) as rest_stream:
        rest = list(itertools.islice(rest_stream, 20))
    completed = [e for e in feed_after(server, auth, start_position)
                 if e["type"] == "agent.completed"]
    assert [e["id"] for e in got + rest] == [e["id"] for e in completed]
    assert sorted(e["data"]["agent_id"] for e in got + rest) == sorted(spawned)


def served_requests(server, pattern: str) -> list[str]:
    return [line for line in server.log().splitlines() if re.search(pattern, line)]


def test_wait_for_completion_listens_on_the_stream_and_polls_when_refused(
        live_server_factory):
    server, auth = start(live_server_factory, threads=4)
    agency = Agency(auth["Authorization"][7:], server.url, backoff_base=0.01, backoff_max=0.5)
    streamed = agency.spawn(model="opus", task="slow one")  # the slow provider: about 1 s
    assert streamed.wait_for_completion(timeout=30).status == "completed"
    held = hold(server, auth, 2)  # the cap: the next one gets 503
    polled = agency.spawn(model="opus", task="slow two")
    assert polled.wait_for_completion(timeout=30, poll_interval=0.1).status == "completed"
    for response in held:
        response.close()
    time.sleep(0.3)  # the access log line is written as the answer ends
    assert len(served_requests(server, rf"GET /api/agent/{streamed.id} ")) == 2  # before, after
    assert len(served_requests(server, rf"GET /api/agent/{polled.id} ")) > 3
    assert served_requests(server, r"GET /api/events/stream\?type=\S+ HTTP/1.1\" 503")

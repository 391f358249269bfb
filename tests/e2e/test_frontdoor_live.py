"""`j1msky serve` against idle and slow clients, with real sockets on 127.0.0.1/127.0.0.2.

Each test starts a real server (one worker, 8 threads). A request "is answered" when the
status line and body of a GET arrive on a fresh connection.
"""
from __future__ import annotations

import http.client
import json
import re
import select
import socket
import time
import urllib.parse

import pytest

from tests.helpers import config_for_tests

OTHER = "127.0.0.2"  # a second device on the LAN


def start(factory, **server):
    live = factory(config_for_tests(server=server))
    key = live.create_key("agents:read", "agents:write")["key"]
    live.start()
    return live, {"Authorization": f"Bearer {key}"}


def connect(live, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", live.port), timeout=10,
                                    source_address=(source, 0))


def timed_get(live, auth: dict, source: str, path: str = "/api/agents") -> tuple[int, float]:
    """(status, seconds) of one GET on a fresh connection from `source`."""
    began = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path, headers=auth)
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - began
    finally:
        conn.close()


def send_head_part(sock: socket.socket) -> None:
    sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")


def send_body_part(sock: socket.socket, auth: dict) -> None:
    sock.sendall(b"POST /api/spawn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Authorization: " + auth["Authorization"].encode() +
                 b"\r\nContent-Length: 100\r\n\r\n{\"model\": ")


def send_chunk_part(sock: socket.socket) -> None:
    sock.sendall(b"POST /api/spawn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n400\r\n{\"model\": ")


def seconds_until_closed(sock: socket.socket, trickle: bytes | None, limit: float = 15) -> float:
    """Send `trickle` a byte at a time (every 0.2 s) until the server closes the socket."""
    began = time.monotonic()
    sent = 0
    while time.monotonic() - began < limit:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
            return time.monotonic() - began
        if trickle is not None:
            try:
                sock.send(trickle[sent % len(trickle):][:1])
                sent += 1
            except OSError:
                return time.monotonic() - began
    return float("inf")


def test_idle_and_slow_clients_do_not_delay_a_normal_request(live_server_factory):
    live, auth = start(live_server_factory, request_timeout=10, max_connections_per_address=200)
    slow = [connect(live) for _ in range(90)]  # 50 idle
    for sock in slow[50:70]:
        send_head_part(sock)
    for sock in slow[70:75]:
        send_body_part(sock, auth)
    for sock in slow[75:80]:
        send_chunk_part(sock)
    for sock in slow[80:90]:  # answered, then never close their end nor read
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    time.sleep(0.5)  # well past the point where gthread would have handed them to threads

    timings = [timed_get(live, auth, source) for _ in range(10) for source in (OTHER, "127.0.0.1")]
    assert all(status == 200 for status, _ in timings), timings
    assert max(seconds for _, seconds in timings) < 1, timings
    for sock in slow:
        sock.close()


@pytest.mark.parametrize("kind", ["head", "body", "chunked"])
def test_a_trickling_request_is_cut_after_the_request_timeout(live_server_factory, kind):
    live, auth = start(live_server_factory, request_timeout=2)
    sock = connect(live)
    {"head": send_head_part, "chunked": send_chunk_part}.get(
        kind, lambda s: send_body_part(s, auth))(sock)
    seconds = seconds_until_closed(sock, trickle=b"abcdefgh")  # never completes the request
    sock.close()
    assert 2 <= seconds < 4.5
    assert timed_get(live, auth, "127.0.0.1")[0] == 200


def test_an_idle_connection_is_closed_after_the_keepalive(live_server_factory):
    live, auth = start(live_server_factory, request_timeout=2)
    sock = connect(live)
    seconds = seconds_until_closed(sock, trickle=None)
    sock.close()
    assert 5 <= seconds < 7.5  # j1msky.server.KEEPALIVE


def test_a_body_read_by_the_app_past_the_timeout_gets_408(live_server_factory):
    """Expect: 100-continue hands the request to a thread before its body: the thread's
    reads stop at the deadline and the app answers 408 in the error shape."""
    live, auth = start(live_server_factory, request_timeout=2)
    sock = connect(live)
    sock.sendall(b"POST /api/spawn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Authorization: " + auth["Authorization"].encode() +
                 b"\r\nExpect: 100-continue\r\nContent-Length: 40\r\n\r\n")
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    began = time.monotonic()
    sock.sendall(b'{"model": "k2p5", ')
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = json.loads(response.read())
    assert 2 <= time.monotonic() - began < 4
    assert response.status == 408 and body["error"]["code"] == 408
    assert body["success"] is False and body["error"]["request_id"].startswith("req_")
    sock.close()
    agents = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    agents.request("GET", "/api/agents", headers=auth)
    assert json.loads(agents.getresponse().read())["data"] == []  # nothing was spawned


def test_connections_beyond_the_per_address_cap_get_503(live_server_factory):
    live, auth = start(live_server_factory, max_connections_per_address=4)
    held = [connect(live) for _ in range(4)]
    time.sleep(0.3)
    refused = connect(live)
    refused.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response = http.client.HTTPResponse(refused)
    response.begin()
    body = json.loads(response.read())
    assert response.status == 503 and response.getheader("Retry-After") == "5"
    assert response.getheader("Connection") == "close"
    assert body["error"]["code"] == 503 and body["error"]["retry_after"] == 5
    assert response.getheader("X-Request-Id") == body["error"]["request_id"]
    assert refused.recv(10) == b""  # closed
    refused.close()

    assert timed_get(live, auth, OTHER)[0] == 200  # another address is not affected
    held.pop().close()
    time.sleep(0.3)
    assert timed_get(live, auth, "127.0.0.1")[0] == 200  # a slot is free again
    for sock in held:
        sock.close()


def test_an_idle_kept_alive_connection_makes_room_under_the_cap(live_server_factory):
    live, auth = start(live_server_factory, max_connections_per_address=4)
    kept = [http.client.HTTPConnection("127.0.0.1", live.port, timeout=10) for _ in range(4)]
    for conn in kept:
        conn.request("GET", "/api/agents", headers=auth)
        conn.getresponse().read()  # each stays open, kept alive
    assert timed_get(live, auth, "127.0.0.1")[0] == 200
    assert kept[0].sock.recv(10) == b""  # the oldest was closed to make room
    for conn in kept:
        conn.close()


def test_keep_alive_serves_many_requests_on_one_connection(live_server_factory):
    live, auth = start(live_server_factory)
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    ports = set()
    for _ in range(5):
        conn.request("GET", "/api/agents", headers=auth)
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Connection") != "close"
        response.read()
        ports.add(conn.sock.getsockname()[1])
        time.sleep(0.5)
    conn.request("POST", "/api/spawn", headers=auth, body=json.dumps({"task": "hi"}))
    response = conn.getresponse()
    assert response.status in (201, 202), response.read()
    response.read()
    ports.add(conn.sock.getsockname()[1])
    assert len(ports) == 1  # the same TCP connection throughout
    conn.close()


def test_a_filter_of_100_agent_ids_fits_the_request_line(live_server_factory):
    live, auth = start(live_server_factory)
    ids = [f"subagent_{1764250000 + i}_{123456 + i}" for i in range(100)]
    where = {"agent_id": {"in": ids}, "status": {"in": ["completed", "failed", "cancelled"]},
             "model": {"in": ["k2p5", "sonnet", "opus"]}, "created_at": {"gte": "2026-11-01"}}
    query = urllib.parse.urlencode({"filter": json.dumps(where), "sort": "-created_at",
                                    "limit": 100}, quote_via=urllib.parse.quote)
    assert 4094 < len(f"GET /api/agents?{query} HTTP/1.1") < 8190  # gunicorn's default, ours
    status, _ = timed_get(live, auth, "127.0.0.1", "/api/agents?" + query)
    assert status == 200


def send_spawn(conn: http.client.HTTPConnection, auth: dict, framing: str) -> None:
    """POST /api/spawn on `conn`, its body framed and sent as `framing` says."""
    body = json.dumps({"task": f"spawned {framing}"}).encode()
    conn.putrequest("POST", "/api/spawn")
    for name, value in {**auth, "Content-Type": "application/json"}.items():
        conn.putheader(name, value)
    if framing == "chunked":
        conn.putheader("Transfer-Encoding", "chunked")
        return conn.endheaders(iter([body[:5], body[5:]]), encode_chunked=True)
    conn.putheader("Content-Length", str(len(body)))
    if framing == "100-continue":
        conn.putheader("Expect", "100-continue")
        conn.endheaders()
        assert conn.sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        return conn.send(body)
    if framing == "in pieces":
        conn.endheaders(body[:5])
        time.sleep(0.3)  # the main loop has parsed the head and waits for the rest
        return conn.send(body[5:])
    conn.endheaders(body)


@pytest.mark.parametrize("framing", ["whole", "in pieces", "chunked", "100-continue"])
def test_a_spawn_is_answered_however_its_body_comes_and_the_connection_kept(
        live_server_factory, framing):
    live, auth = start(live_server_factory)
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    send_spawn(conn, auth, framing)
    response = conn.getresponse()
    spawned = json.loads(response.read())
    assert response.status == 202, spawned
    port = conn.sock.getsockname()[1]
    conn.request("GET", f"/api/agent/{spawned['agent_id']}", headers=auth)
    response = conn.getresponse()
    agent = json.loads(response.read())
    assert response.status == 200 and agent["task"] == f"spawned {framing}"
    assert conn.sock.getsockname()[1] == port  # the same TCP connection
    conn.close()


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_pipelined_requests_in_one_send_are_answered_in_order(live_server_factory):
    live, auth = start(live_server_factory)
    sock = connect(live)
    head = f"Host: 127.0.0.1\r\nAuthorization: {auth['Authorization']}\r\n"
    body = json.dumps({"task": "pipelined"})
    sock.sendall(f"POST /api/spawn HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n{body}"
                 f"GET /api/agents HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode())
    answers = read_until_closed(sock)
    sock.close()
    assert re.findall(rb"^HTTP/1.1 (\d+) ", answers, re.M) == [b"202", b"200"], answers
    spawned_id = re.search(rb'"agent_id": ?"([^"]+)"', answers)[1]
    listed = json.loads(answers.rpartition(b"\r\n\r\n")[2])["data"]
    assert [agent["agent_id"] for agent in listed] == [spawned_id.decode()]

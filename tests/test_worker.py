"""FrontConn with gunicorn's parser over a real socket pair: the request its main loop
parsed is the one a request thread serves, whenever it came in whole with nothing after."""
from __future__ import annotations

import socket
import time

import pytest
from gunicorn.config import Config
from gunicorn.http.message import Request

from j1msky.worker import FrontConn

MAX_BODY = 1024


@pytest.fixture
def parses(monkeypatch):
    """The request heads gunicorn parses (an observation: each parse still runs)."""
    seen = []
    parse = Request.parse

    def counted(request, unreader):
        seen.append(request)
        return parse(request, unreader)

    monkeypatch.setattr(Request, "parse", counted)
    return seen


@pytest.fixture
def pair():
    """(the worker's connection, the client's socket)."""
    server, client = socket.socketpair()
    yield FrontConn(Config(), server, ("127.0.0.1", 40000), ("127.0.0.1", 8000)), client
    server.close()
    client.close()


def post(body: bytes, *headers: bytes) -> bytes:
    return b"\r\n".join([b"POST /api/spawn HTTP/1.1", b"Host: 127.0.0.1", *headers,
                         b"Content-Length: %d" % len(body), b"", body])


def read_in_main_loop(conn: FrontConn, *reads: bytes) -> None:
    """The main loop's part: bytes as read from the socket until request_in says go."""
    for data in reads:
        assert not conn.request_in(MAX_BODY)
        conn.received += data
    assert conn.request_in(MAX_BODY)


def next_in_thread(conn: FrontConn) -> Request:
    """A request thread's part, as gthread's handle() does it."""
    conn.read_deadline = time.monotonic() + 5
    conn.init()
    return next(conn.parser)


def test_a_whole_content_length_request_is_parsed_once(pair, parses):
    conn, _ = pair
    for number, body in enumerate([b'{"task": "one"}', b'{"task": "two"}'], start=1):
        read_in_main_loop(conn, post(body, b"Content-Type: application/json"))
        request = next_in_thread(conn)
        assert (request.method, request.path, request.req_number) == ("POST", "/api/spawn", number)
        assert request.body.read() == body and not request.should_close()
        assert conn.parser.finish_body()  # gthread's drain before keep-alive
        assert len(parses) == number


@pytest.mark.parametrize("reads, later, bodies", [
    pytest.param([post(b"one") + post(b"two")], b"", [b"one", b"two"], id="pipelined"),
    pytest.param([post(b"hello")[:-3], b"llo"], b"", [b"hello"], id="body in pieces"),
    pytest.param([b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n0\r\n\r\n"], b"", [b"hello"], id="chunked"),
    pytest.param([post(b"hello", b"Expect: 100-continue")[:-5]], b"hello", [b"hello"],
                 id="100-continue"),
    pytest.param([post(b"x" * (MAX_BODY + 1))], b"", [b"x" * (MAX_BODY + 1)],
                 id="over max body"),
])
def test_other_requests_are_parsed_again_by_the_thread(pair, parses, reads, later, bodies):
    conn, client = pair
    read_in_main_loop(conn, *reads)
    parsed_in_main_loop = len(parses)
    client.sendall(later)  # what the thread still reads from the socket
    request = next_in_thread(conn)
    assert len(parses) == parsed_in_main_loop + 1
    assert request.body.read() == bodies[0]
    for body in bodies[1:]:  # pipelined: from what the thread's parser holds
        assert conn.parser.finish_body()
        assert next(conn.parser).body.read() == body

"""The gunicorn worker of `j1msky serve`: gthread, with requests read before a thread is taken.

gunicorn's gthread worker hands a new connection to a request thread at once; the thread
waits up to 5 s for a first byte, then blocks until the whole request is in. Idle and slow
clients so hold the (few) threads. FrontDoorWorker keeps each connection in gthread's
poller until its request is in memory (headers, and a Content-Length body up to
server.max_body_bytes), closes it if the request takes longer than server.request_timeout
from its first byte (or if no byte comes within keepalive seconds), and answers 503 to
connections beyond server.max_connections_per_address. A request thread only ever parses
a complete request; what it must still read (a chunked body, one past max_body_bytes, one
behind ``Expect: 100-continue``) is bounded by the same deadline. With TLS the handshake is
done here too, without blocking. A request whose head and Content-Length body came in
whole, with nothing after it, is handed to the thread as parsed here: each head is parsed
once. See docs/DESIGN.md, "Slow and idle clients".
"""
from __future__ import annotations

import errno
import math
import selectors
import socket
import ssl
import time
from functools import partial

from gunicorn import util
from gunicorn.http.body import LengthReader
from gunicorn.http.errors import NoMoreData
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import IterUnreader
from gunicorn.sock import ssl_context
from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.exceptions import RequestTimeout

from .errors import add_request_id, error_response

HEADER_ROOM = 64 * 1024  # request head bytes held here at most; past that a thread reads on
LINGER_SECONDS = 2.0  # after "Connection: close", how long to wait for the client's FIN
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class ReadTimeout(RequestTimeout):
    """The request was not in by its deadline: raised while the app reads the body, Flask
    answers 408 in the error shape (not an OSError, which werkzeug would make a 400);
    raised while gunicorn reads the head, the worker closes the connection."""


class FrontParser(RequestParser):
    """gunicorn's request parser, which can be handed its next request already parsed."""

    def __init__(self, cfg, source, source_addr):
        super().__init__(cfg, source, source_addr)
        self.parsed: Request | None = None

    def mesg_class(self, cfg, unreader, source_addr, req_number):
        """Parser.__next__ builds each request with this (gunicorn's is the Request class
        itself), after its keep-alive checks and the previous body's drain: the request
        handed over, else one parsed from the connection."""
        request, self.parsed = self.parsed, None
        if request is not None:
            return request
        return Request(cfg, unreader, source_addr, req_number)


class FrontConn(TConn):
    """A client connection, its place in the per-address count and the bytes read so far."""

    def __init__(self, cfg, sock, client, server):
        super().__init__(cfg, sock, client, server)
        self.data_ready = True  # a thread gets it only with a request in hand: never wait
        self.address = client[0] if isinstance(client, tuple) else str(client)
        self.received = bytearray()
        self.request_size: int | None = None  # head + body, once the head is parsed
        self.parsed: Request | None = None  # the request in `received`, its body in memory
        self.handshaken = not cfg.is_ssl
        self.refused = False
        self.counts: dict[str, int] | None = None  # the per-address count it is in
        self.on_graceful_close = None  # the worker's linger, set once it is watched
        self.read_deadline = math.inf

    def init(self):
        """In a request thread: gunicorn's parser, reading through recv() below, handed the
        request parsed by request_in if it kept one, else the bytes read so far."""
        if self.parser is None:
            self.parser = FrontParser(self.cfg, self, self.client)
        super().init()
        if self.parsed is not None:
            self.parser.parsed, self.parsed = self.parsed, None
        else:
            self.parser.unreader.unread(bytes(self.received))
        self.received.clear()
        self.request_size = None

    def recv(self, size: int) -> bytes:
        """What the parser reads in a request thread: no wait past the read deadline."""
        remaining = self.read_deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout()
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv(size)
        except TimeoutError:
            raise ReadTimeout() from None
        finally:
            self.sock.settimeout(None)

    def request_in(self, max_body: int) -> bool:
        """Whether a thread should take it now: the whole request is in memory, or it is
        never going to be (too large, 100-continue, malformed: gunicorn answers), judged
        by gunicorn's own parser."""
        if self.request_size is not None:
            return len(self.received) >= self.request_size
        if b"\r\n\r\n" not in self.received:
            return len(self.received) > HEADER_ROOM
        unreader = IterUnreader([bytes(self.received)])
        number = self.parser.req_count + 1 if self.parser else 1  # as the thread would count
        try:
            request = Request(self.cfg, unreader, self.client, number)
            body = request.body.reader
            if any(name == "EXPECT" for name, _ in request.headers) or \
                    isinstance(body, LengthReader) and body.length > max_body:
                return True
            if isinstance(body, LengthReader):
                self.request_size = len(self.received) - len(unreader.buf.getvalue()) + body.length
                if len(self.received) == self.request_size:
                    # All in, nothing pipelined after it: its body reader holds exactly the
                    # body, so the thread can take this request instead of parsing it again.
                    self.parsed = request
                return len(self.received) >= self.request_size
            request.body.read(max_body + 1)  # chunked: NoMoreData until its end is in
            return True
        except NoMoreData:
            return False
        except Exception:  # the thread's parser fails the same way and answers 400
            return True

    def close(self, graceful=False):
        if self.counts is not None:
            self.counts[self.address] -= 1
            if not self.counts[self.address]:
                del self.counts[self.address]
            self.counts = None
        if graceful and self.on_graceful_close is not None:
            self.on_graceful_close(self)
        else:
            super().close(graceful)


class FrontDoorWorker(ThreadWorker):
    """gthread whose main loop, not a request thread, waits for each request to arrive."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.open_per_address: dict[str, int] = {}
        self.watched: set[FrontConn] = set()  # in the poller under our callbacks
        self.tls_context = None

    def settings(self) -> dict:
        """config.json `server`, as the app has it in force (hot reloaded)."""
        return self.wsgi.extensions["j1msky_config"].get()["server"]

    def accept(self, listener):
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = FrontConn(self.cfg, sock, client, listener.getsockname())
        conn.on_graceful_close = self.linger
        cap = self.settings()["max_connections_per_address"]
        if self.open_per_address.get(conn.address, 0) >= cap:
            self.close_oldest_idle(conn.address)
        if self.open_per_address.get(conn.address, 0) < cap:
            self.open_per_address[conn.address] = self.open_per_address.get(conn.address, 0) + 1
            conn.counts = self.open_per_address
        else:
            conn.refused = True
        if self.cfg.is_ssl:
            conn.sock = self.wrap_tls(conn.sock)
        conn.set_timeout()  # no byte within keepalive seconds: closed
        self.watch(conn, self.on_readable)

    def close_oldest_idle(self, address: str) -> None:
        """Make room under the cap: close the address's oldest kept-alive connection (idle
        between requests, which HTTP lets a server close at any time), if it has one."""
        for conn in self.keepalived_conns:
            if conn.address == address:
                self.keepalived_conns.remove(conn)
                self.poller.unregister(conn.sock)
                self.nr_conns -= 1
                return conn.close()

    def wrap_tls(self, sock: socket.socket) -> ssl.SSLSocket:
        if self.tls_context is None:
            self.tls_context = ssl_context(self.cfg)
        return self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False,
                                            suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection has bytes: read its next request here, not in a thread."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.set_timeout()
        self.watch(conn, self.on_readable)
        self.on_readable(conn, client)

    def on_readable(self, conn: FrontConn, _sock) -> None:
        try:
            if not conn.handshaken:
                conn.sock.do_handshake()
                conn.handshaken = True
            data = self.read_available(conn)
        except WOULD_BLOCK:
            return
        except OSError:  # ssl.SSLError included: a failed handshake
            return self.drop(conn)
        if not data:
            return self.drop(conn)
        if conn.refused:
            return self.refuse(conn)
        settings = self.settings()
        if not conn.received:
            conn.timeout = time.monotonic() + settings["request_timeout"]
        conn.received += data
        if conn.request_in(settings["max_body_bytes"]):
            self.unwatch(conn)
            self.enqueue_req(conn)

    @staticmethod
    def read_available(conn: FrontConn) -> bytes:
        """All bytes readable now (b"" at end of stream); raises WOULD_BLOCK if none."""
        chunks = []
        while True:
            try:
                chunk = conn.sock.recv(HEADER_ROOM)
            except WOULD_BLOCK:
                if chunks:
                    return b"".join(chunks)
                raise
            chunks.append(chunk)
            if not chunk or sum(map(len, chunks)) >= HEADER_ROOM:
                return b"".join(chunks)

    def refuse(self, conn: FrontConn) -> None:
        """Over the per-address cap: a 503 in the error shape, then close."""
        self.log.info("refused a connection from %s: too many open", conn.address)
        try:
            conn.sock.send(self.refusal())
        except OSError:
            pass
        self.drop(conn)

    def refusal(self) -> bytes:
        with self.wsgi.test_request_context():
            response = add_request_id(error_response(
                503, "Too many open connections from your address",
                retry_after=self.cfg.keepalive))
        head = [f"HTTP/1.1 {response.status}", *(f"{k}: {v}" for k, v in response.headers.items()),
                "Connection: close"]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.get_data()

    def handle(self, conn: FrontConn):
        conn.read_deadline = time.monotonic() + self.settings()["request_timeout"]
        return super().handle(conn)

    def handle_error(self, req, client, addr, exc):
        if isinstance(exc, ReadTimeout):
            self.log.debug("closing %s: its request did not come in time", addr)
        else:
            super().handle_error(req, client, addr, exc)

    def _keepalive_after(self, conn: FrontConn, keepalive):
        """gthread drains a body the app left unread before keep-alive; drain only what is
        in memory (ReadTimeout at once otherwise: the connection closes through linger)."""
        conn.read_deadline = 0
        return super()._keepalive_after(conn, keepalive)

    def linger(self, conn: FrontConn) -> None:
        """A graceful close without blocking this loop: FIN now, the socket once the client
        has closed too (so unread bytes cannot turn it into a reset), LINGER_SECONDS at most."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return util.close(conn.sock)
        conn.on_graceful_close = None
        conn.timeout = time.monotonic() + LINGER_SECONDS
        self.nr_conns += 1  # counted again until the socket is closed
        self.watch(conn, self.on_lingering_readable)

    def on_lingering_readable(self, conn: FrontConn, _sock) -> None:
        try:
            if self.read_available(conn):
                return
        except WOULD_BLOCK:
            return
        except OSError:
            pass
        self.drop(conn)

    def watch(self, conn: FrontConn, callback) -> None:
        self.watched.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(callback, conn))

    def unwatch(self, conn: FrontConn) -> None:
        self.watched.discard(conn)
        self.poller.unregister(conn.sock)

    def drop(self, conn: FrontConn) -> None:
        self.unwatch(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        """Close what is past its time: idle, too slow a request, lingering. (gthread's own
        pending list stays empty: a thread never waits for a first byte here.)"""
        now = time.monotonic()
        for conn in [c for c in self.watched
                     if c.timeout <= now or not (self.alive or c.received)]:
            self.drop(conn)

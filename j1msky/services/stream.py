"""Live events as Server-Sent Events: the feed's events, pushed as they commit.

``follow`` is a plain generator of SSE text with no Flask in it, so the API and the
console serve the same stream. It holds a request thread for its whole life, hence
``gate``: a bounded number of streams, each for a bounded time, all ended at once when
the worker is told to stop.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence

from ..db import connect
from . import events
from .pagination import feed_cursor

BATCH = 200  # rows per read: a long backlog goes out in slices


class Gate:
    """Process-wide: how many streams are open, how many may be, and the stop flag."""

    def __init__(self):
        self._lock = threading.Lock()
        self.open = 0
        self.threads: int | None = None  # the worker's request threads, once it has started
        self.stopping = threading.Event()

    def limit(self, config: dict) -> int:
        """streams.max_open, never more than half of the request threads."""
        half = (self.threads or config["server"]["threads"]) // 2
        configured = config["streams"]["max_open"]
        return half if configured is None else min(configured, half)

    def enter(self, config: dict) -> bool:
        """Take a place for one more stream: False when all are taken or the worker stops.
        Whoever gets True calls leave() once the stream has ended."""
        with self._lock:
            if self.stopping.is_set() or self.open >= self.limit(config):
                return False
            self.open += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.open -= 1

    def stop(self) -> None:
        """End every stream now: each wakes from its wait, sees the flag and returns."""
        self.stopping.set()
        events.bell.ring()


gate = Gate()


def end_streams_on_sigterm(worker) -> None:
    """gunicorn's post_worker_init hook. The worker's own SIGTERM handler starts a graceful
    stop that waits for open requests, streams included: end the streams first."""
    gate.threads = worker.cfg.threads

    def on_sigterm(signum, frame):
        gate.stop()
        worker.handle_exit(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def latest_id(conn: sqlite3.Connection) -> int:
    """The id of the newest event ever recorded (0 if none): a stream starting now."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return row[0] if row else 0


def follow(database: str, *, after_id: int, deadline: float, stop: threading.Event,
           types: Sequence[str] | None = None, heartbeat: float = 15,
           retry: float = 2) -> Iterator[str]:
    """SSE text: the events after ``after_id`` (of ``types``, or all), oldest first, as
    they commit, until time.monotonic() passes ``deadline`` or ``stop`` is set (set it
    with gate.stop(), which also wakes the wait).

    First a ``retry:`` line (milliseconds before a client reconnects), then one message
    per event: ``id:`` the feed's cursor (resume with it as Last-Event-ID), ``event:``
    its type, ``data:`` the event as GET /events shows it; a ``: ping`` comment after
    ``heartbeat`` quiet seconds, which is also when a vanished client is noticed. The
    database connection is this generator's own, closed when it ends or is closed.
    """
    yield f"retry: {round(retry * 1000)}\n\n"
    conn = connect(database)
    try:
        conn.execute("PRAGMA query_only = ON")
        written = time.monotonic()
        while not stop.is_set():
            rings = events.bell.rings  # before reading: a commit after the read still wakes us
            rows = read_after(conn, after_id, types)
            if rows:
                after_id = rows[-1]["id"]
                yield "".join(map(message, rows))
                written = time.monotonic()
                if len(rows) == BATCH:
                    continue
            now = time.monotonic()
            if now >= deadline:
                return
            if now - written >= heartbeat:
                yield ": ping\n\n"
                written = now
            events.bell.wait(rings, min(deadline, written + heartbeat) - now)
    finally:
        conn.close()


def read_after(conn: sqlite3.Connection, after_id: int,
               types: Sequence[str] | None) -> list[sqlite3.Row]:
    # SQLite has one writer at a time and ids only grow: no row commits behind one already read.
    sql, params = "SELECT * FROM events WHERE id > ?", [after_id]
    if types:
        sql += f" AND type IN ({', '.join('?' * len(types))})"
        params += types
    return conn.execute(sql + " ORDER BY id LIMIT ?", [*params, BATCH]).fetchall()


def message(row: sqlite3.Row) -> str:
    data = json.dumps(events.public(row), separators=(",", ":"))
    return f"id: {feed_cursor(row['id'])}\nevent: {row['type']}\ndata: {data}\n\n"

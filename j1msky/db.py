"""SQLite: one connection per thread, WAL, migrations by PRAGMA user_version."""
from __future__ import annotations

import contextlib
import sqlite3
import threading
from importlib import resources
from typing import Iterator

from flask import Flask, current_app

_local = threading.local()
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


class Connection(sqlite3.Connection):
    """A connection that knows its process-wide write lock.

    SQLite's busy handler sleeps in growing steps (up to 100 ms) while another
    connection writes; threads of this process instead queue on a lock that wakes
    the next writer at once. busy_timeout still covers other processes (the CLI).
    """

    write_lock: threading.Lock


def write_lock_for(path: str) -> threading.Lock:
    with _write_locks_guard:
        return _write_locks.setdefault(path, threading.Lock())


def migrations() -> dict[int, str]:
    """Version number -> SQL that brings version-1 up to it."""
    folder = resources.files("j1msky").joinpath("migrations")
    return {int(f.name.split(".")[0]): f.read_text()
            for f in folder.iterdir() if f.name.endswith(".sql")}


def schema_version() -> int:
    return max(migrations(), default=1)


def connect(path: str) -> sqlite3.Connection:
    """A new connection with the service's pragmas; autocommit, explicit transactions."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False,
                           factory=Connection)
    conn.write_lock = write_lock_for(path)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL: safe against process crashes
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA secure_delete = ON")  # erased text is overwritten, not just unlinked
    return conn


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database and empty it, so old page versions (say, of
    erased text) do not linger in the -wal file."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def connection_for(path: str) -> sqlite3.Connection:
    """This thread's connection to path, opened on first use."""
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    conn = conns.get(path)
    if conn is None:
        conn = conns[path] = connect(path)
    return conn


def get_db() -> sqlite3.Connection:
    return connection_for(current_app.config["DATABASE"])


def forget(path: str) -> None:
    """Close this thread's connection to path (tests that delete databases)."""
    conn = getattr(_local, "conns", {}).pop(path, None)
    if conn is not None:
        conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (takes the write lock up front) ... COMMIT, or ROLLBACK on error.

    Inside an open transaction it nests as a SAVEPOINT, so a view's own
    transaction joins the one an idempotent request wraps around it.
    """
    if conn.in_transaction:
        mark = len(_pending(conn))
        conn.execute("SAVEPOINT nested")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK TO nested")
            conn.execute("RELEASE nested")
            del _pending(conn)[mark:]
            raise
        conn.execute("RELEASE nested")
        return
    with conn.write_lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            _pending(conn).clear()
            raise
        conn.execute("COMMIT")
    callbacks = list(_pending(conn))
    _pending(conn).clear()
    for callback in callbacks:
        callback()


def _pending(conn: sqlite3.Connection) -> list:
    pending = getattr(_local, "after_commit", None)
    if pending is None:
        pending = _local.after_commit = {}
    return pending.setdefault(id(conn), [])


def after_commit(conn: sqlite3.Connection, callback) -> None:
    """Run callback once the current transaction commits (now, if none is open)."""
    if conn.in_transaction:
        _pending(conn).append(callback)
    else:
        callback()


def migrate(conn: sqlite3.Connection) -> int:
    """Create the schema, or upgrade an older database in place; return the version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    latest = schema_version()
    if version > latest:
        raise RuntimeError(f"database schema {version} is newer than this J1MSKY ({latest})")
    if version == latest:
        return version
    if version == 0:
        script = resources.files("j1msky").joinpath("schema.sql").read_text()
        steps = [(latest, script)]
    else:
        steps = sorted((v, sql) for v, sql in migrations().items() if v > version)
    for target, sql in steps:
        # executescript commits first; wrap each step so a failure leaves the old version.
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {target};\nCOMMIT;")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return latest


def init_db(app: Flask) -> None:
    migrate(connection_for(app.config["DATABASE"]))

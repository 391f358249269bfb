"""SQLite: one connection per thread, WAL, migrations by PRAGMA user_version."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from importlib import resources
from typing import Iterator

from flask import Flask, current_app, has_request_context

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
    synchronous: str  # the PRAGMA synchronous level in force (see use_synchronous)
    wal_path: str


# PRAGMA synchronous in WAL mode: FULL syncs the log at every commit (what is committed
# survives a power cut); NORMAL only at checkpoints (it survives a crash of the process).
_SET_SYNCHRONOUS = {"FULL": "PRAGMA synchronous = FULL", "NORMAL": "PRAGMA synchronous = NORMAL"}


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
    conn.wal_path = path + "-wal"
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.synchronous = ""
    use_synchronous(conn, "NORMAL")
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
    """This thread's connection, at the durability of its commits: the configured one
    where a commit answers someone (a request; the command line, on the main thread),
    NORMAL on the service's background threads (runner, provider pool, webhooks,
    scheduler), whose last commits a power cut may only make them redo."""
    conn = connection_for(current_app.config["DATABASE"])
    if not conn.in_transaction:  # inside one, the level was set when it began
        answering = has_request_context() or threading.current_thread() is threading.main_thread()
        power_cut = power_cut_safe(current_app.extensions["j1msky_config"].get())
        use_synchronous(conn, "FULL" if answering and power_cut else "NORMAL")
    return conn


def power_cut_safe(config: dict) -> bool:
    """Must answered writes survive a power cut (database.durability), not just a crash?"""
    return config["database"]["durability"] == "power_cut"


def use_synchronous(conn: sqlite3.Connection, level: str) -> None:
    """Set PRAGMA synchronous if it changes (SQLite refuses that inside a transaction)."""
    if conn.synchronous != level:
        conn.execute(_SET_SYNCHRONOUS[level])
        conn.synchronous = level


def forget(path: str) -> None:
    """Close this thread's connection to path (tests that delete databases)."""
    conn = getattr(_local, "conns", {}).pop(path, None)
    if conn is not None:
        conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, sync: bool | None = None
                ) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (takes the write lock up front) ... COMMIT, or ROLLBACK on error.

    Inside an open transaction it nests as a SAVEPOINT, so a view's own
    transaction joins the one an idempotent request wraps around it.

    `sync`: sync the log once committed, so the transaction survives a power cut
    (default: when the connection runs FULL). COMMIT itself runs NORMAL and the sync
    follows once the write lock is released: the same sync FULL makes, but the next
    writer need not wait for the disk, and concurrent commits share its flush. The
    after_commit callbacks run first (other threads see a commit at once anyway), so
    the work they start (a spawned agent) overlaps the disk. Nested, `sync` is ignored:
    the outermost transaction decides.
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
    level = conn.synchronous
    sync = level == "FULL" if sync is None else sync
    use_synchronous(conn, "NORMAL")
    try:
        with conn.write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                _pending(conn).clear()
                raise
            conn.execute("COMMIT")
    finally:
        use_synchronous(conn, level)
    callbacks = list(_pending(conn))
    _pending(conn).clear()
    try:
        for callback in callbacks:
            callback()
    finally:
        if sync:
            sync_log(conn)


def sync_log(conn: sqlite3.Connection) -> None:
    """Sync the write-ahead log to disk: what synchronous = FULL does after each commit.
    Any commit whose frames a later checkpoint moved on was synced by that checkpoint."""
    fd = os.open(conn.wal_path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def returning(conn: sqlite3.Connection, sql: str, params) -> sqlite3.Row | None:
    """The row a statement with RETURNING gives, if any (read to its end, so the
    statement is done before the transaction goes on)."""
    rows = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None


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

"""database.durability: commits that answer someone survive a power cut (PRAGMA
synchronous = FULL) unless the owner chose crash-only (NORMAL); the service's own
threads commit NORMAL, except a provider call's in-flight record."""
from __future__ import annotations

import sys
import threading

import pytest

from j1msky.config import ConfigError, validate_config
from j1msky.db import after_commit, connection_for, get_db, transaction
from j1msky.services import catalog, runner
from tests.helpers import configure

FULL, NORMAL = 2, 1  # what PRAGMA synchronous reads back
SYNC = "sync log"
_recording = threading.local()


def _audit(event: str, args: tuple) -> None:
    """db.sync_log opens the -wal file to sync it (SQLite's own opens are not audited)."""
    log = getattr(_recording, "log", None)
    if log is not None and event == "open" and str(args[0]).endswith("-wal"):
        log.append(SYNC + (" under the write lock" if _recording.lock.locked() else ""))


sys.addaudithook(_audit)  # hooks cannot be removed: this one records only when asked


def recorded(conn, work):
    """work()'s SQL statements on conn and its log syncs, in order (on this thread)."""
    log = _recording.log = []
    _recording.lock = conn.write_lock
    conn.set_trace_callback(log.append)
    try:
        work()
    finally:
        conn.set_trace_callback(None)
        del _recording.log
    return log


def on_a_thread(work):
    """Run work() on a new thread (not the main one, as gunicorn's request threads)."""
    result = {}

    def target():
        try:
            result["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    if "error" in result:
        raise result["error"]
    return result["value"]


def level(conn) -> int:
    return conn.execute("PRAGMA synchronous").fetchone()[0]


def spawn_and_read_level(app, client, key, **headers):
    """Spawn on a request thread, then read the level of that thread's connection."""
    def work():
        response = client.post("/api/spawn", json={"model": "k2p5", "task": "durable?"},
                               headers={**key.headers, **headers})
        assert response.status_code == 202, response.json
        return level(connection_for(app.config["DATABASE"]))
    return on_a_thread(work)


def test_the_default_is_power_cut_durability(example_config):
    assert example_config["database"]["durability"] == "power_cut"


@pytest.mark.parametrize("durability, expected", [("power_cut", FULL), ("crash", NORMAL)])
def test_a_request_threads_connection_commits_at_the_configured_level(
        app, client, admin, durability, expected):
    configure(app, database={"durability": durability})
    assert spawn_and_read_level(app, client, admin) == expected
    # The idempotency mark commits crash-safe in between, and the level comes back.
    assert spawn_and_read_level(app, client, admin, **{"Idempotency-Key": "k1"}) == expected


def test_the_level_follows_a_config_change_without_a_restart(app, client, admin):
    assert spawn_and_read_level(app, client, admin) == FULL
    configure(app, database={"durability": "crash"})
    assert spawn_and_read_level(app, client, admin) == NORMAL


def test_background_threads_commit_crash_safe(app):
    def work():
        with app.app_context():
            return level(get_db())
    assert on_a_thread(work) == NORMAL


def test_the_command_line_commits_at_the_configured_level(app):
    """The CLI runs on the main thread, in an app context only."""
    with app.app_context():
        assert level(get_db()) == FULL


def test_a_durable_transaction_syncs_the_log_after_commit_and_releasing_the_lock(app):
    """On a FULL connection COMMIT runs NORMAL, under the write lock, and the log is
    synced once the lock is free; the connection is FULL again for lone statements."""
    with app.app_context():
        conn = get_db()

        def work():
            with transaction(conn):
                conn.execute("INSERT INTO seen_signatures (signature_hash, seen_at)"
                             " VALUES ('a', 'b')")

        log = recorded(conn, work)
    assert log[:2] == ["PRAGMA synchronous = NORMAL", "BEGIN IMMEDIATE"]
    assert log[-3:] == ["COMMIT", "PRAGMA synchronous = FULL", SYNC]
    assert level(conn) == FULL


def test_work_started_after_commit_overlaps_the_sync_which_happens_regardless(app):
    """after_commit callbacks (say, handing a spawned agent to the runner) run before
    the log sync, and a failing one does not skip it."""
    with app.app_context():
        conn = get_db()

        def work(fail: bool):
            def callback():
                _recording.log.append("callback")
                if fail:
                    raise RuntimeError("callback failed")
            with transaction(conn):
                conn.execute("INSERT INTO seen_signatures (signature_hash, seen_at)"
                             " VALUES (?, 'b')", (str(fail),))
                after_commit(conn, callback)

        assert recorded(conn, lambda: work(False))[-2:] == ["callback", SYNC]
        log = []

        def failing():
            with pytest.raises(RuntimeError):
                work(True)
            log.extend(_recording.log)
        recorded(conn, failing)
    assert log[-2:] == ["callback", SYNC]


@pytest.mark.parametrize("durability, syncs", [("power_cut", 1), ("crash", 0)])
def test_an_idempotent_spawn_syncs_once_for_its_answer_not_for_its_mark(
        app, client, admin, durability, syncs):
    configure(app, database={"durability": durability})

    def work():
        conn = connection_for(app.config["DATABASE"])
        log = recorded(conn, lambda: client.post(
            "/api/spawn", json={"model": "k2p5", "task": "once"},
            headers={**admin.headers, "Idempotency-Key": "sync-once"}))
        return log
    log = on_a_thread(work)
    assert log.count(SYNC) == syncs
    assert log.count("COMMIT") == 2  # the mark, then the agent with its stored answer
    if syncs:
        assert log.index(SYNC) > [i for i, s in enumerate(log) if s == "COMMIT"][-1]


@pytest.mark.parametrize("durability, syncs", [("power_cut", 1), ("crash", 0)])
def test_a_provider_calls_in_flight_record_is_synced_before_it_is_sent(
        app, upstream, durability, syncs):
    """On a runner thread (NORMAL), the record of a call about to be sent is synced in
    power_cut mode; the thread stays NORMAL."""
    configure(app, database={"durability": durability})

    def work():
        with app.app_context():
            config = app.extensions["j1msky_config"].get()
            conn = get_db()
            log = recorded(conn, lambda: runner.open_call(
                conn, config, runner.Call("subagent_1_000001", 0, "hi", None), "k2p5",
                catalog.route(config, "k2p5")))
            return log, level(conn)

    log, after = on_a_thread(work)
    assert any(s.startswith("INSERT INTO calls_in_flight") for s in log)
    assert log.count(SYNC) == syncs
    assert log[-1] == (SYNC if syncs else "COMMIT")
    assert after == NORMAL


def test_an_unknown_durability_is_refused_by_name():
    with pytest.raises(ConfigError, match="database.durability"):
        validate_config({"database": {"durability": "fast"}})

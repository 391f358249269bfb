"""database.durability: commits that answer someone survive a power cut (PRAGMA
synchronous = FULL) unless the owner chose crash-only (NORMAL); the service's own
threads commit NORMAL, except a provider call's in-flight record."""
from __future__ import annotations

import threading

import pytest

from j1msky.config import ConfigError, validate_config
from j1msky.db import connection_for, get_db
from j1msky.services import catalog, runner
from tests.helpers import configure

FULL, NORMAL = 2, 1  # what PRAGMA synchronous reads back


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


@pytest.mark.parametrize("durability, expected", [("power_cut", "FULL"), ("crash", "NORMAL")])
def test_a_provider_calls_in_flight_record_commits_at_the_configured_level(
        app, upstream, durability, expected):
    """On a runner thread (NORMAL), the record of a call about to be sent commits at the
    durable level, and the thread goes back to NORMAL."""
    configure(app, database={"durability": durability})

    def work():
        with app.app_context():
            config = app.extensions["j1msky_config"].get()
            conn = get_db()
            statements = []
            conn.set_trace_callback(statements.append)
            try:
                runner.open_call(conn, config, runner.Call("subagent_1_000001", 0, "hi", None),
                                 "k2p5", catalog.route(config, "k2p5"))
            finally:
                conn.set_trace_callback(None)
            return statements, level(conn)

    statements, after = on_a_thread(work)
    pragmas = [s for s in statements if s.startswith("PRAGMA synchronous")]
    if expected == "NORMAL":
        assert pragmas == []  # already NORMAL: nothing to switch
    else:
        assert statements[0] == "PRAGMA synchronous = FULL"
        assert statements[1] == "BEGIN IMMEDIATE"
        assert any(s.startswith("INSERT INTO calls_in_flight") for s in statements)
        assert statements[-2:] == ["COMMIT", "PRAGMA synchronous = NORMAL"]
    assert after == NORMAL


def test_an_unknown_durability_is_refused_by_name():
    with pytest.raises(ConfigError, match="database.durability"):
        validate_config({"database": {"durability": "fast"}})

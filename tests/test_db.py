"""SQLite layer: pragmas, per-thread connections, in-place upgrades."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from j1msky import create_app, db

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_KEY = "live_sk_v1fixturekeyv1fixturekeyv1fixture"


def schema_of(path) -> dict:
    """Every table's columns, every index's columns (comments and spacing aside) and every
    trigger's text."""
    conn = sqlite3.connect(path)
    try:
        objects = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL")
        return {(kind, name): sql if kind == "trigger" else conn.execute(
            f"PRAGMA {'table_xinfo' if kind == 'table' else 'index_xinfo'}('{name}')").fetchall()
            for kind, name, sql in objects.fetchall()}
    finally:
        conn.close()


def test_connection_uses_wal_busy_timeout_and_foreign_keys(app):
    with app.app_context():
        conn = db.get_db()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == db.schema_version()


def test_each_thread_gets_its_own_connection(app):
    seen = []

    def grab():
        with app.app_context():
            seen.append(db.get_db())

    threads = [threading.Thread(target=grab) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with app.app_context():
        seen.append(db.get_db())
        assert db.get_db() is seen[-1]
    assert len({id(c) for c in seen}) == 3


def test_version_1_database_upgrades_in_place_keeping_its_data(tmp_path, client_for):
    instance = tmp_path / "old"
    instance.mkdir()
    conn = sqlite3.connect(instance / "j1msky.sqlite3")
    conn.executescript((FIXTURES / "schema_v1.sql").read_text())
    conn.close()

    client = client_for(instance)
    response = client.get("/api/agents", headers={"Authorization": f"Bearer {FIXTURE_KEY}"})
    assert response.status_code == 200, response.json
    assert response.json["data"] == []
    conn = sqlite3.connect(instance / "j1msky.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.schema_version()
    assert conn.execute("SELECT name FROM api_keys").fetchall() == [("from v1",)]
    conn.close()


def test_upgraded_schema_equals_a_fresh_one(tmp_path, client_for):
    old, fresh = tmp_path / "old", tmp_path / "fresh"
    old.mkdir()
    fresh.mkdir()
    conn = sqlite3.connect(old / "j1msky.sqlite3")
    conn.executescript((FIXTURES / "schema_v1.sql").read_text())
    conn.close()
    client_for(old)
    client_for(fresh)
    assert schema_of(old / "j1msky.sqlite3") == schema_of(fresh / "j1msky.sqlite3")


def test_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "j1msky.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {db.schema_version() + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        create_app({"INSTANCE_PATH": str(tmp_path)})
    db.forget(str(path))


def test_failed_migration_leaves_the_old_version(tmp_path):
    path = str(tmp_path / "broken.sqlite3")
    conn = db.connect(path)
    conn.executescript("CREATE TABLE agents (x); PRAGMA user_version = 1;")
    with pytest.raises(sqlite3.Error):
        db.migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'idempotency_keys'"
                        ).fetchone()[0] == 0
    conn.close()


@pytest.mark.parametrize("sql, index", [
    ("SELECT count(*) FROM agents WHERE team = 'review'", "agents_team_created"),
    ("SELECT sum(actual_micros) FROM agents WHERE key_id = 'k' AND completed_at >= '2026'",
     "agents_key_completed"),
    ("SELECT count(*) FROM agents WHERE completed_at >= '2026'", "agents_completed"),
])
def test_the_partial_indexes_still_serve_their_queries(app, sql, index):
    """team and completed_at are indexed only where they are not NULL (fewer writes per
    admission); the queries that use them imply NOT NULL, so SQLite still picks them."""
    with app.app_context():
        plan = " | ".join(row[3] for row in db.get_db().execute("EXPLAIN QUERY PLAN " + sql))
    assert f"USING COVERING INDEX {index}" in plan or f"USING INDEX {index}" in plan, plan

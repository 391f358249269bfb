"""GET /api/agents: filters, operators, shorthands, sort, offset and cursor pages, meta."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from j1msky import db
from j1msky.cli import cli
from j1msky.db import connection_for, transaction
from j1msky.services import clock
from tests.helpers import wait_settled

MODELS = ("k2p5", "sonnet", "opus")
STATUSES = ("completed", "failed", "cancelled", "running", "spawning")


@pytest.fixture
def seeded(app, admin):
    """60 agents with known fields, inserted directly."""
    conn = connection_for(app.config["DATABASE"])
    rows = []
    for i in range(60):
        rows.append((f"subagent_1700000000_{i:06d}", admin.key_id, MODELS[i % 3],
                     "team_coding" if i % 4 == 0 else None, STATUSES[i % 5], f"task {i}",
                     "normal", 300, f"2026-02-{1 + i % 28:02d}T10:00:{i:02d}.000000Z",
                     i * 10_000, i * 5_000))
    with transaction(conn):
        conn.executemany(
            "INSERT INTO agents (agent_id, key_id, model, team, status, task, priority, timeout,"
            " created_at, estimated_micros, actual_micros) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    return [dict(zip(("agent_id", "model", "team", "status", "created_at", "actual_micros"),
                     (r[0], r[2], r[3], r[4], r[8], r[10]), strict=True)) for r in rows]


def get(client, key, **params):
    return client.get("/api/agents?" + urlencode(params), headers=key.headers)


def ids(response) -> list[str]:
    assert response.status_code == 200, response.json
    return [a["agent_id"] for a in response.json["data"]]


def test_default_page_is_20_newest_first_with_documented_blocks(client, admin, seeded):
    response = get(client, admin)
    body = response.json
    expected = sorted(seeded, key=lambda a: (a["created_at"], a["agent_id"]), reverse=True)
    assert ids(response) == [a["agent_id"] for a in expected[:20]]
    assert body["pagination"]["total"] == 60
    assert body["pagination"]["limit"] == 20 and body["pagination"]["offset"] == 0
    assert body["pagination"]["has_more"] is True and body["pagination"]["next_offset"] == 20
    assert body["links"]["next"] == "/api/agents?offset=20"
    assert body["links"]["last"] == "/api/agents?offset=40"
    assert body["meta"]["total_cost"] == round(sum(a["actual_micros"] for a in seeded) / 1e6, 6)
    assert body["meta"]["by_model"] == {"k2p5": 20, "sonnet": 20, "opus": 20}
    agent = body["data"][0]
    assert set(agent) >= {"agent_id", "model", "status", "task", "team", "created_at",
                          "started_at", "estimated_cost", "actual_cost"}


@pytest.mark.parametrize("params, predicate", [
    ({"status": "running"}, lambda a: a["status"] == "running"),
    ({"model": "k2p5", "status": "completed"},
     lambda a: a["model"] == "k2p5" and a["status"] == "completed"),
    ({"team": "team_coding"}, lambda a: a["team"] == "team_coding"),
    ({"created_after": "2026-02-20"}, lambda a: a["created_at"] > "2026-02-20"),
    ({"cost_gt": "0.2"}, lambda a: a["actual_micros"] > 200_000),
    ({"filter": json.dumps({"status": "running", "model": "k2p5"})},
     lambda a: a["status"] == "running" and a["model"] == "k2p5"),
    ({"filter": json.dumps({"created_after": "2026-02-01", "cost_gt": 0.25})},
     lambda a: a["created_at"] > "2026-02-01" and a["actual_micros"] > 250_000),
    ({"filter": json.dumps({"model": {"ne": "opus"}})}, lambda a: a["model"] != "opus"),
    ({"filter": json.dumps({"cost": {"gte": 0.1, "lte": 0.2}})},
     lambda a: 100_000 <= a["actual_micros"] <= 200_000),
    ({"filter": json.dumps({"cost": {"lt": 0.05}})}, lambda a: a["actual_micros"] < 50_000),
    ({"filter": json.dumps({"status": {"in": ["failed", "cancelled"]}})},
     lambda a: a["status"] in ("failed", "cancelled")),
    ({"filter": json.dumps({"agent_id": {"ends_with": "_000007"}})},
     lambda a: a["agent_id"].endswith("_000007")),
    ({"filter": json.dumps({"agent_id": {"starts_with": "subagent_1700000000_00001"}})},
     lambda a: a["agent_id"].startswith("subagent_1700000000_00001")),
    ({"filter": json.dumps({"task": {"contains": "task 1"}})}, None),
])
def test_filters_return_exactly_the_matching_agents(client, admin, seeded, params, predicate):
    response = get(client, admin, limit=100, **params)
    if predicate is None:  # task isn't in the seeded summary: check the text itself
        assert all("task 1" in a["task"] for a in response.json["data"])
        assert len(response.json["data"]) == 11
        return
    assert set(ids(response)) == {a["agent_id"] for a in seeded if predicate(a)}
    assert response.json["pagination"]["total"] == len(ids(response))


@pytest.mark.parametrize("sort, key, reverse", [
    ("created_at", lambda a: (a["created_at"], a["agent_id"]), False),
    ("-cost", lambda a: (a["actual_micros"], a["agent_id"]), True),
    ("status", lambda a: (a["status"], a["agent_id"]), False),
])
def test_sort(client, admin, seeded, sort, key, reverse):
    expected = [a["agent_id"] for a in sorted(seeded, key=key, reverse=reverse)]
    assert ids(get(client, admin, sort=sort, limit=100)) == expected


def test_cursor_pages_cover_everything_once(client, admin, seeded):
    seen, cursor = [], None
    first = get(client, admin, limit=7, status="completed")
    cursor = first.json["pagination"]["next_cursor"]
    seen += ids(first)
    while cursor:
        page = get(client, admin, limit=7, status="completed", cursor=cursor)
        seen += ids(page)
        cursor = page.json["pagination"]["cursor"]
    expected = sorted((a for a in seeded if a["status"] == "completed"),
                      key=lambda a: (a["created_at"], a["agent_id"]), reverse=True)
    assert seen == [a["agent_id"] for a in expected]


def test_a_cursor_with_another_filter_is_refused(client, admin, seeded):
    cursor = get(client, admin, limit=5).json["pagination"]["next_cursor"]
    response = get(client, admin, limit=5, cursor=cursor, model="opus")
    assert response.status_code == 400
    assert "cursor" in response.json["error"]["message"].lower()


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"offset": "-1"},
    {"filter": "{not json"}, {"filter": "[1, 2]"},
    {"filter": json.dumps({"colour": "red"})},
    {"filter": json.dumps({"status": {"like": "run%"}})},
    {"filter": json.dumps({"cost": {"gt": "cheap"}})},
    {"filter": json.dumps({"created_at": {"gt": "last tuesday"}})},
    {"filter": json.dumps({"status": {"in": []}})},
    {"filter": json.dumps({"cost": True})},
    {"sort": "colour"}, {"sort": "created_at; DROP TABLE agents"}, {"sort": "task"},
    {"cursor": "garbage!!"}, {"statuss": "running"}, {"cost_gt": "lots"},
])
def test_bad_list_arguments_are_400_and_harmless(client, app, admin, seeded, params):
    response = get(client, admin, **params)
    assert response.status_code == 400
    error = response.json["error"]
    assert error["message"] and error["details"] and error["code"] == 400
    conn = sqlite3.connect(app.config["DATABASE"])
    assert conn.execute("SELECT count(*) FROM agents").fetchone()[0] == 60
    conn.close()


def test_limit_bounds_are_documented(client, admin, seeded):
    assert get(client, admin, limit="0").json["error"]["message"] == \
        "limit must be between 1 and 100"
    assert len(ids(get(client, admin, limit=100))) == 60
    assert len(ids(get(client, admin, limit=1))) == 1


# meta and pagination.total from the running totals (table agent_totals) -------------------

# Filters the running totals answer (only status and model), and one they cannot.
META_FILTERS = [
    ({}, lambda a: True),
    ({"status": "cancelled"}, lambda a: a["status"] == "cancelled"),
    ({"model": "opus"}, lambda a: a["model"] == "opus"),
    ({"filter": json.dumps({"status": {"in": ["completed", "failed"]}, "model": {"ne": "k2p5"}})},
     lambda a: a["status"] in ("completed", "failed") and a["model"] != "k2p5"),
    ({"filter": json.dumps({"model": {"starts_with": "s"}})}, lambda a: a["model"][0] == "s"),
    ({"cost_gt": "0"}, lambda a: a["actual_micros"] > 0),
]


def stored_state(app) -> tuple[list[dict], list[tuple], list[tuple]]:
    """(status, model, actual_micros) of every agent, the running totals, and a count of
    the agents table by status and model, read on a connection of its own."""
    conn = sqlite3.connect(app.config["DATABASE"])
    conn.row_factory = sqlite3.Row
    try:
        stored = [dict(r) for r in conn.execute("SELECT status, model, actual_micros FROM agents"
                                                 " ORDER BY id")]
        totals = [tuple(r) for r in conn.execute(
            "SELECT status, model, agents, actual_micros FROM agent_totals WHERE agents > 0"
            " ORDER BY 1, 2")]
        counted = [tuple(r) for r in conn.execute(
            "SELECT status, model, count(*), sum(actual_micros) FROM agents GROUP BY 1, 2"
            " ORDER BY 1, 2")]
    finally:
        conn.close()
    return stored, totals, counted


def assert_meta_agrees_with_the_rows(client, app, key) -> None:
    """Every META_FILTERS list's meta and total equal the same sums over the stored rows,
    and the running totals equal a count of the agents table. Agents still running change
    the rows: the lists are compared once the rows were the same before and after them."""
    for _ in range(100):
        state = stored_state(app)
        bodies = [get(client, key, **params).json for params, _ in META_FILTERS]
        if stored_state(app) == state:
            break
    stored, totals, counted = state
    assert totals == counted
    for (params, predicate), body in zip(META_FILTERS, bodies, strict=True):
        matching = [a for a in stored if predicate(a)]
        by_model = {}
        for a in matching:
            by_model[a["model"]] = by_model.get(a["model"], 0) + 1
        assert body["pagination"]["total"] == len(matching), params
        assert body["meta"]["by_model"] == dict(sorted(by_model.items())), params
        assert body["meta"]["total_cost"] == \
            round(sum(a["actual_micros"] for a in matching) / 1e6, 6), params


def test_meta_totals_agree_with_the_rows_through_spawns_charges_cancels_and_erasure(
        upstream, client, app, admin, start_runner, cli_runner):
    upstream.set("anthropic", latency=0.6, input_tokens=1000, output_tokens=2000)
    spawned = [client.post("/api/spawn", headers=admin.headers,
                           json={"model": model, "task": f"meta {i}", "privacy":
                                 {"retention_days": 1} if i % 2 else {}}).json["agent_id"]
               for i, model in enumerate(["k2p5", "sonnet", "opus", "k2p5", "opus"])]
    assert_meta_agrees_with_the_rows(client, app, admin)              # all waiting
    cancelled_waiting = spawned.pop()
    client.delete(f"/api/agent/{cancelled_waiting}", headers=admin.headers)
    start_runner()
    deadline = time.monotonic() + 10
    while not any(r["json"]["model"] == "claude-opus-4-6" for r in upstream.requests()):
        assert time.monotonic() < deadline, "the opus call never reached the upstream"
        time.sleep(0.01)
    assert_meta_agrees_with_the_rows(client, app, admin)              # some running
    cancel = client.delete(f"/api/agent/{spawned[2]}", headers=admin.headers).json
    assert cancel["pending_charge"] > 0                               # its call still out
    assert_meta_agrees_with_the_rows(client, app, admin)
    wait_settled(app.config["DATABASE"])
    late = client.get(f"/api/agent/{spawned[2]}", headers=admin.headers).json
    assert late["status"] == "cancelled" and late["actual_cost"] > 0  # charged after its cancel
    assert_meta_agrees_with_the_rows(client, app, admin)              # completed, late charge
    assert client.delete(f"/api/agent/{spawned[0]}/data", headers=admin.headers).status_code == 200
    later = clock.now() + dt.timedelta(days=2)
    clock.set_clock(lambda: later)
    assert "agent_data: 2" in cli_runner.invoke(cli, ["purge"]).output
    assert_meta_agrees_with_the_rows(client, app, admin)              # erased and purged


def test_meta_totals_count_agents_stored_before_the_upgrade(tmp_path):
    """Migration 10 fills the running totals from the agents already stored."""
    path = str(tmp_path / "j1msky.sqlite3")
    conn = db.connect(path)
    conn.executescript((Path(__file__).parent / "fixtures" / "schema_v1.sql").read_text())
    for version, sql in sorted(db.migrations().items()):
        if version < 10:
            conn.executescript(f"{sql}\nPRAGMA user_version = {version};")
    conn.executescript(
        "INSERT INTO agents (agent_id, model, status, priority, timeout, created_at,"
        " actual_micros) VALUES ('subagent_1_1', 'opus', 'completed', 'normal', 300,"
        " '2026-01-01T00:00:00.000000Z', 1500), ('subagent_1_2', 'opus', 'failed', 'normal',"
        " 300, '2026-01-01T00:00:01.000000Z', 20);")
    assert db.migrate(conn) == db.schema_version()
    totals = conn.execute("SELECT status, model, agents, actual_micros FROM agent_totals"
                          " ORDER BY status").fetchall()
    assert [tuple(r) for r in totals] == [("completed", "opus", 1, 1500), ("failed", "opus", 1, 20)]
    conn.close()

"""GET /api/agents: filters, operators, shorthands, sort, offset and cursor pages, meta."""
from __future__ import annotations

import json
import sqlite3
from urllib.parse import urlencode

import pytest

from j1msky.db import connection_for, transaction

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

"""services/pagination.py against a real SQLite table, checked by plain Python."""
from __future__ import annotations

import base64
import json
import random
import sqlite3
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from j1msky.services.pagination import (
    Field,
    ListError,
    ListQuery,
    build_page,
    parse_list_args,
)

FIELDS = {
    "id": Field("id", "int", nullable=False),
    "agent_id": Field("agent_id", "str", nullable=False),
    "status": Field("status", "str", nullable=False),
    "model": Field("model", "str", nullable=False),
    "team": Field("team", "str"),
    "created_at": Field("created_at", "time", nullable=False),
    "cost": Field("actual_micros", "money"),
    "cost_micros": Field("actual_micros", "int", sortable=False),
    "cost_micros_f": Field("actual_micros", "float", sortable=False),
    "task": Field("task", "str", sortable=False),
}
SHORTHANDS = {
    "status": ("status", "eq"),
    "model": ("model", "eq"),
    "team": ("team", "eq"),
    "created_after": ("created_at", "gt"),
    "created_before": ("created_at", "lt"),
    "cost_gt": ("cost", "gt"),
    "cost_lt": ("cost", "lt"),
}
SORTABLE = [name for name, f in FIELDS.items() if f.sortable]
TASKS = [
    "Write blog post", "write a REPORT", "Summarise 100% of logs", "fix bug_42 now",
    "copy C:\\temp\\x", "Research market_size.", "Translate text.", "Draft 50% off mail",
]
SCHEMA = """CREATE TABLE agents (
    id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
    model TEXT NOT NULL, team TEXT, created_at TEXT NOT NULL,
    actual_micros INTEGER, task TEXT NOT NULL)"""
START = datetime(2026, 2, 1)


def make_rows(count: int, seed: int = 7) -> list[dict]:
    """Agent-like rows with many ties in every sort column and some NULLs."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, count + 1):
        moment = START + timedelta(hours=12 * rng.randrange(60))
        rows.append({
            "id": i,
            "agent_id": f"subagent_{rng.randrange(10**9):09d}_{i}",
            "status": rng.choice(["spawning", "running", "completed", "failed"]),
            "model": rng.choice(["k2p5", "sonnet", "opus"]),
            "team": rng.choice([None, "team_coding", "team_creative", "team_research"]),
            "created_at": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actual_micros": None if rng.random() < 0.25 else rng.randrange(21) * 100_000,
            "task": rng.choice(TASKS),
        })
    return rows


def make_db(rows: list[dict]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute(SCHEMA)
    db.executemany(
        "INSERT INTO agents VALUES (:id, :agent_id, :status, :model, :team,"
        " :created_at, :actual_micros, :task)", rows)
    return db


ROWS = make_rows(300)


@pytest.fixture
def db() -> sqlite3.Connection:
    conn = make_db(ROWS)
    yield conn
    conn.close()


def parse(args: dict, **kwargs) -> ListQuery:
    return parse_list_args(args, FIELDS, shorthands=SHORTHANDS, **kwargs)


def matching_ids(db: sqlite3.Connection, args: dict) -> list[int]:
    query = parse(args)
    sql = f"SELECT id FROM agents{query.where_sql} ORDER BY id"
    return [row["id"] for row in db.execute(sql, query.params)]


def fetch_page(db: sqlite3.Connection, args: dict, **kwargs) -> tuple[list, dict, dict]:
    query = parse(args, **kwargs)
    rows = db.execute(*query.page_sql("agents")).fetchall()
    total = None if query.feed else db.execute(*query.count_sql("agents")).fetchone()[0]
    return build_page(rows, query, total=total, base_path="/agents", args=args)


def column_of(name: str) -> str:
    return FIELDS[name].column


def python_order(rows: list[dict], name: str, desc: bool) -> list[int]:
    """SQLite order: NULLs first ascending, last descending; ties by id."""
    column = column_of(name)
    blank = 0 if column in ("id", "actual_micros") else ""

    def key(row: dict) -> tuple:
        value = row[column]
        return (value is not None, blank if value is None else value, row["id"])

    return [row["id"] for row in sorted(rows, key=key, reverse=desc)]


def ids(predicate) -> list[int]:
    return [row["id"] for row in ROWS if predicate(row)]


def micros(row: dict) -> int | None:
    return row["actual_micros"]


def has_cost(row: dict) -> bool:
    return row["actual_micros"] is not None


def f(obj: object) -> dict:
    return {"filter": json.dumps(obj)}


VALID_FILTERS = [
    (f({"status": "running"}), lambda r: r["status"] == "running"),
    (f({"status": {"eq": "failed"}}), lambda r: r["status"] == "failed"),
    (f({"status": {"ne": "running"}}), lambda r: r["status"] != "running"),
    (f({"team": {"ne": "team_coding"}}), lambda r: r["team"] != "team_coding"),
    (f({"cost": {"gt": 0.5}}), lambda r: has_cost(r) and micros(r) > 500_000),
    (f({"cost": {"gte": 0.5}}), lambda r: has_cost(r) and micros(r) >= 500_000),
    (f({"cost": {"lt": 0.3}}), lambda r: has_cost(r) and micros(r) < 300_000),
    (f({"cost": {"lte": 0.3}}), lambda r: has_cost(r) and micros(r) <= 300_000),
    (f({"cost": {"gt": 0.2, "lte": 1}}),
     lambda r: has_cost(r) and 200_000 < micros(r) <= 1_000_000),
    (f({"cost": 0}), lambda r: micros(r) == 0),
    (f({"cost": {"in": [0.5, 1.0]}}), lambda r: micros(r) in (500_000, 1_000_000)),
    (f({"cost_micros": {"gte": 1_500_000}}),
     lambda r: has_cost(r) and micros(r) >= 1_500_000),
    (f({"cost_micros_f": {"lt": 200_000.5}}),
     lambda r: has_cost(r) and micros(r) < 200_000.5),
    (f({"model": {"in": ["k2p5", "opus"]}}), lambda r: r["model"] in ("k2p5", "opus")),
    (f({"created_at": {"gt": "2026-02-10"}}),
     lambda r: r["created_at"] > "2026-02-10T00:00:00.000000Z"),
    (f({"created_at": {"gte": "2026-02-10T12:00:00+02:00"}}),
     lambda r: r["created_at"] >= "2026-02-10T10:00:00.000000Z"),
    (f({"created_at": "2026-02-05T12:00:00Z"}),
     lambda r: r["created_at"] == "2026-02-05T12:00:00.000000Z"),
    (f({"created_at": {"lte": "2026-02-03 00:00"}}),
     lambda r: r["created_at"] <= "2026-02-03T00:00:00.000000Z"),
    # SQLite LIKE ignores ASCII case
    (f({"task": {"contains": "report"}}), lambda r: "report" in r["task"].lower()),
    (f({"task": {"contains": "%"}}), lambda r: "%" in r["task"]),
    (f({"task": {"contains": "_"}}), lambda r: "_" in r["task"]),
    (f({"task": {"contains": "\\temp"}}), lambda r: "\\temp" in r["task"]),
    (f({"task": {"starts_with": "write"}}), lambda r: r["task"].lower().startswith("write")),
    (f({"task": {"ends_with": "."}}), lambda r: r["task"].endswith(".")),
    (f({"task": {"ends_with": "_size."}}), lambda r: r["task"].endswith("_size.")),
    (f({"status": "running", "model": "k2p5"}),
     lambda r: r["status"] == "running" and r["model"] == "k2p5"),
    (f({"created_after": "2026-02-01", "cost_gt": 0.50}),
     lambda r: r["created_at"] > "2026-02-01T00:00:00.000000Z"
     and has_cost(r) and micros(r) > 500_000),
    ({"status": "running"}, lambda r: r["status"] == "running"),
    ({"model": "k2p5", "team": "team_coding"},
     lambda r: r["model"] == "k2p5" and r["team"] == "team_coding"),
    ({"created_after": "2026-02-20"}, lambda r: r["created_at"] > "2026-02-20T00:00:00.000000Z"),
    ({"created_before": "2026-02-05T06:00:00Z"},
     lambda r: r["created_at"] < "2026-02-05T06:00:00.000000Z"),
    ({"cost_gt": "1.00"}, lambda r: has_cost(r) and micros(r) > 1_000_000),
    ({"cost_lt": ".25"}, lambda r: has_cost(r) and micros(r) < 250_000),
    ({"status": "running", **f({"cost": {"gte": 1}})},
     lambda r: r["status"] == "running" and has_cost(r) and micros(r) >= 1_000_000),
    ({"status": "", "limit": "", "sort": ""}, lambda r: True),  # empty means absent
]


@pytest.mark.parametrize(("args", "predicate"), VALID_FILTERS)
def test_filter_selects_exactly_the_matching_rows(db, args, predicate):
    expected = ids(predicate)
    assert expected, "each case should select something"
    assert matching_ids(db, args) == expected


def test_test_data_has_ties_nulls_and_every_value():
    assert len({r["created_at"] for r in ROWS}) < 100
    assert sum(r["actual_micros"] is None for r in ROWS) > 30
    assert sum(r["team"] is None for r in ROWS) > 30


@pytest.mark.parametrize("desc", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("name", SORTABLE)
def test_first_page_follows_sort_with_id_tiebreak(db, name, desc):
    sort = f"-{name}" if desc else name
    page, pagination, _ = fetch_page(db, {"sort": sort, "limit": "25"})
    assert [row["id"] for row in page] == python_order(ROWS, name, desc)[:25]
    assert pagination["has_more"] is True
    assert pagination["total"] == 300


def walk_by_cursor(db: sqlite3.Connection, args: dict) -> list[int]:
    """First page by offset, then every further page by the returned cursor."""
    seen, cursor = [], None
    for _ in range(400):
        page_args = dict(args, cursor=cursor) if cursor else args
        page, pagination, _ = fetch_page(db, page_args)
        seen += [row["id"] for row in page]
        cursor = pagination["cursor"] if cursor else pagination["next_cursor"]
        if not pagination["has_more"]:
            assert cursor is None
            return seen
    raise AssertionError("cursor walk did not end")


def walk_by_links(db: sqlite3.Connection, args: dict) -> list[int]:
    seen, url = [], None
    for _ in range(400):
        page_args = dict(parse_qsl(urlsplit(url).query)) if url else args
        page, _, links = fetch_page(db, page_args)
        seen += [row["id"] for row in page]
        url = links["next"]
        if url is None:
            return seen
    raise AssertionError("offset walk did not end")


@pytest.mark.parametrize("desc", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("name", SORTABLE)
def test_walking_all_pages_yields_every_row_once_in_order(db, name, desc):
    args = {"sort": f"-{name}" if desc else name, "limit": "7"}
    expected = python_order(ROWS, name, desc)
    assert walk_by_cursor(db, args) == expected
    assert walk_by_links(db, args) == expected


@pytest.mark.parametrize("sort", ["-cost", "cost", "team", "-created_at"])
def test_walking_a_filtered_list_by_cursor_and_offset(db, sort):
    args = {"model": "k2p5", "sort": sort, "limit": "4", **f({"cost": {"lt": 1.5}})}
    wanted = {r["id"] for r in ROWS if r["model"] == "k2p5"
              and has_cost(r) and micros(r) < 1_500_000}
    expected = [i for i in python_order(ROWS, sort.lstrip("-"), sort[0] == "-")
                if i in wanted]
    assert walk_by_cursor(db, args) == expected
    assert walk_by_links(db, args) == expected


def test_offset_page_blocks_match_the_documented_shape(db):
    page, pagination, links = fetch_page(db, {"limit": "20", "offset": "40"})
    assert len(page) == 20
    assert pagination == {
        "total": 300, "limit": 20, "offset": 40, "has_more": True,
        "next_offset": 60, "previous_offset": 20,
        "next_cursor": pagination["next_cursor"],
    }
    assert pagination["next_cursor"]
    assert links == {
        "self": "/agents?limit=20&offset=40",
        "next": "/agents?limit=20&offset=60",
        "prev": "/agents?limit=20&offset=20",
        "first": "/agents?limit=20&offset=0",
        "last": "/agents?limit=20&offset=280",
    }


def test_first_and_last_offset_pages_have_no_prev_or_next(db):
    _, first, first_links = fetch_page(db, {"status": "running"})
    assert first["previous_offset"] is None and first_links["prev"] is None
    assert first_links["self"] == "/agents?status=running"
    total = first["total"]
    assert total == len(ids(lambda r: r["status"] == "running"))
    last_offset = (total - 1) // 20 * 20
    assert first_links["last"] == f"/agents?status=running&offset={last_offset}"
    page, last, links = fetch_page(db, {"status": "running", "offset": str(last_offset)})
    assert len(page) == total - last_offset
    assert last["has_more"] is False and last["next_offset"] is None
    assert last["next_cursor"] is None and links["next"] is None


def test_cursor_page_blocks(db):
    _, first, _ = fetch_page(db, {"limit": "5"})
    args = {"limit": "5", "cursor": first["next_cursor"]}
    page, pagination, links = fetch_page(db, args)
    assert [r["id"] for r in page] == python_order(ROWS, "created_at", True)[5:10]
    assert set(pagination) == {"limit", "has_more", "cursor", "total"}
    assert pagination["total"] == 300 and pagination["has_more"] is True
    assert links["prev"] is None and links["last"] is None
    assert links["first"] == "/agents?limit=5"
    assert dict(parse_qsl(urlsplit(links["next"]).query))["cursor"] == pagination["cursor"]


def test_cursor_survives_reordered_filter_and_changed_limit(db):
    _, first, _ = fetch_page(db, f({"status": "running", "model": "k2p5"}))
    cursor = first["next_cursor"]
    for args in (f({"model": "k2p5", "status": "running"}),
                 {"status": "running", **f({"model": "k2p5"}), "limit": "50"}):
        parse(dict(args, cursor=cursor))


def test_explicit_value_readers_build_the_same_cursor(db):
    query = parse({"sort": "cost", "limit": "3"})
    rows = [tuple(r) for r in db.execute(*query.page_sql("agents", "id, actual_micros"))]
    _, pagination, _ = build_page(rows, query, total=None, base_path="/agents", args={},
                                  sort_value_of=lambda r: r[1], id_of=lambda r: r[0])
    _, by_default, _ = fetch_page(db, {"sort": "cost", "limit": "3"})
    assert pagination["next_cursor"] == by_default["next_cursor"]


def test_feed_pages_by_id_and_keeps_a_cursor_to_poll_from(db):
    args, seen, cursor = {"limit": "50"}, [], None
    while True:
        page, pagination, links = fetch_page(
            db, dict(args, cursor=cursor) if cursor else args, feed=True, default_sort="id")
        seen += [row["id"] for row in page]
        assert "total" not in pagination
        cursor = pagination["cursor"]
        if not pagination["has_more"]:
            break
    assert seen == list(range(1, 301))
    assert cursor and links["next"] is None
    page, pagination, _ = fetch_page(db, {"cursor": cursor}, feed=True)
    assert page == [] and pagination["cursor"] == cursor
    new = dict(ROWS[0], id=301, agent_id="subagent_new")
    db.execute("INSERT INTO agents VALUES (:id, :agent_id, :status, :model, :team,"
               " :created_at, :actual_micros, :task)", new)
    page, pagination, _ = fetch_page(db, {"cursor": cursor, "status": "failed"}, feed=True)
    assert [row["id"] for row in page] == ([301] if new["status"] == "failed" else [])


@pytest.mark.parametrize(("args", "message"), [
    ({"sort": "-created_at"}, "always sorted by id"),
    ({"offset": "10"}, "cursor only"),
    ({"cursor": "e30"}, "Invalid cursor"),
])
def test_feed_rejects_sort_offset_and_sorted_cursors(args, message):
    with pytest.raises(ListError, match=message):
        parse(args, feed=True)


def test_time_and_money_values_are_normalised():
    cases = {
        "2026-02-01": "2026-02-01T00:00:00.000000Z",
        "2026-02-01T10:00:00Z": "2026-02-01T10:00:00.000000Z",
        "2026-02-01T10:00:00.5+02:00": "2026-02-01T08:00:00.500000Z",
        "2026-02-01T01:00-0130": "2026-02-01T02:30:00.000000Z",
        "2026-02-01 10:00:00.123456": "2026-02-01T10:00:00.123456Z",
    }
    for given, stored in cases.items():
        assert parse(f({"created_at": given})).params == [stored]
    assert parse(f({"cost": 0.1 + 0.2})).params == [300_000]
    assert parse({"cost_gt": "0.50"}).params == [500_000]
    query = parse(f({"task": {"contains": "50%_off\\"}}))
    assert query.where_sql == " WHERE task LIKE ? ESCAPE '\\'"
    assert query.params == ["%50\\%\\_off\\\\%"]


def test_sql_uses_whitelisted_columns_and_parameters_only():
    query = parse({"team": "x", "sort": "cost", **f({"cost": {"in": [1, 2]}})})
    assert query.where_sql == " WHERE actual_micros IN (?, ?) AND team = ?"
    assert query.params == [1_000_000, 2_000_000, "x"]
    assert query.order_sql == " ORDER BY actual_micros ASC, id ASC"
    assert query.page_sql("agents", "id") == (
        ("SELECT id FROM agents WHERE actual_micros IN (?, ?) AND team = ?"
         " ORDER BY actual_micros ASC, id ASC LIMIT ? OFFSET ?"),
        [1_000_000, 2_000_000, "x", 21, 0])
    assert query.count_sql("agents") == (
        "SELECT count(*) FROM agents WHERE actual_micros IN (?, ?) AND team = ?",
        [1_000_000, 2_000_000, "x"])


@pytest.mark.parametrize("args", [
    {"status": "x'; DROP TABLE agents; --"},
    f({"task": {"contains": "'); DELETE FROM agents; --"}}),
    f({"model": {"in": ["k2p5' OR '1'='1"]}}),
    {"team": "' OR 1=1 --"},
])
def test_injection_in_a_value_is_only_data(db, args):
    page, pagination, _ = fetch_page(db, args)
    assert page == [] and pagination["total"] == 0
    assert db.execute("SELECT count(*) FROM agents").fetchone()[0] == 300


def encode(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


BAD_INPUTS = [
    ({"limit": "0"}, "limit", "limit must be between 1 and 100"),
    ({"limit": "101"}, "limit", "limit must be between 1 and 100"),
    ({"limit": "x"}, "limit", "limit must be between 1 and 100"),
    ({"limit": "2.5"}, "limit", "limit must be between 1 and 100"),
    ({"offset": "-1"}, "offset", "offset must be an integer >= 0"),
    ({"offset": "ten"}, "offset", "offset must be an integer >= 0"),
    ({"offset": "5", "cursor": "abc"}, "offset", "use either offset or cursor, not both"),
    ({"stauts": "running"}, "stauts", "unknown query parameter 'stauts'"),
    ({"filter": "status=running"}, "filter", "filter must be a JSON object"),
    ({"filter": "{"}, "filter", "filter must be a JSON object"),
    ({"filter": "[1, 2]"}, "filter", "filter must be a JSON object"),
    ({"filter": "null"}, "filter", "filter must be a JSON object"),
    ({"filter": "[" * 100_000}, "filter", "filter: JSON nested too deeply (more than 32 levels)"),
    (f({"colour": "red"}), "filter.colour", "unknown filter field 'colour'"),
    (f({"status": {"like": "run%"}}), "filter.status", "unknown operator 'like'"),
    (f({"status": {}}), "filter.status", "needs at least one operator"),
    (f({"status": None}), "filter.status", "filter.status must be a string"),
    (f({"status": 3}), "filter.status", "filter.status must be a string"),
    (f({"status": ["running", "failed"]}), "filter.status", "use in for a list"),
    (f({"status": {"in": []}}), "filter.status", "in needs a non-empty array"),
    (f({"status": {"in": "running"}}), "filter.status", "in needs a non-empty array"),
    (f({"status": {"in": ["x"] * 101}}), "filter.status", "at most 100 values"),
    (f({"model": {"in": ["k2p5", 3]}}), "filter.model", "filter.model must be a string"),
    (f({"cost": "cheap"}), "filter.cost", "filter.cost must be a number"),
    (f({"cost": {"gt": "0.5"}}), "filter.cost", "filter.cost must be a number"),
    (f({"cost": True}), "filter.cost", "filter.cost must be a number"),
    (f({"cost": {"gt": [1]}}), "filter.cost", "needs a single value"),
    ({"filter": '{"cost": NaN}'}, "filter.cost", "filter.cost must be a number"),
    (f({"cost": 1e300}), "filter.cost", "filter.cost is out of range"),
    (f({"cost_micros": 1.5}), "filter.cost_micros", "must be an integer"),
    (f({"cost": {"contains": "1"}}), "filter.cost", "contains only works on text fields"),
    (f({"created_at": {"starts_with": "2026"}}), "filter.created_at", "only works on text"),
    (f({"created_at": {"gt": "yesterday"}}), "filter.created_at", "ISO date or datetime"),
    (f({"created_at": "2026-13-01"}), "filter.created_at", "ISO date or datetime"),
    (f({"created_at": "20260201"}), "filter.created_at", "ISO date or datetime"),
    (f({"created_at": 20260201}), "filter.created_at", "ISO date or datetime"),
    (f({"cost_gt": "0.5"}), "filter.cost_gt", "filter.cost_gt must be a number"),
    ({"cost_gt": "abc"}, "cost_gt", "cost_gt must be a number"),
    ({"cost_lt": "nan"}, "cost_lt", "cost_lt must be a number"),
    ({"created_after": "last week"}, "created_after", "ISO date or datetime"),
    ({"sort": "colour"}, "sort", "sort must be one of: agent_id, cost, created_at, id"),
    ({"sort": "-task"}, "sort", "sort must be one of"),
    ({"sort": "--created_at"}, "sort", "sort must be one of"),
    ({"sort": "created_at;drop table agents"}, "sort", "sort must be one of"),
    ({"sort": "created_at desc"}, "sort", "sort must be one of"),
    ({"cursor": "not a cursor!"}, "cursor", "Invalid cursor"),
    ({"cursor": "abc"}, "cursor", "Invalid cursor"),
    ({"cursor": "x" * 2000}, "cursor", "Invalid cursor"),
    ({"cursor": encode([1, 2])}, "cursor", "Invalid cursor"),
    ({"cursor": encode({"a": 5})}, "cursor", "Invalid cursor"),
    ({"cursor": encode({"s": "created_at", "d": 1, "v": {"x": 1}, "i": 3, "h": "0"})},
     "cursor", "Invalid cursor"),
]


@pytest.mark.parametrize(("args", "key", "message"), BAD_INPUTS)
def test_bad_list_arguments_raise_list_error(args, key, message):
    with pytest.raises(ListError) as caught:
        parse(args)
    assert message in caught.value.message
    assert caught.value.details[key]


def test_limit_error_has_the_documented_message_and_details():
    with pytest.raises(ListError) as caught:
        parse({"limit": "0"})
    assert caught.value.message == "limit must be between 1 and 100"
    assert caught.value.details == {"limit": ["limit must be between 1 and 100"]}


def valid_cursor(db: sqlite3.Connection, args: dict) -> str:
    _, pagination, _ = fetch_page(db, dict(args, limit="5"))
    return pagination["next_cursor"]


@pytest.mark.parametrize("other", [
    {"status": "failed"},
    {"status": "running", "model": "k2p5"},
    {"status": "running", "sort": "created_at"},
    {"status": "running", "sort": "-cost"},
    f({"status": {"ne": "running"}}),
])
def test_cursor_reused_with_another_filter_or_sort_is_refused(db, other):
    cursor = valid_cursor(db, {"status": "running"})
    parse({"status": "running", "cursor": cursor})
    with pytest.raises(ListError) as caught:
        parse(dict(other, cursor=cursor))
    assert caught.value.message == "Invalid cursor"
    assert "different filter or sort" in caught.value.details["cursor"][0]


def test_tampered_cursor_is_refused(db):
    cursor = valid_cursor(db, {})
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=="))
    for key, value in (("h", "0" * 16), ("i", "5"), ("i", True), ("v", 12)):
        with pytest.raises(ListError, match="Invalid cursor"):
            parse({"cursor": encode(dict(payload, **{key: value}))})


def test_field_refuses_unsafe_columns_and_unknown_kinds():
    with pytest.raises(ValueError):
        Field("id; drop table agents", "int")
    with pytest.raises(ValueError):
        Field("id", "bool")


@pytest.fixture(scope="module")
def big_db() -> sqlite3.Connection:
    conn = make_db(make_rows(100_000, seed=3))
    for column in ("created_at", "actual_micros", "status, created_at"):
        conn.execute(f"CREATE INDEX ix_{column[:6]} ON agents ({column})")
    conn.execute("ANALYZE")
    yield conn
    conn.close()


def plan(db: sqlite3.Connection, query: ListQuery) -> str:
    sql, params = query.page_sql("agents")
    return " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_keyset_page_seeks_the_index_without_sorting(big_db):
    first = parse({"status": "running", "sort": "-created_at"})
    cursor = first.next_cursor("2026-02-10T12:00:00.000000Z", 50_000)
    query = parse({"status": "running", "sort": "-created_at", "cursor": cursor})
    text = plan(big_db, query)
    assert "TEMP B-TREE" not in text and "SEARCH" in text and "created_at<" in text
    assert "TEMP B-TREE" not in plan(big_db, parse({"sort": "cost"}))

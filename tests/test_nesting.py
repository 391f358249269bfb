"""JSON nested past jsontext.MAX_DEPTH: 400 in the error shape, found before parsing,
for request bodies and the `filter` argument; nothing is stored."""
from __future__ import annotations

import json
import sqlite3

import pytest

from j1msky.services.jsontext import MAX_DEPTH, depth
from tests.helpers import agent_count, configure

TOO_DEEP = f"JSON nested too deeply (more than {MAX_DEPTH} levels)"


def arrays(levels: int, inner: str = "") -> str:
    return "[" * levels + inner + "]" * levels


def objects(levels: int, inner: str = "1") -> str:
    return '{"a":' * levels + inner + "}" * levels


def refused(response, message: str, details: dict | None = None) -> bool:
    error = {"code": 400, "message": message, "request_id": response.headers["X-Request-Id"]}
    if details:
        error["details"] = details
    return response.status_code == 400 and response.json == {"success": False, "error": error}


def rows(app, table: str) -> int:
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("text, expected", [
    ("1", 0),
    ("[]", 1),
    (arrays(MAX_DEPTH), MAX_DEPTH),
    (objects(MAX_DEPTH + 1), MAX_DEPTH + 1),
    ('{"a": "[[[[{{{{"}', 1),                      # brackets inside a string
    ('{"a": "\\"[[[[", "b": [1]}', 2),             # an escaped quote does not end the string
    ('{"a": "x\\\\", "b": [[1]]}', 3),             # an escaped backslash does: [[ counts
    ('{"a": "\\\\\\"[[[["}', 1),                    # backslash pair, then an escaped quote
    ('"unterminated [[[[', 0),                      # an open string runs to the end
    ('[1, [2, [3]], [4]]', 3),
    ("]]]][[", 0),                                  # not JSON: the parser stops at once
])
def test_depth_counts_brackets_outside_strings(text, expected):
    assert depth(text) == expected


BODY_CASES = [  # (levels of nesting below the top object, refused as too deep)
    (MAX_DEPTH - 2, False), (MAX_DEPTH - 1, False), (MAX_DEPTH, True), (5000, True)]


@pytest.mark.parametrize("levels, too_deep", BODY_CASES)
@pytest.mark.parametrize("shape", [arrays, objects])
@pytest.mark.parametrize("path, table", [("/api/spawn", "agents"),
                                         ("/api/spawn-batch", "agents"),
                                         ("/api/agent", "agents"),  # v3 spawn
                                         ("/api/security/block-ip", "blocked_ips"),
                                         ("/api/webhooks", "webhooks"),
                                         ("/api/keys", "api_keys")])
def test_deep_body_is_400_and_stores_nothing(app, client, admin, path, table, shape, levels,
                                             too_deep):
    before = rows(app, table)
    body = '{"task": "x", "extra": ' + shape(levels) + "}"  # 1 + levels deep
    assert depth(body) == levels + 1
    response = client.post(path, data=body, content_type="application/json",
                           headers=admin.headers)
    assert response.status_code == 400  # too deep, or else the schema refuses "extra"
    assert (response.json["error"]["message"] == TOO_DEEP) is too_deep
    if too_deep:
        assert refused(response, TOO_DEEP)
    assert rows(app, table) == before


def test_deep_utf16_body_is_measured_after_decoding(client, admin, app):
    body = ('{"task": "x", "extra": ' + arrays(MAX_DEPTH) + "}").encode("utf-16")
    response = client.post("/api/spawn", data=body, content_type="application/json",
                           headers=admin.headers)
    assert refused(response, TOO_DEEP)
    assert agent_count(app) == 0


@pytest.mark.parametrize("task", ["[" * 500 + "{" * 500,   # brackets in a string are text
                                  '\\"' + "[" * 500,          # escaped quote, then text
                                  "\\\\" * 3 + "{" * 500])
def test_brackets_inside_strings_are_not_nesting(client, admin, app, task):
    body = '{"task": "' + task + '"}'
    response = client.post("/api/spawn", data=body, content_type="application/json",
                           headers=admin.headers)
    assert response.status_code == 202, response.json
    assert agent_count(app) == 1


def test_deep_body_with_audited_request_bodies(app, client, admin):
    """The audit trail keeps a too-deep body as text and still lists it."""
    configure(app, audit={"include_request_body": True, "log_level": "verbose"})
    body = '{"task": "x", "extra": ' + arrays(5000) + "}"
    response = client.post("/api/spawn", data=body, content_type="application/json",
                           headers=admin.headers)
    assert refused(response, TOO_DEEP)
    listed = client.get("/api/security/audit?limit=100", headers=admin.headers)
    assert listed.status_code == 200
    assert any(isinstance(entry.get("request_body"), str) and entry["request_body"]
               .startswith('{"task": "x"') for entry in listed.json["data"])


FILTER_CASES = [(MAX_DEPTH - 1, False), (MAX_DEPTH, False), (MAX_DEPTH + 1, True),
                (5000, True)]


@pytest.mark.parametrize("levels, too_deep", FILTER_CASES)
def test_deep_filter_is_400(client, admin, levels, too_deep):
    text = '{"status": {"in": ' + arrays(levels - 2, '"completed"') + "}}"
    assert depth(text) == levels
    response = client.get("/api/agents", query_string={"filter": text}, headers=admin.headers)
    assert response.status_code == 400  # too deep, or else "in" wants a list of values
    message = f"filter: {TOO_DEEP}"
    assert (response.json["error"]["message"] == message) is too_deep
    if too_deep:
        assert refused(response, message, {"filter": [message]})


@pytest.mark.parametrize("text", ['{"task": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
                                  json.dumps({"task": '"' + "[" * 40})])
def test_brackets_inside_filter_strings_are_not_nesting(client, admin, text):
    response = client.get("/api/agents", query_string={"filter": text}, headers=admin.headers)
    assert response.status_code == 200, response.json

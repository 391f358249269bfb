"""One error shape everywhere (CONTRACT §4), and X-Request-Id on every response."""
from __future__ import annotations

import logging
import re

import pytest


def assert_error_shape(response, status: int, message: str | None = None) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.json
    assert body["success"] is False
    assert body["error"]["code"] == status
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    assert body["error"]["request_id"]
    if message is not None:
        assert body["error"]["message"] == message
    return body["error"]


@pytest.mark.parametrize("method, path, status, message", [
    ("GET", "/api/nowhere", 404, "Not found"),
    ("GET", "/nowhere", 404, "Not found"),  # "/" is the console (issue 12)
    ("GET", "/api/v4/nowhere", 404, "Not found"),
    ("PUT", "/api/health", 405, "Method not allowed"),
    ("PATCH", "/api/keys", 405, "Method not allowed"),
])
def test_routing_errors_have_the_contract_shape(client, admin, method, path, status, message):
    response = client.open(path, method=method, headers=admin.headers)
    assert_error_shape(response, status, message)
    assert b"<html" not in response.data.lower()


@pytest.mark.parametrize("data, message", [
    ("{not json", "Request body is not valid JSON"),
    ('["a", "list"]', "Request body must be a JSON object"),
    ('"text"', "Request body must be a JSON object"),
    ("", "Request body must be a JSON object"),
    (b"\xff\xfe", "Request body is not valid JSON"),
])
def test_bad_bodies_are_400(client, admin, data, message):
    response = client.post("/api/keys", data=data, headers={**admin.headers,
                                                             "Content-Type": "application/json"})
    assert_error_shape(response, 400, message)


def test_too_large_body_is_413(client, admin):
    body = '{"name": "' + "x" * 70_000 + '"}'
    response = client.post("/api/keys", data=body, headers={**admin.headers,
                                                             "Content-Type": "application/json"})
    assert_error_shape(response, 413, "Request body too large")


def test_unexpected_exception_is_a_500_without_trace_logged_with_request_id(
        app, admin, caplog):
    def explode():
        raise RuntimeError("secret internals")

    app.add_url_rule("/api/explode", "explode", explode)
    client = app.test_client()
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/explode", headers={"X-Request-Id": "trace-me-123"})
    error = assert_error_shape(response, 500, "Internal server error")
    assert error["request_id"] == "trace-me-123"
    assert b"secret internals" not in response.data
    assert b"Traceback" not in response.data
    assert any("trace-me-123" in r.getMessage() for r in caplog.records)


def test_sane_request_id_is_echoed_and_a_bad_one_replaced(client, admin):
    response = client.get("/api/health", headers={**admin.headers, "X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    response = client.get("/api/health", headers={**admin.headers,
                                                  "X-Request-Id": "bad id <script>"})
    assert response.headers["X-Request-Id"].startswith("req_")


def test_new_request_ids_are_distinct_and_keep_their_shape(client):
    ids = {client.get("/api/health").headers["X-Request-Id"] for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", rid) for rid in ids)


def test_validation_error_carries_details(client, admin):
    response = client.post("/api/keys", headers=admin.headers,
                           json={"name": "", "scopes": ["root"], "extra": 1})
    error = assert_error_shape(response, 400)
    assert set(error["details"]) == {"name", "scopes", "extra"}


def test_v4_prefix_serves_the_same_routes(client, admin):
    for prefix in ("/api", "/api/v4"):
        response = client.get(prefix + "/health", headers=admin.headers)
        assert response.status_code == 200

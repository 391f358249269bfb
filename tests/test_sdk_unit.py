"""The SDK's pure parts: Result summary and issues, base URLs, error mapping, retry waits."""
from __future__ import annotations

import json
from email.utils import format_datetime

import pytest
import requests

from j1msky import sdk


def response(status: int, body, headers: dict | None = None) -> requests.Response:
    made = requests.Response()
    made.status_code = status
    made._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    made.headers.update(headers or {})
    return made


def test_summary_is_the_first_paragraph_cut_at_a_word():
    assert sdk.Result({"result": "First part.\nstill first.\n\nSecond."}).summary == \
        "First part.\nstill first."
    long = sdk.Result({"result": "word " * 200}).summary
    assert long.endswith("...") and len(long) <= sdk.SUMMARY_CHARS + 3
    assert not long[:-3].endswith(" ")
    assert sdk.Result({"result": None, "status": "failed"}).summary == ""


def test_issues_are_the_list_lines_else_the_whole_output():
    text = "Review:\n- unused import\n  * nested point\n2) off by one\nthanks\n10. naming"
    assert sdk.Result({"result": text}).issues == \
        "- unused import\n  * nested point\n2) off by one\n10. naming"
    assert sdk.Result({"result": "looks fine"}).issues == "looks fine"


def test_result_fields_come_from_the_agent():
    agent = {"agent_id": "subagent_1_2", "status": "failed", "result": None, "error": "timed out",
             "actual_cost": 0.5, "cost": 0.5, "usage": {"input_tokens": 3, "output_tokens": 0}}
    result = sdk.Result(agent)
    assert (result.output, result.cost, result.error, result.ok) == ("", 0.5, "timed out", False)
    assert result.usage["input_tokens"] == 3 and result.agent is agent


@pytest.mark.parametrize("base, root", [
    ("http://pi:8080", "http://pi:8080/api"),
    ("http://pi:8080/", "http://pi:8080/api"),
    ("http://pi:8080/api", "http://pi:8080/api"),
    ("http://pi:8080/api/", "http://pi:8080/api"),
    ("http://pi:8080/api/v4", "http://pi:8080/api/v4"),
])
def test_base_url_may_end_in_api(base, root):
    assert sdk.api_root(base) == root


@pytest.mark.parametrize("status, cls", [
    (400, sdk.ValidationError), (413, sdk.ValidationError), (401, sdk.AuthError),
    (403, sdk.AuthError), (404, sdk.NotFound), (409, sdk.Conflict), (410, sdk.Gone),
    (429, sdk.RateLimitError), (500, sdk.ServerError), (503, sdk.ServerError),
    (405, sdk.J1mskyError),
])
def test_error_status_maps_to_its_exception(status, cls):
    error = sdk.error_from_response(response(status, {"success": False, "error": {
        "code": status, "message": "m", "request_id": "req_1", "details": {"f": ["bad"]}}}))
    assert type(error) is cls
    assert (error.status, error.message, error.request_id, error.details) == \
        (status, "m", "req_1", {"f": ["bad"]})
    assert str(error) == f"{status} m (request_id req_1)"


def test_error_in_other_shapes_still_reads():
    plain = sdk.error_from_response(response(400, {"success": False, "error": "Task cannot be empty"},
                                             {"X-Request-Id": "req_h"}))
    assert (plain.message, plain.request_id) == ("Task cannot be empty", "req_h")
    html = sdk.error_from_response(response(502, "<html>bad gateway</html>", {"Retry-After": "7"}))
    assert isinstance(html, sdk.ServerError) and html.retry_after == 7.0
    assert html.body == "<html>bad gateway</html>"


def test_retry_after_reads_seconds_and_http_dates():
    assert sdk.seconds("120") == 120.0 and sdk.seconds(0.25) == 0.25 and sdk.seconds(None) is None
    soon = sdk.dt.datetime.now(sdk.dt.timezone.utc) + sdk.dt.timedelta(seconds=30)
    assert 25 <= sdk.seconds(format_datetime(soon, usegmt=True)) <= 30
    assert sdk.seconds("soon") is None and sdk.seconds(True) is None


def test_retry_waits_grow_up_to_the_cap_and_follow_retry_after():
    agency = sdk.Agency("live_sk_x", backoff_base=1.0, backoff_max=5.0, max_retries=5)
    busy = sdk.ServerError("busy", status=503)
    assert 1.0 <= agency._retry_wait(busy, 0) <= 1.1
    assert 4.0 <= agency._retry_wait(busy, 2) <= 4.4
    assert agency._retry_wait(busy, 4) == 5.0
    assert agency._retry_wait(busy, 5) is None  # retries used up
    assert agency._retry_wait(sdk.ServerError("bug", status=500), 0) is None
    assert agency._retry_wait(sdk.ValidationError("no", status=400), 0) is None
    limited = sdk.RateLimitError("slow", status=429, retry_after=2)
    assert 2.0 <= agency._retry_wait(limited, 3) <= 2.2
    assert agency._retry_wait(sdk.RateLimitError("day", status=429, retry_after=60), 0) is None
    in_progress = sdk.Conflict("Request with this idempotency key is in progress", status=409)
    assert agency._retry_wait(in_progress, 0) is not None
    assert agency._retry_wait(sdk.Conflict("Agent already completed", status=409), 0) is None

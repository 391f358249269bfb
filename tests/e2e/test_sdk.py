"""The Python SDK (j1msky.Agency) against a real `j1msky serve`, and against tiny local
HTTP servers for the behaviour a healthy service never shows (429s, 503s, lost answers)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from j1msky import (
    Agency,
    AuthError,
    CircuitBreaker,
    CircuitOpenError,
    Conflict,
    NetworkError,
    NotFound,
    RateLimitError,
    ServerError,
    ValidationError,
)
from j1msky.sdk import Agent, Result
from tests.helpers import config_for_tests
from tests.live import free_port

ALL_SCOPES = ("agents:read", "agents:write", "billing:read", "admin:write")


@pytest.fixture
def serve(live_server_factory):
    """serve(**config sections) -> (server, admin Agency) on a started `j1msky serve`."""
    def start(**sections):
        sections = {"webhooks": {"allowed_networks": ["127.0.0.0/8"]}, **sections}
        server = live_server_factory(config_for_tests(**sections))
        key = server.create_key(*ALL_SCOPES)["key"]
        server.start()
        return server, Agency(key, server.url, backoff_base=0.01, backoff_max=0.5)
    return start


@pytest.fixture
def served(serve):
    return serve()


class LocalServer:
    """An HTTP server on 127.0.0.1 whose answers come from respond(method, path, headers,
    body) -> (status, body dict, headers) or None (close the connection unanswered).
    Every request is kept in `seen`."""

    def __init__(self, respond):
        self.seen: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = {"method": self.command, "path": self.path,
                           "headers": dict(self.headers), "body": body}
                owner.seen.append(request)
                reply = respond(request)
                if reply is None:
                    return
                status, payload, headers = reply
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def local_server():
    """local_server(respond) or local_server(answer, answer, ...): the last answer repeats."""
    servers = []

    def make(*script):
        if len(script) == 1 and callable(script[0]):
            respond = script[0]
        else:
            answers = list(script)

            def respond(request):
                return answers.pop(0) if len(answers) > 1 else answers[0]
        servers.append(LocalServer(respond))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def error(status: int, message: str, **extra) -> tuple:
    body = {"success": False, "error": {"code": status, "message": message,
                                        "request_id": "req_local", **extra}}
    return status, body, {}


# -- against `j1msky serve` -----------------------------------------------------------

def test_reference_examples_run_unchanged(served):
    server, admin = served
    agency = Agency(api_key=admin.api_key, base_url=server.url)
    code = "def add(a, b):\n    return a - b\n"

    # API_REFERENCE.md, "Example 1: Content Creation Pipeline" (one trailing space dropped)
    # Step 1: Research
    researcher = agency.spawn(
        model="sonnet",
        task="Research: Latest AI trends 2026",
        priority="high"
    )
    research = researcher.wait_for_completion()

    # Step 2: Write
    writer = agency.spawn(
        model="sonnet",
        task=f"Write blog post about: {research.summary}",
        priority="normal"
    )
    article = writer.wait_for_completion()

    # Step 3: Edit
    editor = agency.spawn(
        model="opus",
        task=f"Edit and improve: {article.output}",
        priority="normal"
    )
    final = editor.wait_for_completion()

    # API_REFERENCE.md, "Example 2: Code Review System"
    # Submit code for review
    reviewer = agency.spawn(
        model="k2p5",
        task=f"Review this code:\n{code}",
        priority="normal"
    )
    review = reviewer.wait_for_completion()

    # Apply fixes
    fixer = agency.spawn(
        model="k2p5",
        task=f"Fix these issues:\n{review.issues}",
        priority="high"
    )
    fixed_code = fixer.wait_for_completion()

    results = (research, article, final, review, fixed_code)
    assert [r.status for r in results] == ["completed"] * 5
    assert all(r.output and r.cost > 0 for r in results)
    assert article.agent["task"] == f"Write blog post about: {research.summary}"
    assert final.agent["task"] == f"Edit and improve: {article.output}"
    assert fixed_code.agent["task"] == f"Fix these issues:\n{review.issues}"


def test_spawn_spawn_team_and_spawn_batch_give_agents_that_finish(served):
    server, agency = served
    agent = agency.spawn(model="k2p5", task="Write a Python function to calculate fibonacci")
    assert isinstance(agent, Agent) and agent.id.startswith("subagent_")
    assert agent.data["estimated_cost"] > 0 and agent.data["model"] == "k2p5"
    result = agent.wait_for_completion(timeout=10, poll_interval=0.2)
    assert isinstance(result, Result) and result.ok and agent.status == "completed"
    assert result.status == "completed" and result.error is None
    assert result.output == result.agent["result"] and "fibonacci" in result.output
    assert result.cost == result.agent["actual_cost"] > 0
    assert result.usage["input_tokens"] > 0 and result.usage["output_tokens"] > 0
    assert result.summary == result.output.strip() and result.issues == result.output
    assert agency.get_agent(agent.id).data["result"] == result.output

    team = agency.spawn_team("team_coding", "A CLI todo app", priority="high")
    assert team.data["team"] == "team_coding" and len(team.data["models"]) == 2
    done = team.wait_for_completion(timeout=10)
    assert done.status == "completed" and len(done.agent["steps"]) == 2
    batch = agency.spawn_batch([{"model": "k2p5", "task": "one"},
                                {"model": "sonnet", "task": "two", "priority": "low"}])
    assert [a.data["model"] for a in batch] == ["k2p5", "sonnet"]
    assert len({a.id for a in batch}) == 2
    assert [a.wait_for_completion(timeout=10).status for a in batch] == ["completed"] * 2


def test_cancel_a_running_agent_then_cancel_again_is_a_conflict(serve):
    server, agency = serve(providers={"kimi-coding": {"kind": "simulated", "hourly": 1000, "delay": 30}})
    agent = agency.spawn(model="k2p5", task="slow work")
    with pytest.raises(TimeoutError):
        agent.wait_for_completion(timeout=0.3, poll_interval=0.1)
    answer = agent.cancel()
    assert answer["success"] and answer["refund"] == agent.data["estimated_cost"]
    result = agent.wait_for_completion(timeout=5, poll_interval=0.1)  # no raise
    assert result.status == "cancelled" and not result.ok
    with pytest.raises(Conflict) as conflict:
        agency.cancel(agent.id)
    assert conflict.value.status == 409 and conflict.value.request_id.startswith("req_")


def test_list_agents_iterates_over_every_page(served):
    server, agency = served
    batch = agency.spawn_batch([{"model": "k2p5", "task": f"paging marker {i}"} for i in range(5)])
    for agent in batch:
        agent.wait_for_completion(timeout=10)
    agency.spawn(model="sonnet", task="not in the list").wait_for_completion(timeout=10)
    wanted = {"task": {"contains": "paging marker"}}
    first = agency.agents_page(filter=wanted, sort="created_at", limit=2)
    assert len(first["data"]) == 2 and first["pagination"]["has_more"]
    listed = list(agency.list_agents(filter=wanted, sort="created_at", limit=2))
    assert [a["agent_id"] for a in listed] == [a.id for a in batch]
    assert len(list(agency.list_agents(status="completed", limit=2))) == 6
    assert agency.active_agents()["count"] == 0
    exported = {row["agent_id"] for row in agency.export()}
    assert exported >= {a.id for a in batch} and len(exported) == 6


def test_events_stream_follows_the_cursor_and_reads_report_the_spend(served):
    server, agency = served
    first = agency.spawn(model="k2p5", task="first")
    first.wait_for_completion(timeout=10)
    stream = agency.events(limit=2)
    seen = list(stream)
    assert [e["type"] for e in seen if e["data"].get("agent_id") == first.id] == \
        ["agent.spawned", "agent.started", "agent.completed"]
    assert stream.cursor is not None and agency.events_page(cursor=stream.cursor)["data"] == []
    second = agency.spawn(model="k2p5", task="second")
    second.wait_for_completion(timeout=10)
    newer = list(agency.events(cursor=stream.cursor))
    assert {e["data"].get("agent_id") for e in newer} == {second.id}
    completed = list(agency.events(type="agent.completed", limit=1))
    assert [e["data"]["agent_id"] for e in completed] == [first.id, second.id]

    agency.spawn(model="k2p5", task="something to bill").wait_for_completion(timeout=10)
    usage = agency.billing_usage()
    assert usage["total_cost"] > 0 and set(usage["by_model"]) == {"k2p5"}
    csv_text = agency.billing_usage(format="csv")
    assert csv_text.splitlines()[0].startswith("day,model,provider,key_id")
    status = agency.orchestrator_status()
    assert status["budget_alert_level"] == "ok" and status["today_spend"] > 0
    choice = agency.recommend_model("coding", complexity="high", estimated_tokens=2500)
    assert choice["recommended_model"] in ("k2p5", "sonnet", "opus")
    assert choice["budget_available"] is True
    assert set(agency.rate_limits()["limits"]) == {"anthropic", "kimi-coding"}
    assert agency.health()["status"] in ("healthy", "degraded")
    assert {"cpu_temp", "load_average", "memory_usage", "uptime", "disk_free"} <= \
        set(agency.system())
    assert "# TYPE" in agency.metrics()


def test_webhooks_crud_security_and_audit(served):
    server, agency = served
    hook = agency.create_webhook("http://127.0.0.1:9/hook", ["agent.completed", "agent.failed"])
    assert hook["secret"].startswith("whsec_") and hook["active"]
    assert [h["id"] for h in agency.list_webhooks()] == [hook["id"]]
    shown = agency.get_webhook(hook["id"])
    assert shown["url"] == "http://127.0.0.1:9/hook" and "secret" not in shown
    assert agency.test_webhook(hook["id"])["success"]
    assert isinstance(agency.webhook_deliveries(hook["id"], limit=5), list)
    assert agency.delete_webhook(hook["id"])["success"]
    with pytest.raises(NotFound):
        agency.get_webhook(hook["id"])
    assert agency.list_webhooks() == []

    assert agency.set_ip_whitelist(["127.0.0.0/8"], enforce=False)["allowed_ips"] == \
        ["127.0.0.0/8"]
    assert agency.get_ip_whitelist()["allowed_ips"] == ["127.0.0.0/8"]
    blocked = agency.block_ip("198.51.100.7", reason="suspicious_activity", duration_hours=1)
    assert blocked["ip"] == "198.51.100.7"
    assert [b["ip"] for b in agency.blocked_ips()] == ["198.51.100.7"]
    assert agency.unblock_ip("198.51.100.7")["success"] and agency.blocked_ips() == []
    changed = agency.set_audit(enabled=True, retention_days=30,
                               events=["agent.spawn", "config.change"])
    assert changed["settings"]["enabled"] is True and agency.audit_settings()["enabled"]
    agency.spawn(model="k2p5", task="audited")
    entries = list(agency.audit_log(limit=1))
    assert len(entries) >= 2 and {"agent.spawn", "config.change"} <= {e["event"] for e in entries}


def test_keys_create_rotate_revoke(served):
    server, admin = served
    made = admin.create_key("sdk-reader", ["agents:read"])
    assert made["key"].startswith("live_sk_") and made["scopes"] == ["agents:read"]
    reader = Agency(made["key"], server.url)
    assert reader.health()["status"]
    with pytest.raises(AuthError) as lacking:
        reader.spawn(model="k2p5", task="not allowed")
    assert lacking.value.status == 403
    rotated = admin.rotate_key(made["key_id"])
    assert rotated["replaces"] == made["key_id"] and rotated["key"] != made["key"]
    assert Agency(rotated["key"], server.url).health() and reader.health()  # grace period
    assert {made["key_id"], rotated["key_id"]} <= {k["key_id"] for k in admin.list_keys()}
    assert admin.unsuspend_key(made["key_id"])["suspended_until"] is None
    revoked = admin.revoke_key(rotated["key_id"], reason="suspected_leak", notify_user=True)
    assert revoked["status"] == "revoked"
    with pytest.raises(AuthError) as refused:
        Agency(rotated["key"], server.url).health()
    assert refused.value.status == 401
    with pytest.raises(Conflict):
        admin.revoke_key(rotated["key_id"])


def test_idempotency_replays_conflicts_and_survives_a_lost_answer(served, local_server):
    server, agency = served
    body = {"model": "k2p5", "task": "exactly once"}
    first = agency.request("POST", "/spawn", body=body, idempotency_key="sdk-replay-1")
    again = agency.request("POST", "/spawn", body=body, idempotency_key="sdk-replay-1")
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["agent_id"] == first.json()["agent_id"]
    with pytest.raises(Conflict) as mismatch:
        agency.request("POST", "/spawn", body={**body, "task": "other"},
                       idempotency_key="sdk-replay-1")
    assert mismatch.value.message == "Idempotency key payload mismatch"
    assert agency.spawn(**body).id != agency.spawn(**body).id  # a fresh key per call

    # an answer lost on the way: the retry sends the same key, one agent is made
    forwarded = ("Authorization", "Content-Type", "Idempotency-Key", "User-Agent")

    def drop_first_spawn_answer(request):
        answer = requests.request(request["method"], server.url + request["path"],
                                  data=request["body"], timeout=10,
                                  headers={h: request["headers"][h] for h in forwarded
                                           if h in request["headers"]})
        if request["method"] == "POST" and len(proxy.seen) == 1:
            return None  # the agent was made, but its answer never arrives
        return answer.status_code, answer.json(), {
            h: answer.headers[h] for h in ("Idempotent-Replayed",) if h in answer.headers}

    proxy = local_server(drop_first_spawn_answer)
    through_proxy = Agency(agency.api_key, proxy.url, backoff_base=0.01)
    agent = through_proxy.spawn(model="k2p5", task="answer lost once")
    posts = [r for r in proxy.seen if r["method"] == "POST"]
    assert len(posts) == 2
    assert posts[0]["headers"]["Idempotency-Key"] == posts[1]["headers"]["Idempotency-Key"]
    made = agency.list_agents(filter={"task": "answer lost once"})
    assert [a["agent_id"] for a in made] == [agent.id]


def test_signed_client_for_get_with_query_and_post(serve):
    server, admin = serve()
    made = server.create_key("agents:read", "agents:write",
                             extra=("--signing", "--require-signature"))
    signed = Agency(made["key"], server.url + "/api/", api_secret=made["api_secret"])
    agent = signed.spawn(model="k2p5", task="signed spawn", privacy={"detect_pii": True})
    assert agent.wait_for_completion(timeout=10).status == "completed"
    page = signed.agents_page(filter={"model": {"in": ["k2p5"]}, "task": "signed spawn"},
                              status="completed", sort="-created_at", limit=5)
    assert [a["agent_id"] for a in page["data"]] == [agent.id]
    with pytest.raises(AuthError) as unsigned:
        Agency(made["key"], server.url).get_agent(agent.id)
    assert unsigned.value.status == 401 and "Signed request required" in unsigned.value.message
    with pytest.raises(AuthError, match="Invalid request signature"):
        Agency(made["key"], server.url, api_secret="not-the-secret").health()


def test_error_answers_raise_typed_exceptions(served):
    server, agency = served
    with pytest.raises(NotFound) as missing:
        agency.get_agent("subagent_1700000000_1")
    assert missing.value.status == 404 and missing.value.request_id.startswith("req_")
    with pytest.raises(ValidationError) as empty:
        agency.spawn(model="k2p5", task="  ")
    assert empty.value.status == 400 and empty.value.message == "Task cannot be empty"
    assert empty.value.details == {"task": ["Task cannot be empty"]}
    with pytest.raises(ValidationError) as model:
        agency.spawn(model="gpt-9", task="x")
    assert "model" in model.value.details and model.value.body["success"] is False
    with pytest.raises(ValidationError) as too_big:
        agency.spawn(model="k2p5", task="x" * 70_000)
    assert too_big.value.status == 413
    with pytest.raises(AuthError) as invalid:
        Agency("live_sk_" + "x" * 32, server.url).health()
    assert invalid.value.status == 401 and invalid.value.message == "Invalid API key"
    agent = agency.spawn(model="k2p5", task="finish first")
    agent.wait_for_completion(timeout=10)
    with pytest.raises(Conflict) as finished:
        agent.cancel()
    assert finished.value.status == 409


def test_rate_limit_error_carries_retry_after(serve):
    server, agency = serve(rate_limits={"spawn": "2/hour"})
    limited = Agency(agency.api_key, server.url, max_retries=1, backoff_max=0.1)
    limited.spawn(model="k2p5", task="one")
    limited.spawn(model="k2p5", task="two")
    started = time.monotonic()
    with pytest.raises(RateLimitError) as refused:
        limited.spawn(model="k2p5", task="three")
    assert time.monotonic() - started < 2  # retry_after > backoff_max: no early retry
    assert refused.value.status == 429 and refused.value.retry_after > 0.1
    assert refused.value.request_id.startswith("req_")


# -- against local servers ------------------------------------------------------------

def test_backoff_honours_retry_after_from_the_body_and_the_header(local_server):
    server = local_server(error(429, "Rate limit exceeded", retry_after=0.2),
                          (503, {}, {"Retry-After": "0.3"}), (200, {"status": "healthy"}, {}))
    agency = Agency("live_sk_local", server.url, backoff_base=0.001, backoff_max=5)
    started = time.monotonic()
    assert agency.health() == {"status": "healthy"}
    assert 0.5 <= time.monotonic() - started < 2
    assert len(server.seen) == 3


def test_rate_limit_error_after_retries_run_out(local_server):
    server = local_server(error(429, "Rate limit exceeded", retry_after=0.05))
    agency = Agency("live_sk_local", server.url, max_retries=2, backoff_max=1)
    with pytest.raises(RateLimitError) as refused:
        agency.spawn(model="k2p5", task="x")
    assert len(server.seen) == 3
    assert refused.value.retry_after == 0.05 and refused.value.request_id == "req_local"
    longer = local_server(error(429, "Budget spent for today", retry_after=3600))
    with pytest.raises(RateLimitError):  # no early retry when told to wait longer than allowed
        Agency("live_sk_local", longer.url, backoff_max=1).health()
    assert len(longer.seen) == 1


def test_retries_reuse_the_idempotency_key_of_the_call(local_server):
    server = local_server(error(503, "Service unavailable"), (202, {"agent_id": "a"}, {}))
    agency = Agency("live_sk_local", server.url, backoff_base=0.01)
    agency.spawn(model="k2p5", task="x")
    agency.spawn(model="k2p5", task="x")
    keys = [r["headers"]["Idempotency-Key"] for r in server.seen]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]
    assert server.seen[0]["body"] == b'{"model":"k2p5","task":"x","priority":"normal"}'


def test_circuit_breaker_opens_after_n_failures_and_half_opens(local_server):
    answers = [error(503, "Service unavailable")]
    server = local_server(lambda request: answers[0])
    breaker = CircuitBreaker(threshold=3, timeout=0.3)
    agency = Agency("live_sk_local", server.url, max_retries=0, circuit_breaker=breaker)
    for _ in range(3):
        with pytest.raises(ServerError) as failed:
            agency.health()
        assert failed.value.status == 503 and not isinstance(failed.value, CircuitOpenError)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError) as fast:
        agency.health()
    assert len(server.seen) == 3 and 0 < fast.value.retry_after <= 0.3
    time.sleep(0.35)
    assert breaker.state == "half-open"
    answers[0] = (200, {"status": "healthy"}, {})
    assert agency.health() == {"status": "healthy"} and breaker.state == "closed"
    answers[0] = error(503, "Service unavailable")
    retrying = Agency("live_sk_local", server.url, max_retries=5, backoff_base=0.01,
                      circuit_breaker=CircuitBreaker(threshold=2, timeout=60))
    with pytest.raises(CircuitOpenError):  # opened by its own retries: stops retrying
        retrying.health()
    assert len(server.seen) == 4 + 2


def test_unreachable_service_is_a_network_error_after_retries():
    agency = Agency("live_sk_local", f"http://127.0.0.1:{free_port()}", max_retries=1,
                    backoff_base=0.01, timeout=2)
    with pytest.raises(NetworkError) as unreachable:
        agency.health()
    assert unreachable.value.status is None and isinstance(unreachable.value, ServerError)

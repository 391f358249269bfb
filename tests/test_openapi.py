"""GET /api/openapi.json: a valid OpenAPI 3.1 document of every route, which the app keeps
to under property-based fuzzing (schemathesis: in process over WSGI, and its CLI against a
live `j1msky serve`)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import traceback

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from j1msky.openapi import OPERATIONS, openapi_path
from tests.helpers import config_for_tests, configure, wait_for

CHECKS = ["not_a_server_error", "status_code_conformance", "response_schema_conformance",
          "content_type_conformance"]
MAX_EXAMPLES = 25  # per operation and mode; both modes take about 20 s on 2 cores
UNLIMITED = "100000/minute"


@pytest.fixture
def doc(client):
    return client.get("/api/openapi.json").json


def test_document_is_served_without_a_key(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["X-Request-Id"]
    assert client.get("/api/v4/openapi.json").json == response.json


def test_document_is_valid_openapi_31(doc):
    assert doc["openapi"] == "3.1.0"
    # The OAS 3.1 meta-schema (schemathesis ships the official one) checks the document;
    # JSON Schema 2020-12's meta-schema checks each schema in it.
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
    assert errors == []
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_document_covers_every_route(app, doc):
    served, endpoints = set(), set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = openapi_path(rule.rule.replace("/api/v4/", "/api/", 1))
            served |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
            endpoints.add(rule.endpoint.removeprefix("v4_"))
    documented = {(method.upper(), path) for path, item in doc["paths"].items()
                  for method in item}
    assert documented == served
    assert set(OPERATIONS) == endpoints, "declare each new view's answers in j1msky/openapi.py"


def test_v4_routes_are_the_api_routes(app):
    views = {(r.rule, tuple(sorted(r.methods))): app.view_functions[r.endpoint]
             for r in app.url_map.iter_rules()}
    for (rule, methods), view in views.items():
        if rule.startswith("/api/v4/"):
            assert views[(rule.replace("/api/v4/", "/api/", 1), methods)] is view


def test_operations_carry_scope_security_and_idempotency(doc):
    spawn = doc["paths"]["/api/spawn"]["post"]
    assert spawn["x-required-scope"] == "agents:write"
    assert {"bearerAuth": ["agents:write"]} in spawn["security"]
    assert {"$ref": "#/components/parameters/IdempotencyKey"} in spawn["parameters"]
    assert spawn["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SpawnRequest"}
    assert set(spawn["responses"]) == {"202", "400", "401", "403", "409", "413", "414", "429",
                                       "500", "503"}
    assert "Location" in spawn["responses"]["202"]["headers"]
    assert doc["paths"]["/api/openapi.json"]["get"]["security"] == []
    assert doc["paths"]["/api/health"]["get"]["x-required-scope"] is None
    assert doc["paths"]["/api/status"]["get"]["deprecated"] is True
    assert "410" in doc["paths"]["/api/cancel"]["delete"]["responses"]
    agents = {p["name"] for p in doc["paths"]["/api/agents"]["get"]["parameters"]}
    assert {"limit", "offset", "cursor", "sort", "filter", "status", "cost_gt"} <= agents
    responses = doc["components"]["responses"]
    assert "Retry-After" in responses["TooManyRequests"]["headers"]
    assert responses["NotFound"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}


def test_request_schemas_follow_the_config(app, client, doc):
    spawn = doc["components"]["schemas"]["SpawnRequest"]["properties"]
    assert spawn["model"]["enum"] == ["k2p5", "sonnet", "opus", None]
    assert spawn["timeout"]["maximum"] == 3600
    assert doc["components"]["schemas"]["SpawnRequest"]["additionalProperties"] is False
    configure(app, agents={"max_timeout": 600})
    spawn = client.get("/api/openapi.json").json["components"]["schemas"]["SpawnRequest"]
    assert spawn["properties"]["timeout"]["maximum"] == 600


def test_v3_operations_past_the_sunset_answer_410_only(app, client, admin):
    configure(app, legacy_v3={"sunset": "2026-01-01"})
    doc = client.get("/api/openapi.json").json
    for path, method in (("/api/agent", "post"), ("/api/status", "get"), ("/api/cancel", "delete")):
        operation = doc["paths"][path][method]
        assert set(operation["responses"]) == {"401", "403", "410", "414", "429", "500"}
        assert "parameters" not in operation and "requestBody" not in operation
        assert "Retired on 2026-01-01" in operation["description"]
    assert client.get("/api/status?agent_id=x", headers=admin.headers).status_code == 410


def test_list_arguments_are_described_as_the_server_reads_them(doc):
    params = {p["name"]: p for p in doc["paths"]["/api/agents"]["get"]["parameters"]}
    assert all(p["allowEmptyValue"] for p in params.values())  # empty counts as absent
    assert "not with cursor (400)" in params["offset"]["description"]
    assert "not with offset (400)" in params["cursor"]["description"]
    assert "400" in doc["paths"]["/api/agents"]["get"]["responses"]
    assert "nested more than 32 levels deep 400" in " ".join(doc["info"]["description"].split())
    time = doc["components"]["schemas"]["FilterTime"]["anyOf"][0]
    assert re.fullmatch(time["pattern"].strip("^$"), "2026-03-01 12:00+02:00")


# -- the app against its document ------------------------------------------------------


@pytest.fixture
def resolve_every_host(monkeypatch):
    """Webhook URLs resolve, without DNS, to a documentation address (TEST-NET-1), so
    fuzzed registrations succeed offline; nothing is delivered (no dispatcher runs)."""
    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 ("192.0.2.10", port))]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def known_ids(app, client, admin, keys, start_runner, resolve_every_host):
    """Real resources for path parameters: finished agents (one a team), a webhook, a
    blocked address, and a key that is not the admin key the run uses (revoking that one
    would turn every later request into a 401)."""
    runner = start_runner()
    agent_ids = [client.post(path, json=body, headers=admin.headers).json["agent_id"]
                 for path, body in (("/api/spawn", {"task": "Mail alice@example.com",
                                                    "privacy": {"detect_pii": True}}),
                                    ("/api/spawn-team", {"task": "Plan it",
                                                         "team": "team_coding"}))]
    for agent_id in agent_ids:
        assert wait_for(client, admin, agent_id)["status"] == "completed"
    runner.shutdown()  # then fuzzed agents stay spawning: each run meets the same states
    del app.extensions["j1msky_runner"]
    webhook = client.post("/api/webhooks", json={"url": "https://hooks.example/j1msky",
                                                 "events": ["agent.completed"]},
                          headers=admin.headers).json["id"]
    assert client.post("/api/security/block-ip", json={"ip": "203.0.113.7"},
                       headers=admin.headers).status_code == 201
    return {"agent_id": agent_ids, "webhook_id": [webhook], "ip": ["203.0.113.7"],
            "key_id": [keys.make("agents:read").key_id]}


def cases(operation, mode, known_ids):
    """Generated cases, and cases naming real resources where the operation takes an id."""
    generated = operation.as_strategy(generation_mode=mode)
    names = re.findall(r"{(\w+)}", operation.path)
    if names:
        fixed = [{"path_parameters": {names[0]: value}} for value in known_ids[names[0]]]
    elif operation.path in ("/api/status", "/api/cancel"):
        fixed = [{"query": {"agent_id": value}} for value in known_ids["agent_id"]]
    else:
        return generated
    return st.one_of(generated, *(operation.as_strategy(generation_mode=mode, **kwargs)
                                  for kwargs in fixed))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["positive", "negative"])
def test_app_keeps_to_its_document(app, admin, known_ids, mode):
    configure(app, rate_limits={name: UNLIMITED for name in
                                ("spawn", "agent", "agents", "system", "per_ip")},
              security={"auth_failures_to_block": 100000},
              agents={"max_concurrent_per_key": 100000},
              budget={"daily": 1000000, "monthly_ceiling": 30000000})
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    schema.config.update(headers=admin.headers)
    # The admin key comes from the headers above; generating the security schemes' own
    # headers (X-Signature and the like) would turn most requests into 401s.
    schema.config.generation.update(with_security_parameters=False)
    checks = [getattr(schemathesis.checks, name) for name in CHECKS]
    failures = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        # Each operation runs as its own Hypothesis test (schemathesis' as_strategy under
        # @given), so max_examples bounds every one of them.
        @hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                             derandomize=True, suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=cases(operation, mode, known_ids))
        def conforms(case):
            case.call_and_validate(checks=checks)

        try:
            conforms()
        except hypothesis.errors.Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing in the request can be made invalid
        except Exception as exc:  # noqa: BLE001 - report every operation's failure at once
            failures[operation.label] = exc
    assert not failures, "\n".join(f"{label}: {''.join(traceback.format_exception_only(exc))}"
                                   for label, exc in failures.items())


# -- the live server against its document ----------------------------------------------

LIVE_CONFIG = """
# positive_data_acceptance assumes any schema-valid request succeeds; J1MSKY has rules JSON
# Schema cannot state (a cursor from an earlier page, offset or cursor, a webhook host that
# resolves, an address other than your own). The document lists those answers (400, 409)
# and the conformance checks hold the server to them.
[checks.positive_data_acceptance]
enabled = false

# gunicorn refuses a request line over 4094 bytes with 414 (documented) before the API
# sees it: for a fuzzed query string that long, that is the rejection.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415",
                     "422", "428", "429", "5xx"]
"""


def test_live_server_keeps_to_its_document(live_server_factory, tmp_path):
    """`schemathesis run` with every other check, all phases (stateful included), on a
    server set up as a fresh install is now: v3 past its sunset. The run's bad-key probes
    get its own address blocked automatically; its valid key keeps working throughout."""
    server = live_server_factory(config_for_tests(
        rate_limits={name: UNLIMITED for name in ("spawn", "agent", "agents", "system",
                                                  "per_ip")},
        security={"auth_failures_to_block": 5},
        agents={"workers": 2, "max_concurrent_per_key": 100000},
        budget={"daily": 1000000, "monthly_ceiling": 30000000},
        legacy_v3={"sunset": "2026-01-01"}))
    key = server.create_key("agents:read", "agents:write", "billing:read", "admin:write")["key"]
    server.start()
    (tmp_path / "schemathesis.toml").write_text(LIVE_CONFIG)
    # One worker: Hypothesis parses lambdas' source with ast, which on CPython 3.11 can
    # fail from two threads at once ("AST constructor recursion depth mismatch").
    schemathesis_cli = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    run = subprocess.run(
        [schemathesis_cli, "--config-file", str(tmp_path / "schemathesis.toml"), "run",
         server.url + "/api/openapi.json", "--header", f"Authorization: Bearer {key}",
         "--max-examples", "10", "--workers", "1", "--seed", "20261127",
         "--generation-database", "none", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-2000:]
    assert "127.0.0.1  auth_failures" in server.cli("blocks", "list").stdout
    server.stop()


# -- what the fuzzing found, pinned ----------------------------------------------------


def test_v3_agent_id_with_a_newline_is_encoded_in_the_link_header(client, admin):
    response = client.get("/api/status?agent_id=a%0Ab", headers=admin.headers)
    assert response.status_code == 404  # was a 500: a raw newline in the Link header
    assert response.headers["Link"] == '</api/v4/agent/a%0Ab>; rel="successor-version"'


@pytest.mark.parametrize("query", ["cost_gt=1e308", 'filter={"cost": {"lt": -1e308}}'])
def test_huge_money_filter_is_out_of_range(client, admin, query):
    response = client.get(f"/api/agents?{query}", headers=admin.headers)
    assert response.status_code == 400  # was a 500: 1e308 dollars in micro-dollars is inf
    assert response.json["error"]["message"].endswith("is out of range")


def test_erasing_agent_data_under_an_idempotency_key(client, admin):
    agent_id = client.post("/api/spawn", json={"task": "Erase me"},
                           headers=admin.headers).json["agent_id"]
    assert client.delete(f"/api/agent/{agent_id}", headers=admin.headers).status_code == 200
    headers = {**admin.headers, "Idempotency-Key": "erase-1"}
    first = client.delete(f"/api/agent/{agent_id}/data", headers=headers)
    assert first.status_code == 200  # was a 500: a WAL checkpoint inside the transaction
    again = client.delete(f"/api/agent/{agent_id}/data", headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json

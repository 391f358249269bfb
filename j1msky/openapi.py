"""The OpenAPI 3.1 document of the API (GET /api/openapi.json).

Paths come from the app's url_map, one operation per /api route and method (the /api/v4
twins are the same views, named in the description rather than listed twice). Request
bodies come from the marshmallow schemas that validate them, built against the config in
force, so the model, team and task-type enums and the timeout ceiling are the live ones.
What a view answers is declared in OPERATIONS below; tests/test_openapi.py checks that
it names every route and fuzzes the app against the result.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import fields

from . import __version__
from . import schemas as s
from . import security_schemas as sec
from .api.agents import AGENT_FIELDS
from .api.agents import SHORTHANDS as AGENT_SHORTHANDS
from .api.audit import AUDIT_FIELDS, AuditOptionsRequest
from .api.audit import SHORTHANDS as AUDIT_SHORTHANDS
from .api.events import EVENT_FIELDS
from .api.legacy import sunset
from .config import current as current_config
from .services import clock
from .services.pagination import COMPARE, INT64, ISO_TIME, LIKE, MAX_IN, MAX_OFFSET

JSON = "application/json"
V4_PREFIX = "/api/v4/"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
DESCRIPTION = """\
Self-hosted agent orchestration with cost control.

Every path below except the deprecated v3 ones (`POST /api/agent`, `GET /api/status`,
`DELETE /api/cancel`) is also served, identically, under `/api/v4` (`/api/spawn` is
`/api/v4/spawn`).

* Authentication: `Authorization: Bearer <key>`; each operation names the scope it needs
  (`x-required-scope`, and as the role in its security requirement). Keys that require
  signing also send `X-Timestamp` and `X-Signature` (hex HMAC-SHA256 of
  `"{timestamp}\\n{METHOD}\\n{path[?query]}\\n{body}"`).
* Errors, on every endpoint, have one shape (`Error`); unknown routes answer 404, wrong
  methods 405, bodies over the size limit 413, JSON bodies and `filter` arguments nested
  more than 32 levels deep 400.
* A blocked address: a manual block answers 403 to everything; an automatic block (after
  repeated authentication failures) answers 401 to every request without a valid key, on
  every endpoint, and lets requests with a valid key through.
* `Idempotency-Key` on POST/PUT/DELETE replays the first answer for 24 hours
  (`Idempotent-Replayed: true`); the same key with another request is 409.
* Every response carries `X-Request-Id`; rate-limited ones `X-RateLimit-Limit`,
  `X-RateLimit-Remaining` and `X-RateLimit-Reset`, and 429 (and some 503) `Retry-After`.
"""

# -- small JSON Schema pieces -----------------------------------------------------------

STR, INT, NUM, BOOL = ({"type": t} for t in ("string", "integer", "number", "boolean"))
STRS = {"type": "array", "items": STR}
TIME = {"type": "string", "format": "date-time"}


def nullable(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]}


def obj(properties: dict | None = None, required=(), **extra) -> dict:
    schema = {"type": "object", **extra}
    if properties:
        schema["properties"] = properties
    if required:
        schema["required"] = list(required)
    return schema


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def listing(item: dict) -> dict:
    return obj({"data": {"type": "array", "items": item}, "count": INT}, ["data", "count"])


def done(**properties) -> dict:
    """{"success": true, "message": ..., **properties}."""
    return obj({"success": BOOL, "message": STR, **properties}, ["success", "message"])


KEY = obj({"key_id": STR, "name": STR, "prefix": STR, "scopes": STRS,
           "status": {"type": "string", "enum": ["active", "revoked", "expired"]},
           "signing": BOOL, "require_signature": BOOL,
           "max_concurrent_agents": nullable(INT), "created_at": TIME,
           "expires_at": nullable(TIME), "revoked_at": nullable(TIME)},
          ["key_id", "name", "scopes", "status"])
NEW_KEY = {**KEY, "properties": {**KEY["properties"], "success": BOOL, "key": STR,
                                 "api_secret": nullable(STR)},
           "required": [*KEY["required"], "key"]}
WEBHOOK = obj({"id": STR, "url": STR, "events": STRS, "active": BOOL,
               "disabled_reason": nullable(STR), "created_at": TIME},
              ["id", "url", "events", "active"])
BLOCK = obj({"ip": STR, "reason": STR, "source": STR, "created_at": TIME,
             "expires_at": nullable(TIME)}, ["ip", "reason"])
WHITELIST = obj({"allowed_ips": STRS, "enforce": BOOL, "log_violations": BOOL,
                 "trusted_proxies": STRS},
                ["allowed_ips", "enforce", "log_violations", "trusted_proxies"])
AUDIT_SETTINGS = obj({"success": BOOL, "settings": obj()}, ["success", "settings"])
COSTS = obj(additionalProperties=NUM)
PAGE = {"pagination": ref("Pagination"), "links": ref("PageLinks")}
EVENT = obj({"id": STR, "type": STR, "created_at": TIME, "data": obj()},
            ["id", "type", "created_at", "data"])
AUDIT_ENTRY = obj({"id": STR, "timestamp": TIME, "event": STR, "severity": STR,
                   "api_key_id": nullable(STR), "ip_address": nullable(STR),
                   "request_id": nullable(STR), "resource": obj(), "details": obj()},
                  ["id", "timestamp", "event", "severity"])

# -- what each view takes and answers ---------------------------------------------------


@dataclass(frozen=True)
class Op:
    """A view's request and answers, beyond what every operation of its kind shares."""

    ok: dict  # status -> body schema (a dict or a marshmallow schema), or a full response
    errors: tuple = ()  # statuses its own logic can answer
    body: object = None  # marshmallow schema class, or callable(config) -> schema instance
    body_required: bool = True
    query: tuple = ()  # parameter objects
    location: bool = False  # the success answer carries Location: /api/agent/{id}


def query(name: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "schema": schema, "description": description,
            "required": required}


MONEY_MAX = INT64 / 1_000_000  # dollars; stored as integer micro-dollars
KINDS = {"str": STR, "int": {**INT, "minimum": 1 - INT64, "maximum": INT64 - 1},
         "float": NUM, "money": {**NUM, "minimum": -MONEY_MAX, "maximum": MONEY_MAX},
         "time": {**STR, "pattern": f"^{ISO_TIME.pattern}$",
                  "description": "ISO 8601 date or date and time (T or a space; Z or"
                                 " +hh:mm; none: UTC)"}}


def filter_value(kind: str) -> dict:
    """A filter condition on a field of this kind: a value (eq), or {operator: value}."""
    value = KINDS[kind]
    ops = {**{op: value for op in COMPARE},
           "in": {"type": "array", "items": value, "minItems": 1, "maxItems": MAX_IN},
           **({op: STR for op in LIKE} if kind == "str" else {})}
    return {"anyOf": [value, obj(ops, minProperties=1, additionalProperties=False)]}


def filter_schema(fields_: dict, shorthands: dict) -> dict:
    """The `filter` argument: field -> condition; a shorthand -> its value."""
    properties = {name: ref(f"Filter{fld.kind.title()}") for name, fld in fields_.items()
                  if fld.filterable}
    for key, (target, _) in shorthands.items():
        properties.setdefault(key, KINDS[fields_[target].kind])
    return obj(properties, additionalProperties=False)


def list_query(fields_: dict, shorthands: dict, feed: bool = False) -> tuple:
    """limit, offset (not in a feed), cursor, sort, filter and the view's shorthands."""
    sortable = sorted(n for n, f in fields_.items() if f.sortable)
    sorts = ["id"] if feed else [*sortable, *(f"-{n}" for n in sortable)]
    params = [query("limit", {**INT, "minimum": 1, "maximum": 100, "default": 20}, "Page size"),
              query("cursor", {**STR, "pattern": "^[A-Za-z0-9_-]{1,1000}$"},
                    "Opaque position from pagination.cursor / next_cursor of this listing"
                    " with the same filter and sort; any other value is 400"
                    + ("" if feed else "; not with offset (400)")),
              query("sort", {**STR, "enum": sorts}, "Field to sort by; prefix - for descending"),
              {"name": "filter", "in": "query", "required": False,
               "content": {JSON: {"schema": filter_schema(fields_, shorthands)}},
               "description": "A JSON object: field -> value, or field -> {operator: value}"}]
    if not feed:
        params.insert(1, query("offset", {**INT, "minimum": 0, "maximum": MAX_OFFSET},
                               "Rows to skip; not with cursor (400)"))
    for name, (target, op) in shorthands.items():
        params.append(query(name, KINDS[fields_[target].kind],
                            f"Shorthand for filter {{\"{target}\": {{\"{op}\": value}}}}"))
    return tuple({**p, "allowEmptyValue": True} for p in params)  # empty counts as absent


AGENT_ID = query("agent_id", {**STR, "minLength": 1}, "The agent's id", required=True)
SPAWN_ERRORS = (400, 429, 503)

OPERATIONS = {
    "health.health": Op(ok={200: obj({
        "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
        "uptime_seconds": INT, "error_rate": NUM, "models_configured": INT,
        "simulated_models": STRS, "unavailable_models": STRS, "missing_key_variables": STRS,
        "version": STR}, ["status", "uptime_seconds", "error_rate", "models_configured"])}),
    "agents.spawn": Op(ok={202: s.AgentCreated}, errors=SPAWN_ERRORS,
                       body=lambda c: s.SpawnRequest(c), location=True),
    "agents.spawn_batch": Op(ok={202: s.BatchCreated}, errors=SPAWN_ERRORS,
                             body=s.SpawnBatchRequest),
    "teams.spawn_team": Op(ok={202: s.TeamCreated}, errors=SPAWN_ERRORS,
                           body=lambda c: s.TeamSpawnRequest(c), location=True),
    "agents.get_agent": Op(ok={200: s.AgentDetailView}, errors=(404,)),
    "agents.cancel": Op(ok={200: s.AgentCancelled}, errors=(400, 404, 409), body=obj(),
                        body_required=False),
    "agents.erase_agent_data": Op(ok={200: done(agent_id=STR)}, errors=(404, 409)),
    "agents.list_agents": Op(ok={200: s.AgentPage}, errors=(400,),
                             query=list_query(AGENT_FIELDS, AGENT_SHORTHANDS)),
    "agents.active_agents": Op(ok={200: obj({"agents": {"type": "array", "items": ref("Agent")},
                                             "count": INT, "total_cost_today": NUM},
                                            ["agents", "count", "total_cost_today"])}),
    "agents.export": Op(ok={200: {"description": "One agent object a line (NDJSON)",
                                  "content": {"application/x-ndjson": {"schema": STR}}}}),
    "orchestrator.status": Op(ok={200: obj({"timestamp": STR, "models_active": INT,
                                            "daily_budget": NUM, "today_spend": NUM,
                                            "monthly_forecast": obj(), "provider_usage": obj()},
                                           ["timestamp", "daily_budget", "today_spend"])}),
    "orchestrator.recommend_model": Op(
        ok={200: obj({"recommended_model": nullable(STR), "budget_available": BOOL,
                      "estimated_cost": nullable(NUM), "reason": STR},
                     ["recommended_model", "budget_available", "reason"])},
        errors=(400,), body=lambda c: s.RecommendRequest(c)),
    "orchestrator.rate_limits": Op(ok={200: obj({"limits": obj(additionalProperties=obj({
        "used": INT, "limit": INT, "remaining": INT, "reset_at": STR}))}, ["limits"])}),
    "billing.usage": Op(ok={200: {"description": "Cost over the period", "content": {
        JSON: {"schema": obj({"period": STR, "total_cost": NUM, "total_calls": INT,
                              "estimated_cost_total": NUM,
                              "by_model": COSTS, "by_day": COSTS, "by_provider": COSTS,
                              "by_key": COSTS}, ["period", "total_cost", "by_model", "by_day"])},
        "text/csv": {"schema": STR}}}}, errors=(400,),
        query=({"in": "query", "schema": s.BillingQuery},)),
    "webhooks.create": Op(ok={201: {**WEBHOOK, "properties": {
        **WEBHOOK["properties"], "success": BOOL, "secret": STR}}}, errors=(400,),
        body=s.WebhookCreateRequest),
    "webhooks.list_webhooks": Op(ok={200: listing(WEBHOOK)}),
    "webhooks.show": Op(ok={200: WEBHOOK}, errors=(404,)),
    "webhooks.delete": Op(ok={200: done(id=STR)}, errors=(404,)),
    "webhooks.deliveries": Op(ok={200: listing(obj({"id": INT, "event": STR, "state": STR,
                                                    "attempts": INT}))}, errors=(400, 404),
                              query=(query("limit", {**INT, "minimum": 1, "maximum": 100,
                                                     "default": 20}, "Deliveries to show"),)),
    "webhooks.send_test": Op(ok={202: done(id=STR)}, errors=(404, 409)),
    "events.feed": Op(ok={200: obj({"data": {"type": "array", "items": EVENT}, **PAGE},
                                   ["data", "pagination", "links"])}, errors=(400,),
                      query=list_query(EVENT_FIELDS, {"type": ("type", "eq")}, feed=True)),
    "events.live": Op(
        ok={200: {"description": "Server-Sent Events: `retry:`, then per event `id:` (the feed's"
                                 " cursor), `event:` (its type), `data:` (the event as GET"
                                 " /events shows it); `: ping` comments while quiet; ends after"
                                 " streams.max_seconds (reconnect with Last-Event-ID)",
                  "content": {"text/event-stream": {"schema": STR}}}},
        errors=(400, 503),
        query=(query("type", STR, "Event types, comma-separated (default: all)"),
               query("cursor", STR, "Start after this feed cursor (Last-Event-ID wins)"),
               {"name": "Last-Event-ID", "in": "header", "schema": STR, "required": False,
                "description": "Resume after this event id (default: from now)"})),
    "keys.create_key": Op(ok={201: NEW_KEY}, errors=(400,), body=s.KeyCreateRequest),
    "keys.list_keys": Op(ok={200: listing(KEY)}),
    "keys.rotate_key": Op(ok={201: {**NEW_KEY, "properties": {
        **NEW_KEY["properties"], "replaces": STR, "old_key_expires_at": TIME}}},
        errors=(404, 409)),
    "keys.revoke_key": Op(ok={200: KEY}, errors=(400, 404, 409), body=s.KeyRevokeRequest,
                          body_required=False),
    "keys.unsuspend_key": Op(ok={200: KEY}, errors=(404,)),
    "audit.set_options": Op(ok={200: {**AUDIT_SETTINGS, "properties": {
        **AUDIT_SETTINGS["properties"], "changed": STRS}}}, errors=(400, 409),
        body=AuditOptionsRequest),
    "audit.get_options": Op(ok={200: AUDIT_SETTINGS}),
    "audit.list_entries": Op(ok={200: obj({"data": {"type": "array", "items": AUDIT_ENTRY},
                                           **PAGE}, ["data", "pagination", "links"])},
                             errors=(400,), query=list_query(AUDIT_FIELDS, AUDIT_SHORTHANDS)),
    "security.get_whitelist": Op(ok={200: WHITELIST}),
    "security.put_whitelist": Op(ok={200: WHITELIST}, errors=(400, 409),
                                 body=sec.IPWhitelistRequest),
    "security.block_ip": Op(ok={201: BLOCK}, errors=(400, 409), body=sec.BlockIPRequest),
    "security.blocked_ips": Op(ok={200: listing(BLOCK)}),
    "security.unblock_ip": Op(ok={200: done(ip=STR)}, errors=(400, 404)),
    "system.system": Op(ok={200: obj({"cpu_temp": nullable(NUM), "load_average": NUM,
                                      "memory_usage": NUM, "uptime": STR, "disk_free": STR,
                                      "active_agents": INT},
                                     ["cpu_temp", "load_average", "memory_usage", "uptime",
                                      "disk_free", "active_agents"])}),
    "system.prometheus_metrics": Op(ok={200: {"description": "Prometheus text format 0.0.4",
                                              "content": {"text/plain": {"schema": STR}}}}),
    "legacy_v3.spawn": Op(ok={202: s.AgentCreated}, errors=SPAWN_ERRORS,
                          body=lambda c: s.SpawnRequest(c), location=True),
    "legacy_v3.status": Op(ok={200: s.AgentDetailView}, errors=(400, 404), query=(AGENT_ID,)),
    "legacy_v3.cancel": Op(ok={200: s.AgentCancelled}, errors=(400, 404, 409),
                           query=(AGENT_ID,)),
    "docs.openapi_json": Op(ok={200: obj()}),
}

# -- shared components ------------------------------------------------------------------

RESPONSE_SCHEMAS = {  # leaves first, so nested schemas get these names
    "ErrorDetail": s.ErrorDetail, "Error": s.ErrorResponse, "TokenUsage": s.TokenUsage,
    "Agent": s.AgentView, "AgentDetail": s.AgentDetailView, "AgentCreated": s.AgentCreated,
    "TeamCreated": s.TeamCreated, "BatchCreated": s.BatchCreated,
    "AgentCancelled": s.AgentCancelled, "Pagination": s.Pagination, "PageLinks": s.PageLinks,
    "AgentTotals": s.AgentTotals, "AgentPage": s.AgentPage,
}
HEADERS = {
    "X-Request-Id": (STR, "The request's id (a sane incoming X-Request-Id is echoed)"),
    "X-RateLimit-Limit": (INT, "Requests allowed in the window of the limit that applied"),
    "X-RateLimit-Remaining": (INT, "Requests left in that window"),
    "X-RateLimit-Reset": (INT, "Unix time the window ends"),
    "Retry-After": (INT, "Seconds to wait before retrying"),
    "Location": (STR, "Where to follow the agent: /api/agent/{id}"),
    "Deprecation": (STR, "RFC 9745: @<unix time> the v3 API was deprecated"),
    "Sunset": (STR, "RFC 8594: the HTTP-date the v3 API stops answering"),
    "Link": (STR, 'The successor: </api/v4/...>; rel="successor-version"'),
}
ERRORS = {
    400: ("BadRequest", "Invalid request: body, query or header (details names the fields)"),
    401: ("Unauthorized", "Missing, invalid, expired or revoked key, or a bad signature; or"
                          " no valid key from an address blocked after repeated failures"
                          " (your_ip)"),
    403: ("Forbidden", "IP blocked or not allowed (your_ip), key lacks the scope, or key"
                       " suspended from spawning"),
    404: ("NotFound", "No such resource"),
    409: ("Conflict", "State conflict, or Idempotency-Key reused for another request or"
                      " still in progress"),
    410: ("Gone", "This v3 endpoint is past its sunset date (successor names the v4 path)"),
    413: ("PayloadTooLarge", "Request body over the size limit"),
    429: ("TooManyRequests", "Rate limit, concurrency limit, provider hourly limit or daily"
                             " budget reached"),
    500: ("InternalError", "Unexpected failure (logged with the request id)"),
    503: ("ServiceUnavailable", "No usable provider for the model, or a transient failure"),
}
RETRY_AFTER = (429, 503)
LEGACY_HEADERS = ("Deprecation", "Sunset", "Link")


def headers(*names: str) -> dict:
    common = ("X-Request-Id", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
    return {n: {"$ref": f"#/components/headers/{n}"} for n in (*common, *names)}


def error_response(status: int, legacy: bool) -> dict:
    if not legacy:
        return {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
    extra = ("Retry-After",) if status in RETRY_AFTER else ()
    return {"description": ERRORS[status][1], "headers": headers(*extra, *LEGACY_HEADERS),
            "content": {JSON: {"schema": ref("Error")}}}


def add_components(spec: APISpec, config: dict) -> None:
    for name, schema in RESPONSE_SCHEMAS.items():
        spec.components.schema(name, schema=schema)
    for name, schema in (("SpawnRequest", s.SpawnRequest(config)),
                         ("TeamSpawnRequest", s.TeamSpawnRequest(config)),
                         ("RecommendRequest", s.RecommendRequest(config))):
        spec.components.schema(name, schema=schema)
    for kind in KINDS:
        spec.components.schema(f"Filter{kind.title()}", filter_value(kind))
    for name, (schema, description) in HEADERS.items():
        spec.components.header(name, {"schema": schema, "description": description})
    for status, (name, description) in ERRORS.items():
        extra = ("Retry-After",) if status in RETRY_AFTER else ()
        spec.components.response(name, {"description": description, "headers": headers(*extra),
                                        "content": {JSON: {"schema": ref("Error")}}})
    spec.components.response("URITooLong", {
        "description": "Request line over 4094 bytes: refused by the HTTP server (gunicorn)"
                       " before the API sees it, as an HTML page",
        "content": {"text/html": {"schema": STR}}})
    spec.components.parameter("IdempotencyKey", "header", {
        "name": "Idempotency-Key", "required": False,
        "schema": {**STR, "minLength": 1, "maxLength": 255},
        "description": "1..255 characters, bare or in double quotes; scoped to the API key"})
    spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer", "description": "An API key: <env>_sk_<random>"})
    spec.components.security_scheme("legacyApiKey", {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "The v3 header; v3 endpoints only"})
    spec.components.security_scheme("requestTimestamp", {
        "type": "apiKey", "in": "header", "name": "X-Timestamp",
        "description": "Signed requests: ISO 8601 time, within 300 s of the server's"})
    spec.components.security_scheme("requestSignature", {
        "type": "apiKey", "in": "header", "name": "X-Signature",
        "description": "Signed requests: hex HMAC-SHA256 with the key's api_secret"})


# -- custom marshmallow fields ----------------------------------------------------------

def custom_fields(self, field, ret, **kwargs) -> dict:
    """JSON Schema of this project's own fields (apispec sees only their base class)."""
    text = r"\S"  # these strings are trimmed first, so they need a non-space character
    if isinstance(field, s.TaskField):
        return {"minLength": 1, "maxLength": 2000, "pattern": text,
                "description": "1..2000 characters after trimming"}
    if isinstance(field, sec.Reason):
        return {"minLength": 1, "maxLength": 200, "pattern": text}
    if isinstance(field, sec.Network):
        return {"description": "An IP address or CIDR network (no host bits set)"}
    if isinstance(field, sec.Address):
        return {"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
                "description": "One IPv4 or IPv6 address"}
    if isinstance(field, fields.Url):
        return {"pattern": "^https?://"}  # the schemas here allow http and https only
    if isinstance(field, sec.Hours):
        hours = {"type": ["number", "null"] if field.allow_none else "number",
                 "exclusiveMinimum": 0, "maximum": sec.MAX_BLOCK_HOURS}
        return {**hours, "description": "Hours; null or absent: until unblocked"}
    return {}


# -- the document -----------------------------------------------------------------------

def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def api_routes(app: Flask):
    """(path, method, endpoint without the v4_ prefix, view) of every /api route, once."""
    seen = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = openapi_path(rule.rule.replace(V4_PREFIX, "/api/", 1))
        endpoint = rule.endpoint.removeprefix("v4_")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if (path, method) not in seen:
                seen.add((path, method))
                yield path, method, endpoint, app.view_functions[rule.endpoint]


def security(scope: str | None, legacy: bool) -> list:
    roles = [scope] if scope else []
    schemes = ["bearerAuth", "legacyApiKey"] if legacy else ["bearerAuth"]
    signed = {"requestTimestamp": [], "requestSignature": []}
    return [requirement for scheme in schemes
            for requirement in ({scheme: roles}, {scheme: roles, **signed})]


def success_response(status: int, body, location: bool, legacy: bool) -> dict:
    if isinstance(body, dict) and "description" in body:
        response = dict(body)
    else:
        response = {"description": "OK" if status == 200 else "Accepted" if status == 202
                    else "Created", "content": {JSON: {"schema": body}}}
    response["headers"] = headers(*(("Location",) if location else ()),
                                  *(LEGACY_HEADERS if legacy else ()))
    return response


def operation(path: str, method: str, endpoint: str, view, op: Op, config: dict,
              retired: bool) -> dict:
    """One operation; `retired`: the v3 sunset has passed, so v3 operations answer 410."""
    authenticated = hasattr(view, "required_scope")
    scope = getattr(view, "required_scope", None)
    legacy = getattr(view, "legacy_auth", False)
    write = authenticated and method in WRITES
    doc = (view.__doc__ or endpoint).strip()
    statuses = {401, 403, 429, 500, *op.errors}  # 401, 403: the IP guard, on every route
    if write:
        statuses |= {400, 409, 413}
    if op.body is not None:
        statuses.add(400)
    if "{" in path:
        statuses.add(404)
    if legacy:
        statuses.add(410)
    if legacy and retired:  # refused after authentication, whatever the request holds
        statuses, op = {401, 403, 410, 429, 500}, Op(ok={})
        doc += (f"\n\nRetired on {config['legacy_v3']['sunset']}: every request with a valid"
                " key answers 410 Gone, naming the v4 successor.")
    responses = {str(code): success_response(code, body, op.location, legacy)
                 for code, body in op.ok.items()}
    responses.update({str(code): error_response(code, legacy) for code in sorted(statuses)})
    responses["414"] = {"$ref": "#/components/responses/URITooLong"}
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": {**STR, "minLength": 1, "pattern": "^[^/]+$"}}
                  for name in re.findall(r"{([^}]+)}", path)]
    parameters += list(op.query)
    if write and not (legacy and retired):
        parameters.append("IdempotencyKey")  # apispec makes a name into a $ref
    spec_op = {"operationId": endpoint.replace(".", "_"), "summary": doc.splitlines()[0],
               "description": doc, "tags": [endpoint.split(".")[0]],
               "responses": responses}
    if authenticated:
        spec_op["x-required-scope"] = scope  # null: any valid key
        spec_op["security"] = security(scope, legacy)
        spec_op["description"] += (f"\n\nRequires the `{scope}` scope." if scope
                                   else "\n\nAny valid API key.")
    else:
        spec_op["security"] = []
        spec_op["description"] += "\n\nNo API key needed."
    if legacy:
        spec_op["deprecated"] = True
    if parameters:
        spec_op["parameters"] = parameters
    if op.body is not None:
        body = op.body(config) if callable(op.body) and not isinstance(op.body, type) \
            else op.body
        spec_op["requestBody"] = {"required": op.body_required,
                                  "content": {JSON: {"schema": body}}}
    return spec_op


def build(app: Flask, config: dict, retired: bool) -> dict:
    """The document for this app under this config (`retired`: past the v3 sunset)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(title="J1MSKY API", version=__version__, openapi_version="3.1.0",
                   plugins=[plugin], info={"description": DESCRIPTION},
                   servers=[{"url": "/", "description": "This service; each /api path but"
                                                       " the v3 ones is also under /api/v4"}])
    plugin.converter.add_attribute_function(custom_fields)
    plugin.map_to_openapi_type(fields.Url, "string", "uri")
    add_components(spec, config)
    paths: dict[str, dict] = {}
    for path, method, endpoint, view in api_routes(app):
        op = OPERATIONS.get(endpoint, Op(ok={200: obj()}))
        paths.setdefault(path, {})[method.lower()] = operation(path, method, endpoint, view,
                                                               op, config, retired)
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    batch = document["components"]["schemas"]["SpawnBatchRequest"]["properties"]["agents"]
    batch["items"] = ref("SpawnRequest")  # each item is validated as a spawn request
    document["components"]["schemas"]["IPWhitelistRequest"]["minProperties"] = 1
    return document


def document(app: Flask) -> dict:
    """The document, cached per process; rebuilt when config changes an enum it lists,
    and when the v3 sunset passes."""
    config = current_config()
    retired = clock.now() >= sunset()
    key = json.dumps([sorted(config["models"]), sorted(config["teams"]),
                      sorted(config["routing"]["task_models"]),
                      config["agents"]["max_timeout"], config["legacy_v3"]["sunset"], retired])
    cached = app.extensions.get("j1msky_openapi")
    if cached is None or cached[0] != key:
        cached = (key, build(app, config, retired))
        app.extensions["j1msky_openapi"] = cached
    return cached[1]

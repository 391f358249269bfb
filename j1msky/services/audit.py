"""The audit trail: who did what, from where; levels, event choice, retention, no secrets.

Call ``record(conn, config, event, ...)`` wherever something auditable happens, on the
connection of the transaction that makes it happen (the entry commits or rolls back with
it). Views can use ``j1msky.api.audit.record_request``, which fills in the caller's key,
IP, user agent and request id. Whatever a caller passes, secrets are scrubbed before a
byte reaches the database.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from typing import Any

from ..config import AUDIT_EVENTS
from . import clock, jsontext, privacy

EVENTS = AUDIT_EVENTS
SEVERITIES = ("info", "warning", "critical")
LEVELS = ("minimal", "standard", "verbose")
REDACTED = "[redacted]"
MAX_TEXT = 65536  # characters kept of a stored body
MAX_FIELD = 512  # characters kept of user_agent, request_id, resource type and id

# Values under these names are secrets whatever they look like. Names are compared in
# snake case without an "x_" header prefix, so "X-API-Key" and "X-Signature" count.
SECRET_NAMES = {"key", "api_key", "apikey", "secret", "api_secret", "client_secret",
                "signature", "authorization", "proxy_authorization", "password", "passwd",
                "passphrase", "token", "cookie", "set_cookie", "master"}
SECRET_SUFFIXES = ("_key", "_secret", "_signature", "_password", "_token")

# Secrets recognised by their form, anywhere inside a string.
SECRET_PATTERNS = (
    re.compile(r"(?:live|staging|dev)_sk_[A-Za-z0-9_-]{20,}"),  # J1MSKY API key
    re.compile(r"sig_[0-9a-fA-F]{64}"),  # request signing secret (api_secret)
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),  # webhook secret
    re.compile(r"(?i)\bbearer\s+[^\s\"',;]+"),  # any bearer credential
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),  # provider keys (Anthropic, OpenAI style)
    re.compile(r"\bv1,[A-Za-z0-9+/]{43}="),  # Standard Webhooks signature
    re.compile(r"\b[0-9a-fA-F]{64}\b"),  # hex HMAC-SHA256: X-Signature, master secret
)
# In a body that is not JSON (form data, headers as text): "password=...", "X-Api-Key: ...".
ASSIGNMENT = re.compile(r"(?i)\b([\w-]*(?:key|secret|signature|password|passwd|token|authorization"
                        r"|cookie))(\s*[=:]\s*)(?:(?:basic|bearer|digest|token)\s+)?[^\s&\"',;]+")


def wanted(config: dict, event: str, severity: str = "info") -> bool:
    """Whether the audit settings in config record this event at this severity.

    minimal: warning/critical entries and security.violation; standard: all but
    api.key.used; verbose: everything. Only events listed in ``audit.events``.
    """
    settings = config["audit"]
    if not settings["enabled"] or event not in settings["events"]:
        return False
    level = settings["log_level"]
    if level == "minimal":
        return severity in ("warning", "critical") or event == "security.violation"
    if level == "standard":
        return event != "api.key.used"
    return True


def record(conn: sqlite3.Connection, config: dict, event: str, **fields) -> int | None:
    """Write one audit entry (see `entry`) if the settings want it; return its id, or
    None if skipped."""
    return insert(conn, entry(config, event, **fields))


def entry(config: dict, event: str, *, severity: str = "info",
          api_key_id: str | None = None, ip_address: str | None = None,
          user_agent: str | None = None, request_id: str | None = None,
          resource: dict | None = None, details: dict | None = None,
          request_body: Any = None, response_body: Any = None,
          mask_pii: bool = False) -> dict | None:
    """The audit_log row of one entry, or None if the settings do not want it; made
    before a transaction so the write lock is held only for its INSERT.

    ``event`` is one of EVENTS, ``severity`` one of SEVERITIES (anything else is a bug:
    ValueError). ``resource`` is ``{"type": ..., "id": ...}``; ``details`` a JSON-able
    dict. Bodies (str, bytes or JSON-able values) are kept only when the settings
    include them. Secrets in details, bodies and text fields become "[redacted]";
    ``mask_pii`` (the agent's ``mask_pii_in_logs``) also masks PII in details and bodies.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown audit severity {severity!r}")
    if not wanted(config, event, severity):
        return None
    settings = config["audit"]
    details = scrub(details or {})
    request_text = body_text(request_body) if settings["include_request_body"] else None
    response_text = body_text(response_body) if settings["include_response_body"] else None
    if mask_pii:
        details = privacy.mask_value(details)
        request_text = None if request_text is None else privacy.mask(request_text)
        response_text = None if response_text is None else privacy.mask(response_text)
    resource = resource or {}
    return {"timestamp": clock.now_iso(), "event": event, "severity": severity,
            "api_key_id": short(api_key_id), "ip_address": short(ip_address),
            "user_agent": short(user_agent), "request_id": short(request_id),
            "resource_type": short(resource.get("type")),
            "resource_id": short(resource.get("id")),
            "details": json.dumps(details, default=str), "request_body": request_text,
            "response_body": response_text}


def insert(conn: sqlite3.Connection, row: dict | None) -> int | None:
    """Write an entry made by `entry` (None: nothing to write); its id."""
    if row is None:
        return None
    return conn.execute(
        "INSERT INTO audit_log (timestamp, event, severity, api_key_id, ip_address, user_agent,"
        " request_id, resource_type, resource_id, details, request_body, response_body)"
        " VALUES (:timestamp, :event, :severity, :api_key_id, :ip_address, :user_agent,"
        " :request_id, :resource_type, :resource_id, :details, :request_body,"
        " :response_body)", row).lastrowid


def entry_view(row: sqlite3.Row) -> dict:
    """An audit_log row in the API's "Audit Log Entry" shape (bodies only when stored)."""
    entry = {
        "id": f"aud_{row['id']}",
        "timestamp": clock.iso_out(row["timestamp"]),
        "event": row["event"],
        "severity": row["severity"],
        "api_key_id": row["api_key_id"],
        "ip_address": row["ip_address"],
        "user_agent": row["user_agent"],
        "request_id": row["request_id"],
        "resource": {"type": row["resource_type"], "id": row["resource_id"]},
        "details": json.loads(row["details"]),
    }
    for name in ("request_body", "response_body"):
        if row[name] is not None:
            entry[name] = parsed(row[name])
    return entry


def purge(conn: sqlite3.Connection, config: dict) -> int:
    """Delete entries older than ``retention.audit_days``; return how many went."""
    cutoff = clock.iso(clock.now() - dt.timedelta(days=config["retention"]["audit_days"]))
    return conn.execute("DELETE FROM audit_log WHERE timestamp < ?", (cutoff,)).rowcount


def settings(config: dict) -> dict:
    """The options of POST /security/audit as they stand in config."""
    audit = config["audit"]
    return {"enabled": audit["enabled"], "log_level": audit["log_level"],
            "retention_days": config["retention"]["audit_days"],
            "include_request_body": audit["include_request_body"],
            "include_response_body": audit["include_response_body"],
            "events": list(audit["events"])}


def write_settings(user: dict, options: dict) -> None:
    """Put POST /security/audit options into a config.json dict (for ConfigStore.update)."""
    options = dict(options)
    if "retention_days" in options:
        retention = user.setdefault("retention", {})
        retention["audit_days"] = options.pop("retention_days")
    if options:
        user["audit"] = {**user.get("audit", {}), **options}


def changes(old: dict, new: dict) -> dict:
    """Options whose value differs: name -> {"old", "new"}."""
    return {name: {"old": old[name], "new": new[name]}
            for name in new if old.get(name) != new[name]}


def weakens(old: dict, new: dict) -> bool:
    """Whether new settings record less than old ones (worth a warning entry)."""
    return ((old["enabled"] and not new["enabled"])
            or bool(set(old["events"]) - set(new["events"]))
            or LEVELS.index(new["log_level"]) < LEVELS.index(old["log_level"])
            or new["retention_days"] < old["retention_days"])


def secret_name(name: object) -> bool:
    """Whether a mapping key names a secret (api_key, X-Signature, webhook_secret, ...)."""
    snake = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_").removeprefix("x_")
    return snake in SECRET_NAMES or snake.endswith(SECRET_SUFFIXES)


def scrub_text(text: str) -> str:
    """text with every substring that looks like a secret replaced by "[redacted]"."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def scrub(value: Any) -> Any:
    """A JSON-able copy of value with secrets redacted, by key name and by form."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        # A flag such as require_signature is not a secret; any other value under such a name is.
        return {scrub_text(str(k)): REDACTED if secret_name(k) and v is not None
                and not isinstance(v, bool) else scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [scrub(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub_text(str(value))


def body_text(body: Any) -> str | None:
    """A request or response body as scrubbed text (JSON bodies scrubbed field by field)."""
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = jsontext.loads(body)
        except ValueError:
            return ASSIGNMENT.sub(rf"\1\2{REDACTED}", scrub_text(body))[:MAX_TEXT]
    return json.dumps(scrub(body), default=str)[:MAX_TEXT]


def parsed(text: str) -> Any:
    """A stored body as JSON when it is JSON, else as the text it is."""
    try:
        return jsontext.loads(text)
    except ValueError:
        return text


def short(value: Any) -> str | None:
    """A scrubbed, bounded text column."""
    return None if value is None else scrub_text(str(value))[:MAX_FIELD]

"""config.json: defaults from config.example.json, validation, hot reload, atomic writes."""
from __future__ import annotations

import copy
import ipaddress
import json
import logging
import os
import tempfile
import threading
import time
import zoneinfo
from importlib import resources

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

log = logging.getLogger(__name__)

# Sections that are collections of named things: a user's value replaces the
# default whole, so a default model or team can be removed.
REPLACED_SECTIONS = {"providers", "models", "teams"}

Str = fields.String
Bool = fields.Boolean
NonNegative = validate.Range(min=0)
Positive = validate.Range(min=0, min_inclusive=False)


def Int(**kw):
    return fields.Integer(strict=True, **kw)


def Num(**kw):
    return fields.Float(**kw)


def network(value: str) -> None:
    """An IP address or CIDR block."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError(f"'{value}' is not an IP address or network") from None


class ServerSchema(Schema):
    host = Str()
    port = Int(validate=validate.Range(min=1, max=65535))
    threads = Int(validate=validate.Range(min=1, max=256))
    max_body_bytes = Int(validate=Positive)
    request_timeout = Num(validate=Positive)
    max_connections_per_address = Int(validate=validate.Range(min=1))
    access_log = Bool()


class ProviderSchema(Schema):
    kind = Str(required=True, validate=validate.OneOf(["anthropic", "openai", "simulated"]))
    base_url = Str()
    api_key_env = Str()
    hourly = Int(required=True, validate=NonNegative)
    delay = Num(validate=NonNegative)


class ModelSchema(Schema):
    provider = Str(required=True)
    upstream = Str(required=True)
    input_per_1k = Num(required=True, validate=NonNegative)
    output_per_1k = Num(required=True, validate=NonNegative)
    fallback = Str(allow_none=True)


class StepSchema(Schema):
    model = Str(required=True)
    role = Str(required=True)


class TeamSchema(Schema):
    steps = fields.List(fields.Nested(StepSchema), required=True, validate=validate.Length(min=1))


class ThresholdSchema(Schema):
    notice = Num(validate=validate.Range(min=0, max=100))
    warning = Num(validate=validate.Range(min=0, max=100))
    critical = Num(validate=validate.Range(min=0, max=100))


class BudgetSchema(Schema):
    daily = Num(validate=NonNegative)
    monthly_ceiling = Num(validate=NonNegative)
    alert_thresholds = fields.Nested(ThresholdSchema)


class RoutingSchema(Schema):
    task_models = fields.Dict(keys=Str(), values=fields.List(Str()))


class AgentsSchema(Schema):
    workers = Int(validate=validate.Range(min=1, max=64))
    default_timeout = Num(validate=Positive)
    max_timeout = Num(validate=Positive)
    max_concurrent_per_key = Int(validate=validate.Range(min=1))
    max_output_tokens = Int(validate=validate.Range(min=1))
    shutdown_grace_seconds = Num(validate=NonNegative)


class ProviderCallsSchema(Schema):
    retries = Int(validate=validate.Range(min=0, max=10))
    backoff_base = Num(validate=NonNegative)
    backoff_max = Num(validate=NonNegative)
    circuit_threshold = Int(validate=validate.Range(min=1))
    circuit_timeout = Num(validate=NonNegative)
    connect_timeout = Num(validate=Positive)
    read_timeout = Num(validate=Positive)
    simulated_delay = Num(validate=NonNegative)


LIMIT = validate.Regexp(r"^\d+\s*(/|per)\s*\d*\s*(second|minute|hour|day)s?$")


class RateLimitsSchema(Schema):
    spawn = Str(validate=LIMIT)
    agent = Str(validate=LIMIT)
    agents = Str(validate=LIMIT)
    system = Str(validate=LIMIT)
    per_ip = Str(validate=LIMIT)


class SecuritySchema(Schema):
    allowed_ips = fields.List(Str(validate=network))
    enforce = Bool()
    log_violations = Bool()
    trusted_proxies = fields.List(Str(validate=network))
    require_signed_requests = Bool()
    cost_spike_per_hour = Num(validate=NonNegative)
    rotation_grace_hours = Num(validate=NonNegative)
    signature_window_seconds = Num(validate=Positive)
    auth_failures_to_block = Int(validate=validate.Range(min=1))
    auth_failure_window_seconds = Num(validate=Positive)
    auto_block_hours = Num(validate=Positive)


AUDIT_EVENTS = ("agent.spawn", "agent.complete", "agent.fail", "api.key.used", "config.change",
                "security.violation")


class AuditSchema(Schema):
    enabled = Bool()
    log_level = Str(validate=validate.OneOf(["minimal", "standard", "verbose"]))
    include_request_body = Bool()
    include_response_body = Bool()
    events = fields.List(Str(validate=validate.OneOf(AUDIT_EVENTS)))


class WebhooksSchema(Schema):
    deny_private_networks = Bool()
    allowed_networks = fields.List(Str(validate=network))
    timeout_seconds = Num(validate=Positive)
    workers = Int(validate=validate.Range(min=1, max=32))
    max_in_flight_per_webhook = Int(validate=validate.Range(min=1, max=32))
    retry_schedule_seconds = fields.List(Num(validate=NonNegative), validate=validate.Length(min=1))


class RetentionSchema(Schema):
    agents_days = Int(validate=validate.Range(min=1))
    audit_days = Int(validate=validate.Range(min=1))
    events_days = Int(validate=validate.Range(min=1))


class StreamsSchema(Schema):
    max_open = Int(allow_none=True, validate=NonNegative)  # None: half of server.threads
    max_seconds = Num(validate=Positive)
    heartbeat_seconds = Num(validate=Positive)
    retry_seconds = Num(validate=NonNegative)


class DatabaseSchema(Schema):
    durability = Str(validate=validate.OneOf(["power_cut", "crash"]))


class LegacySchema(Schema):
    sunset = fields.Date()


class DashboardSchema(Schema):
    idle_timeout_minutes = Num(validate=Positive)
    session_lifetime_hours = Num(validate=Positive)


class ConfigSchema(Schema):
    environment = Str(validate=validate.OneOf(["live", "staging", "dev"]))
    timezone = Str()
    simulate_missing_providers = Bool()
    server = fields.Nested(ServerSchema)
    providers = fields.Dict(keys=Str(), values=fields.Nested(ProviderSchema))
    models = fields.Dict(keys=Str(), values=fields.Nested(ModelSchema),
                         validate=validate.Length(min=1))
    teams = fields.Dict(keys=Str(), values=fields.Nested(TeamSchema))
    budget = fields.Nested(BudgetSchema)
    routing = fields.Nested(RoutingSchema)
    agents = fields.Nested(AgentsSchema)
    provider_calls = fields.Nested(ProviderCallsSchema)
    rate_limits = fields.Nested(RateLimitsSchema)
    security = fields.Nested(SecuritySchema)
    webhooks = fields.Nested(WebhooksSchema)
    audit = fields.Nested(AuditSchema)
    retention = fields.Nested(RetentionSchema)
    streams = fields.Nested(StreamsSchema)
    database = fields.Nested(DatabaseSchema)
    legacy_v3 = fields.Nested(LegacySchema)
    dashboard = fields.Nested(DashboardSchema)

    @validates_schema
    def check_references(self, data, **kwargs):
        errors = {}
        models = data.get("models", {})
        for name, model in models.items():
            if model["provider"] not in data.get("providers", {}):
                errors[f"models.{name}.provider"] = [f"unknown provider '{model['provider']}'"]
            if model.get("fallback") and model["fallback"] not in models:
                errors[f"models.{name}.fallback"] = [f"unknown model '{model['fallback']}'"]
        for team, spec in data.get("teams", {}).items():
            for i, step in enumerate(spec["steps"]):
                if step["model"] not in models:
                    errors[f"teams.{team}.steps.{i}.model"] = [f"unknown model '{step['model']}'"]
        for task, names in data.get("routing", {}).get("task_models", {}).items():
            for name in names:
                if name not in models:
                    errors[f"routing.task_models.{task}"] = [f"unknown model '{name}'"]
        tz = data.get("timezone")
        if tz is not None:
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                errors["timezone"] = [f"unknown time zone '{tz}'"]
        agents = data.get("agents", {})
        if agents.get("default_timeout", 0) > agents.get("max_timeout", float("inf")):
            errors["agents.default_timeout"] = ["must not exceed agents.max_timeout"]
        threads = data.get("server", {}).get("threads", 1)
        if (data.get("streams", {}).get("max_open") or 0) > threads // 2:
            errors["streams.max_open"] = [f"must not exceed half of server.threads ({threads // 2}):"
                                          " streams would hold the threads other requests need"]
        if errors:
            raise ValidationError(errors)


def current() -> dict:
    """The config in force for the running app."""
    return current_app.extensions["j1msky_config"].get()


class ConfigError(Exception):
    """config.json cannot be used; the message names the offending key."""


def example_text() -> str:
    return resources.files("j1msky").joinpath("config.example.json").read_text()


def defaults() -> dict:
    return json.loads(example_text())


def merge(base: dict, override: dict) -> dict:
    """Overlay a user config on the defaults, one level deep per section."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) \
                and key not in REPLACED_SECTIONS:
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def flatten_errors(messages, prefix: str = "") -> list[str]:
    out = []
    for key, value in messages.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(flatten_errors(value, path + "."))
        else:
            out.append(f"{path}: {'; '.join(map(str, value))}")
    return out


def validate_config(user: object) -> dict:
    """Return the effective config (defaults + user) or raise ConfigError."""
    if not isinstance(user, dict):
        raise ConfigError("config.json must hold a JSON object")
    merged = merge(defaults(), user)
    errors = ConfigSchema().validate(merged)
    if errors:
        raise ConfigError("invalid config.json: " + ", ".join(flatten_errors(errors)))
    return merged


def load_file(path: str) -> dict:
    """Read and validate config.json; a missing file means all defaults."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return validate_config({})
    try:
        user = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"config.json is not valid JSON: {exc}") from None
    return validate_config(user)


def write_atomic(path: str, data: dict) -> None:
    """Write JSON to a temp file beside path and rename it over path."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".config-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ConfigStore:
    """The config in force; reloads when the file's mtime changes, keeps the last good one."""

    def __init__(self, path: str, check_interval: float = 1.0):
        self.path = path
        self.check_interval = check_interval  # seconds between looks at the file's mtime
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._config = self._load()

    def _file_stamp(self):
        try:
            st = os.stat(self.path)
            return (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return None

    def _load(self) -> dict:
        return load_file(self.path)

    def get(self) -> dict:
        now = time.monotonic()
        if now - self._checked_at < self.check_interval:
            return self._config
        self._checked_at = now
        stamp = self._file_stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._stamp = stamp
                    try:
                        self._config = self._load()
                        log.info("config.json reloaded")
                    except ConfigError as exc:
                        log.error("%s; keeping the last good config", exc)
        return self._config

    def update(self, change) -> dict:
        """Apply change(user_dict) to the file on disk atomically; validate first."""
        with self._lock:
            try:
                with open(self.path, encoding="utf-8") as fh:
                    user = json.load(fh)
            except FileNotFoundError:
                user = {}
            change(user)
            config = validate_config(user)
            write_atomic(self.path, user)
            self._stamp = self._file_stamp()
            self._config = config
            return config

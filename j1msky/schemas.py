"""Request and response schemas (marshmallow); they also feed the OpenAPI document."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from .services.events import TYPES as EVENT_TYPES
from .services.keys import SCOPES


class StrictInteger(fields.Integer):
    """An integer that refuses strings, floats and booleans."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class StrictBoolean(fields.Boolean):
    """true or false, not "yes" or 1."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class KeyCreateRequest(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    scopes = fields.List(fields.String(validate=validate.OneOf(SCOPES)), required=True,
                         validate=validate.Length(min=1))
    signing = StrictBoolean(load_default=False)
    require_signature = StrictBoolean(load_default=False)
    max_concurrent_agents = StrictInteger(load_default=None, allow_none=True,
                                          validate=validate.Range(min=1, max=1000))


class KeyRevokeRequest(Schema):
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    notify_user = StrictBoolean(load_default=False)


class TaskField(fields.String):
    """Task text: trimmed, 1..2000 characters."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("Task cannot be empty")
        if len(text) > 2000:
            raise ValidationError("Task must be at most 2000 characters")
        return text


PRIORITIES = ("low", "normal", "high")


def one_of(label: str, choices) -> validate.OneOf:
    return validate.OneOf(choices, error=f"{label} must be one of: {', '.join(choices)}")


class PrivacyOptions(Schema):
    detect_pii = StrictBoolean(load_default=False)
    mask_pii_in_logs = StrictBoolean(load_default=False)
    encrypt_output = StrictBoolean(load_default=False)
    retention_days = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(
        min=1, max=3650, error="retention_days must be between 1 and 3650"))


class AgentRequest(Schema):
    """Fields common to spawn and spawn-team; built against the config in force."""

    task = TaskField(required=True, error_messages={"required": "Task cannot be empty",
                                                    "null": "Task cannot be empty",
                                                    "invalid": "Task must be a string"})
    priority = fields.String(load_default="normal", validate=one_of("Priority", PRIORITIES),
                             error_messages={"invalid": "Priority must be a string"})
    timeout = StrictInteger(error_messages={"invalid": "Timeout must be a whole number of seconds"})
    privacy = fields.Nested(PrivacyOptions, load_default=None)

    def __init__(self, config: dict, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        agents = config["agents"]
        self.fields["timeout"].validators = [validate.Range(
            min=1, max=agents["max_timeout"],
            error=f"Timeout must be between 1 and {agents['max_timeout']:g} seconds")]

    @post_load
    def fill_defaults(self, data, **kwargs):
        data.setdefault("timeout", self.config["agents"]["default_timeout"])
        return data


class SpawnRequest(AgentRequest):
    model = fields.String(load_default=None, error_messages={"invalid": "Model must be a string"})

    def __init__(self, config: dict, **kwargs):
        super().__init__(config, **kwargs)
        self.fields["model"].validators = [one_of("Model", list(config["models"]))]


class SpawnBatchRequest(Schema):
    agents = fields.List(fields.Dict(), required=True,
                         validate=validate.Length(min=1, max=50,
                                                  error="agents must hold 1 to 50 spawn requests"))


COMPLEXITIES = ("low", "medium", "high")


class RecommendRequest(Schema):
    task_type = fields.String(required=True)
    complexity = fields.String(load_default="medium", validate=one_of("Complexity", COMPLEXITIES))
    priority = fields.String(load_default="normal", validate=one_of("Priority", PRIORITIES))
    estimated_tokens = StrictInteger(
        load_default=1000, validate=validate.Range(
            min=1, max=1_000_000, error="estimated_tokens must be between 1 and 1000000"))

    def __init__(self, config: dict, **kwargs):
        super().__init__(**kwargs)
        self.fields["task_type"].validators = [
            one_of("task_type", list(config["routing"]["task_models"]))]


class TeamSpawnRequest(AgentRequest):
    team = fields.String(required=True)

    def __init__(self, config: dict, **kwargs):
        super().__init__(config, **kwargs)
        self.fields["team"].validators = [validate.OneOf(
            list(config["teams"]),
            error=f"Team must be one of: {', '.join(config['teams'])}")]


class BillingQuery(Schema):
    start = fields.Date(error_messages={"invalid": "start must be a date (YYYY-MM-DD)"})
    end = fields.Date(error_messages={"invalid": "end must be a date (YYYY-MM-DD)"})
    format = fields.String(load_default="json", validate=one_of("format", ("json", "csv")))

    @validates_schema
    def end_not_before_start(self, data, **kwargs):
        if "start" in data and "end" in data and data["end"] < data["start"]:
            raise ValidationError({"end": ["end must not be before start"]})


class WebhookCreateRequest(Schema):
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                     error_messages={"invalid": "url must be an absolute http or https URL"})
    events = fields.List(
        fields.String(validate=one_of("Event", EVENT_TYPES)), required=True,
        validate=validate.Length(min=1, error="events must name at least one event"))
    secret = fields.String(load_default=None, allow_none=True,
                           validate=validate.Length(min=8, max=200))


class ListLimit(Schema):
    limit = StrictInteger(load_default=20, validate=validate.Range(min=1, max=100))

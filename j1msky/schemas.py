"""Request and response schemas (marshmallow); they also feed the OpenAPI document."""
from __future__ import annotations

from marshmallow import (
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from .services.events import TYPES as EVENT_TYPES
from .services.keys import SCOPES


class StrictInteger(fields.Integer):
    """An integer that refuses strings, fractions and booleans; 30.0 is 30, as JSON
    Schema's integer says."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
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
    expires_in_days = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(
        min=1, max=3650, error="expires_in_days must be between 1 and 3650"),
        metadata={"description": "The key stops working this many days from now"
                                 " (default: never)"})


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


# -- Responses: what the API answers. They validate nothing at run time; they describe
# the bodies in the OpenAPI document (j1msky/openapi.py), which the tests check against
# real answers.

AGENT_STATUSES = ("spawning", "running", "completed", "failed", "cancelled")


class ResponseSchema(Schema):
    """A response body; clients should accept fields added in later versions."""

    class Meta:
        unknown = INCLUDE


class ErrorDetail(ResponseSchema):
    code = fields.Integer(required=True, metadata={"description": "The HTTP status"})
    message = fields.String(required=True)
    request_id = fields.String(required=True, metadata={"description": "As in X-Request-Id"})
    details = fields.Dict(metadata={"description": "Validation errors: field -> messages"
                                                   " (nested for list items)"})
    retry_after = fields.Integer(metadata={"description": "Seconds to wait (429 and 503)"})
    your_ip = fields.String(metadata={"description": "The address refused (IP refusals)"})
    successor = fields.String(metadata={"description": "The v4 path to use (v3 410 Gone)"})


class ErrorResponse(ResponseSchema):
    """Every error, on every endpoint."""

    success = fields.Boolean(required=True, validate=validate.Equal(False))
    error = fields.Nested(ErrorDetail, required=True)


class TokenUsage(ResponseSchema):
    input_tokens = fields.Integer(required=True)
    output_tokens = fields.Integer(required=True)


class AgentView(ResponseSchema):
    """The agent object (CONTRACT section 5)."""

    agent_id = fields.String(required=True)
    model = fields.String(required=True)
    team = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(AGENT_STATUSES))
    task = fields.String(required=True, allow_none=True,
                         metadata={"description": "null once erased"})
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    timeout = fields.Float(required=True, metadata={"description": "Seconds"})
    created_at = fields.DateTime(required=True)
    started_at = fields.DateTime(required=True, allow_none=True)
    completed_at = fields.DateTime(required=True, allow_none=True)
    result = fields.String(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    estimated_cost = fields.Float(required=True, metadata={"description": "Dollars"})
    actual_cost = fields.Float(required=True, metadata={"description": "Dollars"})
    pending_charge = fields.Float(required=True, metadata={
        "description": "Dollars reserved for provider calls still in flight after the agent"
                       " ended (cancel, timeout); 0 once they settled"})
    estimated_charge = fields.Float(required=True, metadata={
        "description": "The part of actual_cost charged at an estimate because a call's"
                       " answer was lost after it was sent"})
    usage = fields.Nested(TokenUsage, required=True)
    fallback_from = fields.String(required=True, allow_none=True)
    steps = fields.List(fields.Dict(), required=True, allow_none=True,
                        metadata={"description": "Teams: each step's model, status, output,"
                                                 " cost, and estimated: true when part of"
                                                 " its cost is an estimate"})
    simulated = fields.Boolean(required=True)
    privacy = fields.Dict(required=True, allow_none=True)
    pii_detected = fields.List(fields.String(), required=True, allow_none=True)
    encrypted = fields.Boolean(required=True)
    data_erased_at = fields.DateTime(required=True, allow_none=True)


class AgentDetailView(AgentView):
    """GET /agent/{id}: the agent object plus the documented short names."""

    created = fields.DateTime(required=True)
    started = fields.DateTime(required=True, allow_none=True)
    completed = fields.DateTime(required=True, allow_none=True)
    cost = fields.Float(required=True)


class AgentCreated(ResponseSchema):
    """The answer to a spawn (202 Accepted)."""

    success = fields.Boolean(required=True)
    agent_id = fields.String(required=True)
    model = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(AGENT_STATUSES))
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITIES))
    timeout = fields.Float(required=True)
    estimated_cost = fields.Float(required=True)
    created_at = fields.DateTime(required=True)


class TeamCreated(AgentCreated):
    team = fields.String(required=True)
    models = fields.List(fields.String(), required=True,
                         metadata={"description": "provider/upstream-model of each step"})


class BatchCreated(ResponseSchema):
    success = fields.Boolean(required=True)
    count = fields.Integer(required=True)
    agents = fields.List(fields.Nested(AgentCreated), required=True)


class AgentCancelled(ResponseSchema):
    success = fields.Boolean(required=True)
    message = fields.String(required=True)
    agent_id = fields.String(required=True)
    status = fields.String(required=True)
    refund = fields.Float(required=True, metadata={"description": "Dollars released now"})
    pending_charge = fields.Float(required=True, metadata={
        "description": "Dollars still reserved for provider calls in flight; charged at"
                       " their real cost (or estimate) when they settle"})


class Pagination(ResponseSchema):
    """Offset pages carry total/offset/next_offset/previous_offset/next_cursor; cursor
    pages carry cursor (and total, except the event feed)."""

    limit = fields.Integer(required=True)
    has_more = fields.Boolean(required=True)
    total = fields.Integer(allow_none=True)
    offset = fields.Integer()
    next_offset = fields.Integer(allow_none=True)
    previous_offset = fields.Integer(allow_none=True)
    next_cursor = fields.String(allow_none=True)
    cursor = fields.String(allow_none=True)


class PageLinks(ResponseSchema):
    self = fields.String(required=True)
    next = fields.String(required=True, allow_none=True)
    prev = fields.String(required=True, allow_none=True)
    first = fields.String(required=True, allow_none=True)
    last = fields.String(required=True, allow_none=True)


class AgentTotals(ResponseSchema):
    total_cost = fields.Float(required=True, metadata={"description": "Dollars, whole filter"})
    by_model = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class AgentPage(ResponseSchema):
    data = fields.List(fields.Nested(AgentView), required=True)
    pagination = fields.Nested(Pagination, required=True)
    links = fields.Nested(PageLinks, required=True)
    meta = fields.Nested(AgentTotals, required=True)

"""What the console's pages share: scope checks and form errors."""
from __future__ import annotations

import functools

from flask import g
from marshmallow import ValidationError

from ..errors import APIError, first_message

# The nav: (endpoint, label, scope needed to see it).
SCOPE_PAGES = (
    ("dashboard.overview.index", "Overview", "agents:read"),
    ("dashboard.agents.index", "Agents", "agents:read"),
    ("dashboard.billing.index", "Billing", "billing:read"),
    ("dashboard.events.index", "Events", "agents:read"),
    ("dashboard.events.webhooks_index", "Webhooks", "admin:write"),
    ("dashboard.keys.index", "API keys", "admin:write"),
    ("dashboard.signin.sessions_page", "Sessions", "admin:write"),
    ("dashboard.settings.limits", "Limits", "admin:write"),
    ("dashboard.security.index", "Security", "admin:write"),
)


def has_scope(scope: str | None) -> bool:
    key = g.get("key")
    return key is not None and (scope is None or scope in key["scopes"].split())


def needs(scope: str):
    """A page for sessions whose key carries `scope`; others get a 403 page."""
    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not has_scope(scope):
                raise APIError(403, f"Your key lacks the '{scope}' scope needed here")
            return view(*args, **kwargs)
        return wrapped
    return decorator


def field_errors(exc: ValidationError) -> dict[str, str]:
    """One message per form field, in the API's words ('_form' for the rest)."""
    messages = exc.messages if isinstance(exc.messages, dict) else {"_form": exc.messages}
    out = {}
    for field, value in messages.items():
        out[field] = first_message({field: value})
    return out

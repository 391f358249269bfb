"""API rate limits (flask-limiter): per IP before authentication, per API key on named routes.

Limit values are read from config.json `rate_limits` on each request, so an edit applies
without a restart. flask-limiter keys a counter by its limit too, so a changed limit starts
with a fresh window.
"""
from __future__ import annotations

import math
import time

from flask import Flask, g, request
from flask_limiter import Limiter, RateLimitExceeded, RequestLimit

from .config import current as current_config
from .errors import error_response


def client_ip() -> str:
    """The caller's address; the one place that decides it (trusted proxies belong here)."""
    return request.remote_addr or "unknown"


def caller() -> str:
    """The API key a per-key limit counts against (auth sets g.key before the view runs)."""
    key = g.get("key")
    return f"key:{key['id']}" if key is not None else f"ip:{client_ip()}"


def configured(name: str):
    return lambda: current_config()["rate_limits"][name]


# The per-IP limit is an application limit: checked in the limiter's before_request, which
# init_app registers ahead of authentication. Route limits are checked when the view is called.
limiter = Limiter(client_ip, application_limits=[configured("per_ip")],
                  storage_uri="memory://", strategy="fixed-window")


def per_key(name: str, cost=1):
    """Decorator: `rate_limits.<name>` per API key, one counter for every route it marks.

    A shared limit's counter is named by its scope rather than the endpoint, so the /api
    and /api/v4 registrations of a view (and its v3 twin) count together.
    """
    return limiter.shared_limit(configured(name), scope=name, key_func=caller, cost=cost)


def batch_size() -> int:
    """A spawn-batch counts as one spawn per agent it asks for."""
    body = request.get_json(silent=True)
    agents_asked = body.get("agents") if isinstance(body, dict) else None
    return max(1, len(agents_asked)) if isinstance(agents_asked, list) else 1


spawn = per_key("spawn")
spawn_batch = per_key("spawn", cost=batch_size)
agent = per_key("agent")
agents = per_key("agents")
system = per_key("system")


def retry_after(limit: RequestLimit) -> int:
    """Whole seconds until the limit's window frees, at least 1."""
    return max(1, math.ceil(limit.window.reset_time - time.time()))


def add_headers(response):
    """X-RateLimit-* of the limit that decided this request.

    Not flask-limiter's headers_enabled: it also puts Retry-After on every success.
    """
    limit = limiter.current_limit
    if limit is not None:
        response.headers["X-RateLimit-Limit"] = str(limit.limit.amount)
        response.headers["X-RateLimit-Remaining"] = str(limit.remaining)
        response.headers["X-RateLimit-Reset"] = str(math.ceil(limit.window.reset_time))
    return response


def refuse(exc: RateLimitExceeded):
    limit = limiter.current_limit
    wait = retry_after(limit) if limit is not None else exc.limit.limit.get_expiry()
    return error_response(429, "Rate limit exceeded", retry_after=wait)


def init_app(app: Flask) -> None:
    """Call before auth.init_app: before_request hooks run in the order they are added."""
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, refuse)
    app.after_request(add_headers)

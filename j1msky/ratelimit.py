"""API rate limits (flask-limiter): per IP before authentication, per API key on named routes.

Limit values are read from config.json `rate_limits` on each request, so an edit applies
without a restart. flask-limiter keys a counter by its limit too, so a changed limit starts
with a fresh window.
"""
from __future__ import annotations

import functools
import math
import time

from flask import Flask, g, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from . import ipguard
from .config import current as current_config
from .errors import APIError, error_response


def client_ip() -> str:
    """The caller's address, as ipguard decides it (trusted proxies, X-Forwarded-For)."""
    return ipguard.client_ip()


def caller() -> str:
    """The API key a per-key limit counts against (auth sets g.key before the view runs)."""
    key = g.get("key")
    return f"key:{key['id']}" if key is not None else f"ip:{client_ip()}"


def configured(name: str):
    return lambda: current_config()["rate_limits"][name]


# Route limits (per key) are flask-limiter's, checked when the view is called, after
# authentication. The per-IP limit runs before authentication, in check_ip.
limiter = Limiter(client_ip, storage_uri="memory://", strategy="fixed-window")
ip_window = FixedWindowRateLimiter(MemoryStorage())


@functools.lru_cache(maxsize=16)
def parse_limit(text: str) -> RateLimitItem:
    return parse(text)


def check_ip() -> None:
    """Count every /api request against its address, before any key lookup.

    The limits library (flask-limiter's engine) directly: a flask-limiter application
    limit re-resolves and re-parses its limits on every request, a fifth of the cost of
    a cheap authenticated GET."""
    item = parse_limit(current_config()["rate_limits"]["per_ip"])
    g.ip_limit = item
    if not ip_window.hit(item, "per_ip", client_ip()):
        raise APIError(429, "Rate limit exceeded", retry_after=seconds_left(deciding_limit()))


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


def deciding_limit() -> tuple[int, int, float] | None:
    """(limit, remaining, reset time) of the limit that decided this request: the
    per-key one where the route has one, else the per-IP one."""
    limit = limiter.current_limit
    if limit is not None:
        return limit.limit.amount, limit.remaining, limit.window.reset_time
    item = g.get("ip_limit")
    if item is None:
        return None
    stats = ip_window.get_window_stats(item, "per_ip", client_ip())
    return item.amount, stats.remaining, stats.reset_time


def add_headers(response):
    """X-RateLimit-* of the limit that decided this request.

    Not flask-limiter's headers_enabled: it also puts Retry-After on every success.
    """
    decided = deciding_limit()
    if decided is not None:
        amount, remaining, reset = decided
        response.headers["X-RateLimit-Limit"] = str(amount)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        response.headers["X-RateLimit-Reset"] = str(math.ceil(reset))
    return response


def seconds_left(decided: tuple[int, int, float] | None) -> int:
    """Whole seconds until the deciding limit's window frees, at least 1."""
    return max(1, math.ceil(decided[2] - time.time())) if decided else 1


def refuse(exc: RateLimitExceeded):
    return error_response(429, "Rate limit exceeded", retry_after=seconds_left(deciding_limit()))


def init_app(app: Flask) -> None:
    """Call before auth.init_app: before_request hooks run in the order they are added."""
    global ip_window
    ip_window = FixedWindowRateLimiter(MemoryStorage())  # fresh counters for each app
    limiter.init_app(app)
    # We give flask-limiter no application or default limits, so its own before_request
    # pass only ever finds nothing to check; it cost a tenth of a cheap GET. Route limits
    # are checked by the decorators either way.
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    app.before_request(check_ip)
    app.register_error_handler(RateLimitExceeded, refuse)
    app.after_request(add_headers)

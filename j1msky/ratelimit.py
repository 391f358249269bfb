"""API rate limits (flask-limiter): per IP before authentication, per API key on named routes.

flask-limiter's Limiter owns the storage. J1MSKY counts fixed windows in it itself (`hit`,
as limits' fixed-window strategy does), from two places: check_ip, a before_request hook
ahead of authentication, and the per_key decorators, as the view is called (after
authentication, so they know the key). flask-limiter's own decorators resolved, filtered
and evaluated their limits on every request: about 0.15 ms, more than the view they guard.

Limit values are read from config.json `rate_limits` on each request, so an edit applies
without a restart. A counter is keyed by its limit too, so a changed limit starts with a
fresh window.
"""
from __future__ import annotations

import functools
import math
import threading
import time

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from limits import RateLimitItem, parse
from limits.storage import Storage

from . import ipguard
from .config import current as current_config
from .errors import APIError

# Where the counters live: this process's memory. The seam for more than one process or
# host is here: a limits storage URI such as "redis://host:6379" shares them.
STORAGE_URI = "j1msky-memory://"
EXTENSION = "j1msky_limiter"


class CounterStorage(Storage):
    """Fixed-window counters in a dict, for limits (flask-limiter's engine).

    Not limits' MemoryStorage: it starts a timer thread to expire counters whenever the
    last one has ended (a thread every 10 ms under load, a request thread waiting for
    each start), and two threads can start the same timer (RuntimeError, limits 5.8).
    Here a counter past its window simply reads as new; ended windows are dropped when
    the dict grows past SWEEP_AT."""

    STORAGE_SCHEME = ["j1msky-memory"]
    SWEEP_AT = 10_000

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        self.counters: dict[str, list[float]] = {}  # key -> [count, window end (epoch s)]
        self.lock = threading.Lock()
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self):
        return ValueError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self.lock:
            counter = self.counters.get(key)
            if counter is None or counter[1] <= now:
                if len(self.counters) >= self.SWEEP_AT:
                    self.counters = {k: c for k, c in self.counters.items() if c[1] > now}
                counter = self.counters[key] = [0, now + expiry]
            counter[0] += amount
            return int(counter[0])

    def get(self, key: str) -> int:
        counter = self.counters.get(key)
        return int(counter[0]) if counter is not None and counter[1] > time.time() else 0

    def get_expiry(self, key: str) -> float:
        counter = self.counters.get(key)
        return counter[1] if counter is not None and counter[1] > time.time() else time.time()

    def check(self) -> bool:
        return True

    def reset(self) -> int:
        with self.lock:
            count, self.counters = len(self.counters), {}
        return count

    def clear(self, key: str) -> None:
        with self.lock:
            self.counters.pop(key, None)


def client_ip() -> str:
    """The caller's address, as ipguard decides it (trusted proxies, X-Forwarded-For)."""
    return ipguard.client_ip()


def caller() -> str:
    """The API key a per-key limit counts against (auth sets g.key before the view runs)."""
    key = g.get("key")
    return f"key:{key['id']}" if key is not None else f"ip:{client_ip()}"


@functools.lru_cache(maxsize=16)
def parse_limit(text: str) -> RateLimitItem:
    return parse(text)


def storage() -> Storage:
    return current_app.extensions[EXTENSION].storage


def hit(name: str, counter: str, cost: int = 1) -> None:
    """Count this request against `rate_limits.<name>` for `counter`; 429 past the limit.
    The last limit counted is the one the X-RateLimit-* headers report.

    A fixed window, as limits' FixedWindowRateLimiter.hit counts it (one incr of the
    storage), keeping the count it returns: the headers need no second lookup."""
    item = parse_limit(current_config()["rate_limits"][name])
    key = item.key_for(name, counter)
    count = storage().incr(key, item.get_expiry(), amount=cost)
    g.rate_limit = (item, key, count)
    if count > item.amount:
        raise APIError(429, "Rate limit exceeded", retry_after=seconds_left(deciding_limit()))


def check_ip() -> None:
    """Count every request against its address, before any key lookup."""
    hit("per_ip", client_ip())


def per_key(name: str, cost=1):
    """Decorator: `rate_limits.<name>` per API key, one counter for every route it marks
    (so the /api and /api/v4 registrations of a view, and its v3 twin, count together).
    `cost`: a number, or a function of the request giving one."""
    def decorator(view):
        @functools.wraps(view)
        def limited(*args, **kwargs):
            hit(name, caller(), cost() if callable(cost) else cost)
            return view(*args, **kwargs)
        return limited
    return decorator


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
    counted = g.get("rate_limit")
    if counted is None:
        return None
    item, key, count = counted
    return item.amount, max(0, item.amount - count), storage().get_expiry(key)


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


def init_app(app: Flask) -> None:
    """Call before auth.init_app: before_request hooks run in the order they are added."""
    limiter = Limiter(client_ip, storage_uri=STORAGE_URI, strategy="fixed-window")
    # init_app makes the storage and strategy (fresh counters for each app). The request
    # hooks it adds serve its own decorators and default limits, which J1MSKY does not
    # use; they cost a fifth of a cheap request, so they are taken out again.
    hooks = (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)
    kept = [list(funcs.get(None, ())) for funcs in hooks]
    limiter.init_app(app)
    for funcs, before in zip(hooks, kept, strict=True):
        funcs[None] = before
    app.extensions[EXTENSION] = limiter
    app.before_request(check_ip)
    app.after_request(add_headers)

"""Who may call at all: the client's address, blocked addresses, the IP allow list.

Its before_request hook is the first of the app, ahead of the per-IP rate limit and
authentication, and runs for every request, unknown routes included. `client_ip()` is the
one place that decides the caller's address (the rate limiter asks it too).

A manual block refuses everything from the address. An automatic one (after repeated
authentication failures) refuses only requests without a valid credential, so a fuzzer or
a mistyped key on the owner's machine cannot lock the owner's valid key out.
"""
from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import logging
import math
import sqlite3
import threading
import time

from flask import Flask, current_app, g, request

from .config import current as current_config
from .db import after_commit, get_db, transaction
from .errors import APIError
from .services import clock, events

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

AUTO_BLOCK_REASON = "repeated authentication failures"
AUTO_BLOCK_SOURCE = "auth_failures"
AUTO_BLOCKED_MESSAGE = ("IP blocked after repeated authentication failures: only requests"
                        " with a valid API key are accepted")
# Refusals are recorded at most once per address and kind in this many seconds, so a
# refused client hammering the service cannot turn each request into a database write
# and a webhook delivery.
VIOLATION_REPEAT_SECONDS = 60.0
TRACKED_ADDRESSES = 10_000  # past this, stale report times are dropped


# -- addresses ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def parse_ip(text: str | None) -> Address | None:
    """The address in `text`, an IPv4-mapped IPv6 one as plain IPv4; None if not one.
    (Cached: a client sends its address with every request; addresses are immutable.)"""
    try:
        ip = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=64)
def networks(entries: tuple[str, ...]) -> tuple:
    """Parsed networks of a config list (config.json validation already vouched for them)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def within(ip: Address | None, entries: list[str]) -> bool:
    """Whether ip lies in one of the IPs/CIDRs in entries."""
    return ip is not None and any(ip in net for net in networks(tuple(entries)))


def resolve_client_ip(peer: str | None, forwarded: list[str], trusted: list[str]) -> str:
    """The client's address: the socket peer, unless the peer is a trusted proxy.

    Then X-Forwarded-For is read from the right, skipping trusted proxies: the first
    other address is the one the outermost trusted proxy saw. Entries left of it were
    written by the client and are never believed. An unreadable entry reached on the
    way means a proxy we cannot follow: the peer is the answer."""
    peer_ip = parse_ip(peer)
    if peer_ip is None:
        return peer or "unknown"
    if not within(peer_ip, trusted):
        return str(peer_ip)
    hops = [hop.strip() for value in forwarded for hop in value.split(",") if hop.strip()]
    client = peer_ip
    for hop in reversed(hops):
        ip = parse_ip(hop)
        if ip is None:
            return str(peer_ip)
        client = ip
        if not within(ip, trusted):
            break
    return str(client)


def client_ip() -> str:
    """The caller's address for this request (computed once, kept on g). X-Forwarded-For
    is read only when there are trusted proxies: without them it is never believed."""
    ip = g.get("client_ip")
    if ip is None:
        trusted = current_config()["security"]["trusted_proxies"]
        forwarded = request.headers.getlist("X-Forwarded-For") if trusted else []
        ip = g.client_ip = resolve_client_ip(request.remote_addr, forwarded, trusted)
    return ip


def locks_out_caller(settings: dict) -> str | None:
    """The caller's address if allow-list settings would refuse it, else None."""
    ip = resolve_client_ip(request.remote_addr, request.headers.getlist("X-Forwarded-For"),
                           settings["trusted_proxies"])
    if settings["enforce"] and settings["allowed_ips"] \
            and not within(parse_ip(ip), settings["allowed_ips"]):
        return ip
    return None


# -- blocked addresses (table blocked_ips) -----------------------------------------------

def block(conn: sqlite3.Connection, ip: str, reason: str, source: str,
          hours: float | None, replace: bool = True) -> dict:
    """Block ip for `hours` (None: until unblocked); the guard sees it once this commits.

    replace=False keeps an existing block that lasts longer than this one."""
    now = clock.now()
    blocked = {"ip": ip, "reason": reason, "source": source, "created_at": clock.iso(now),
               "expires_at": None if hours is None else clock.iso(now + dt.timedelta(hours=hours))}
    keep_longer = "" if replace else \
        " WHERE blocked_ips.expires_at IS NOT NULL AND blocked_ips.expires_at < excluded.expires_at"
    with transaction(conn):
        conn.execute(
            "INSERT INTO blocked_ips (ip, reason, source, created_at, expires_at)"
            " VALUES (:ip, :reason, :source, :created_at, :expires_at)"
            " ON CONFLICT (ip) DO UPDATE SET reason = excluded.reason, source = excluded.source,"
            " created_at = excluded.created_at, expires_at = excluded.expires_at" + keep_longer,
            blocked)
        after_commit(conn, guard().changed)
    return blocked


def unblock(conn: sqlite3.Connection, ip: str) -> bool:
    """Lift the block on ip; False if it was not blocked (or its block had expired)."""
    with transaction(conn):
        was_active = conn.execute(
            "DELETE FROM blocked_ips WHERE ip = ? AND (expires_at IS NULL OR expires_at > ?)",
            (ip, clock.now_iso())).rowcount
        purge_expired(conn)
        after_commit(conn, guard().changed)
    return bool(was_active)


def active_blocks(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT * FROM blocked_ips WHERE expires_at IS NULL OR expires_at > ?"
        " ORDER BY created_at, ip", (clock.now_iso(),)).fetchall()


def purge_expired(conn: sqlite3.Connection) -> int:
    """Delete blocks that have run out."""
    with transaction(conn):
        return conn.execute("DELETE FROM blocked_ips WHERE expires_at <= ?",
                            (clock.now_iso(),)).rowcount


class Guard:
    """One app's in-memory state: a copy of blocked_ips and violation report times.

    The blocked copy is reloaded at most every REFRESH seconds, and on the next request
    after a change made through this process; a change by another process (the CLI) is
    seen within REFRESH seconds. Expiry is decided per request against the clock."""

    REFRESH = 1.0

    def __init__(self):
        self.lock = threading.Lock()
        self.blocked: dict[str, tuple[str | None, str]] = {}  # ip -> (expires_at, source)
        self.loaded_at = -math.inf
        self.generation = 0  # bumped by every change; a reload that raced one is stale
        self.loaded_generation = -1
        self.reported: dict[tuple[str, str], float] = {}

    def changed(self) -> None:
        self.generation += 1

    def block_source(self, ip: str) -> str | None:
        """The source (manual|auth_failures) of the block in force on ip, or None."""
        if self.loaded_generation != self.generation \
                or time.monotonic() - self.loaded_at >= self.REFRESH:
            self.reload()
        expires_at, source = self.blocked.get(ip, (None, None))
        if source is None or (expires_at is not None and expires_at <= clock.now_iso()):
            return None
        return source

    def reload(self) -> None:
        conn = get_db()
        with self.lock:
            generation, started = self.generation, time.monotonic()
            rows = conn.execute("SELECT ip, expires_at, source FROM blocked_ips").fetchall()
            now = clock.now_iso()
            active = {r["ip"]: (r["expires_at"], r["source"]) for r in rows
                      if r["expires_at"] is None or r["expires_at"] > now}
            self.blocked = active
            self.loaded_at, self.loaded_generation = started, generation
        if len(active) < len(rows):
            purge_expired(conn)  # outside the lock: it waits for the database's write lock

    def should_report(self, kind: str, ip: str) -> bool:
        now = time.monotonic()
        with self.lock:
            if len(self.reported) > TRACKED_ADDRESSES:
                self.reported = {k: t for k, t in self.reported.items()
                                 if now - t < VIOLATION_REPEAT_SECONDS}
            last = self.reported.get((kind, ip))
            if last is not None and now - last < VIOLATION_REPEAT_SECONDS:
                return False
            self.reported[(kind, ip)] = now
            return True


def guard() -> Guard:
    return current_app.extensions["j1msky_ipguard"]


# -- violations and automatic blocks -----------------------------------------------------

def violation(kind: str, **data) -> None:
    """Record a security violation (when security.log_violations is on): a
    `security.violation` event in its own transaction, and a log line.

    Only addresses, paths, methods and counts are passed in: never keys or headers."""
    if kind != "ip_auto_blocked" and not current_config()["security"]["log_violations"]:
        return  # automatic blocks are always recorded
    if not guard().should_report(kind, str(data.get("ip"))):
        return
    from .api.audit import record_request  # the audit blueprint imports this module
    with transaction(get_db()) as conn:
        events.emit(conn, "security.violation", {"kind": kind, **data})
        record_request("security.violation", severity="warning", conn=conn,
                       details={"kind": kind, **data})
    log.warning("security violation %s: %s", kind, data)


def count_failure(conn: sqlite3.Connection, ip: str, window: dt.timedelta, limit: int) -> int:
    """Record a failed authentication from ip (table auth_failures, so restarts keep it);
    the number inside the window once it reaches limit (then they are forgotten), else 0."""
    now = clock.now()
    with transaction(conn):
        conn.execute("DELETE FROM auth_failures WHERE failed_at <= ?", (clock.iso(now - window),))
        conn.execute("INSERT INTO auth_failures (ip, failed_at) VALUES (?, ?)",
                     (ip, clock.iso(now)))
        failures = conn.execute("SELECT count(*) FROM auth_failures WHERE ip = ?",
                                (ip,)).fetchone()[0]
        if failures < limit:
            return 0
        conn.execute("DELETE FROM auth_failures WHERE ip = ?", (ip,))
    return failures


def auth_failed() -> None:
    """Count a failed authentication from the client's address; enough of them inside
    security.auth_failure_window_seconds block it for security.auto_block_hours."""
    ip = client_ip()
    if parse_ip(ip) is None:
        return
    settings = current_config()["security"]
    failures = count_failure(get_db(), ip,
                             dt.timedelta(seconds=settings["auth_failure_window_seconds"]),
                             settings["auth_failures_to_block"])
    if not failures:
        return
    blocked = block(get_db(), ip, AUTO_BLOCK_REASON, AUTO_BLOCK_SOURCE,
                    settings["auto_block_hours"], replace=False)
    violation("ip_auto_blocked", ip=ip, failures=failures,
              expires_at=clock.iso_out(blocked["expires_at"]),
              path=request.path, method=request.method)


# -- the request hook --------------------------------------------------------------------

def carries_valid_credential() -> bool:
    """Whether the request presents a credential that authenticates: an API key in either
    header, or the console's session cookie or sign-in form; the one place to teach about
    other credentials."""
    from .auth import load_caller  # auth imports this module
    from .dashboard import signin  # so does the console
    try:
        load_caller(legacy=True)
    except APIError:
        return signin.carries_valid_credential()
    return True


def check_request() -> None:
    """Refuse blocked addresses (an automatic block lets valid credentials through), then
    addresses outside an enforced allow list."""
    ip = client_ip()
    source = guard().block_source(ip)
    if source == AUTO_BLOCK_SOURCE and carries_valid_credential():
        source = None
    if source is not None:
        violation("ip_blocked", ip=ip, path=request.path, method=request.method)
        if source == AUTO_BLOCK_SOURCE:  # 401: what is missing is a valid credential
            raise APIError(401, AUTO_BLOCKED_MESSAGE, your_ip=ip)
        raise APIError(403, "IP blocked", your_ip=ip)
    settings = current_config()["security"]
    if settings["enforce"] and settings["allowed_ips"] \
            and not within(parse_ip(ip), settings["allowed_ips"]):
        violation("ip_not_whitelisted", ip=ip, path=request.path, method=request.method)
        raise APIError(403, "IP not whitelisted", your_ip=ip)


def init_app(app: Flask) -> None:
    """Call before ratelimit.init_app and auth.init_app: hooks run in the order added."""
    app.extensions["j1msky_ipguard"] = Guard()
    app.before_request(check_request)

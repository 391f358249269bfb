"""Webhooks: registration, destination rules, the durable outbox and its delivery.

Deliveries are written in the transaction of the event they announce and sent by the
Dispatcher: at least once, Standard Webhooks signatures, growing delays for about a day,
in no promised order (each carries its event's id and time), several at once to a
healthy receiver and one at a time to a failing one, so a dead receiver delays only
itself.

A delivery resolves the receiver's name once, checks the addresses, and connects to the
checked one (the name stays in Host and in TLS SNI and certificate checks), so a name
that resolves elsewhere a moment later (DNS rebinding) cannot reach a refused network.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import queue
import random
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from .. import metrics
from ..config import current as current_config
from ..db import after_commit, get_db, transaction
from ..errors import APIError
from . import clock, crypto, outbound
from .pool import DaemonPool

log = logging.getLogger(__name__)
SECRET_PURPOSE = "webhook-secrets"
TEST_EVENT = "webhook.test"
wake = threading.Event()  # an event committed or an attempt ended: a pass now, not at the poll

Resolver = Callable[[str, int], list[str]]  # (host, port) -> its addresses


def resolve(host: str, port: int) -> list[str]:
    """The addresses of host, from the system resolver (the production Resolver)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)]


class PinnedAdapter(HTTPAdapter):
    """Connects to the address in the URL (the checked one); for https, SNI and the
    certificate check use the name in the Host header instead."""

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        if host_params["scheme"] == "https":
            name = urlsplit("//" + request.headers["Host"]).hostname
            pool_kwargs.update(server_hostname=name, assert_hostname=name)
        return host_params, pool_kwargs


class Refused(Exception):
    """The destination is not allowed (checked again after DNS resolution at delivery)."""


def check_destination(url: str, config: dict, resolver: Resolver = resolve) -> str:
    """http(s) only; loopback and link-local (and private, when denied) refused unless
    inside webhooks.allowed_networks. Returns the address to connect to (the first of
    the host's, all of which passed); raises Refused with the reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("URL must be an absolute http or https URL")
    try:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))]
    except (OSError, UnicodeError, ValueError):
        raise Refused(f"cannot resolve host '{parts.hostname}'") from None
    if not addresses:
        raise Refused(f"cannot resolve host '{parts.hostname}'")
    rules = config["webhooks"]
    allowed = [ipaddress.ip_network(n, strict=False) for n in rules["allowed_networks"]]
    for address in addresses:
        if any(address in network for network in allowed):
            continue
        if address.is_loopback or address.is_link_local or address.is_unspecified \
                or address.is_multicast or address.is_reserved:
            raise Refused(f"'{parts.hostname}' resolves to {address}, a loopback or link-local"
                          " address (add it to webhooks.allowed_networks to allow it)")
        if rules["deny_private_networks"] and address.is_private:
            raise Refused(f"'{parts.hostname}' resolves to {address}, a private address")
    return str(addresses[0])


def pinned(url: str, address: str) -> tuple[str, str]:
    """(url with its host replaced by address, the Host header the url implies)."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    netloc = f"[{address}]" if ":" in address else address
    if parts.port is not None:
        netloc += f":{parts.port}"
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc)), host


def hmac_key(secret: str) -> bytes:
    """The base64 part of a whsec_ secret, else the secret's UTF-8 bytes (CONTRACT §8)."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[6:], validate=True)
        except ValueError:
            pass
    return secret.encode()


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    digest = hmac.new(hmac_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256)
    return "v1," + base64.b64encode(digest.digest()).decode()


def create(conn: sqlite3.Connection, config: dict, master: bytes, *, url: str, events: list[str],
           secret: str | None, key_id: str) -> tuple[dict, str | None]:
    """Register a webhook; returns (its view, the generated secret or None)."""
    try:
        check_destination(url, config)
    except Refused as exc:
        raise APIError(400, f"Webhook URL refused: {exc}", details={"url": [str(exc)]}) from None
    generated = None if secret else "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    webhook_id = "wh_" + secrets.token_hex(8)
    conn.execute("INSERT INTO webhooks (id, url, events, secret_sealed, key_id, created_at)"
                 " VALUES (?, ?, ?, ?, ?, ?)",
                 (webhook_id, url, json.dumps(sorted(set(events))),
                  crypto.seal(crypto.derive_key(master, SECRET_PURPOSE), secret or generated),
                  key_id, clock.now_iso()))
    return view(get(conn, webhook_id)), generated


def get(conn: sqlite3.Connection, webhook_id: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
    if row is None:
        raise APIError(404, f"Webhook '{webhook_id}' not found")
    return row


def list_all(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM webhooks ORDER BY created_at, id").fetchall()


def delete(conn: sqlite3.Connection, webhook_id: str) -> None:
    """Remove a webhook and (by cascade) its pending deliveries; 404 if unknown."""
    get(conn, webhook_id)
    conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))


def send_test(conn: sqlite3.Connection, webhook_id: str) -> None:
    """Queue a signed `webhook.test` delivery to this webhook (409 if it is disabled)."""
    hook = get(conn, webhook_id)
    if not hook["active"]:
        raise APIError(409, f"Webhook '{webhook_id}' is disabled: {hook['disabled_reason']}")
    enqueue(conn, None, TEST_EVENT, {"webhook_id": webhook_id, "message": "J1MSKY test delivery"},
            clock.now_iso(), webhook_id=webhook_id)
    after_commit(conn, wake.set)


def view(row: sqlite3.Row) -> dict:
    """What the API shows of a webhook: never its secret."""
    return {"id": row["id"], "url": row["url"], "events": json.loads(row["events"]),
            "active": bool(row["active"]), "disabled_reason": row["disabled_reason"],
            "created_at": clock.iso_out(row["created_at"])}


def enqueue(conn: sqlite3.Connection, event_id: int | None, event_type: str, data: dict,
            created_at: str, webhook_id: str | None = None) -> int:
    """Add outbox rows for every active webhook subscribed to the event (caller's
    transaction); returns how many."""
    payload = json.dumps({"id": f"evt_{event_id}" if event_id else None, "event": event_type,
                          "timestamp": clock.iso_out(created_at), "data": data})
    where = "id = ?" if webhook_id else \
        "active = 1 AND EXISTS (SELECT 1 FROM json_each(webhooks.events) WHERE value = ?)"
    return conn.execute(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload, state,"
        " next_attempt_at, created_at) SELECT id, ?, ?, ?, 'pending', ?, ? FROM webhooks"
        f" WHERE {where}", (event_id, event_type, payload, created_at, created_at,
                            webhook_id or event_type)).rowcount


def deliveries(conn: sqlite3.Connection, webhook_id: str, limit: int) -> list[dict]:
    """Latest deliveries of a webhook, each with its attempts."""
    get(conn, webhook_id)
    rows = conn.execute("SELECT * FROM webhook_deliveries WHERE webhook_id = ?"
                        " ORDER BY id DESC LIMIT ?", (webhook_id, limit)).fetchall()
    out = []
    for row in rows:
        attempts = conn.execute("SELECT attempted_at, status_code, error, duration_ms FROM"
                                " webhook_attempts WHERE delivery_id = ? ORDER BY id",
                                (row["id"],)).fetchall()
        out.append({
            "id": row["id"], "event_id": f"evt_{row['event_id']}" if row["event_id"] else None,
            "event": row["event_type"], "state": row["state"], "attempts": len(attempts),
            "next_attempt_at": clock.iso_out(row["next_attempt_at"])
            if row["state"] == "pending" else None,
            "delivered_at": clock.iso_out(row["delivered_at"]),
            "attempt_log": [{"time": clock.iso_out(a["attempted_at"]),
                             "status_code": a["status_code"], "error": a["error"],
                             "duration_ms": a["duration_ms"]} for a in attempts]})
    return out


class Dispatcher:
    """Sends due deliveries: one thread claims them and records their outcomes, a batch
    to a transaction; a pool of webhooks.workers threads sends them.

    A webhook has at most webhooks.max_in_flight_per_webhook deliveries in flight (and
    half of the threads), one while its latest attempt failed, so a hanging receiver
    holds few sending threads and the other webhooks keep the rest. `sending` and
    `failing` belong to the dispatcher thread; sending threads hand outcomes back through
    `outcomes`.
    """

    def __init__(self, app):
        self.app = app
        self.stopping = threading.Event()
        self.sending: dict[str, set[int]] = {}  # webhook id -> ids of its deliveries in flight
        self.failing: set[str] = set()  # webhooks whose latest attempt failed
        self.outcomes: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.loop, name="webhook-dispatcher", daemon=True)
        with app.app_context():
            self.pool = DaemonPool(current_config()["webhooks"]["workers"], name="webhook-send")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        wake.set()
        self.thread.join(5)

    def loop(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.app.app_context():
                    self.dispatch_due()
            except Exception:
                log.exception("webhook dispatcher pass failed")
            wake.wait(0.5)
            wake.clear()
        with self.app.app_context():  # what was sent is not to be sent again
            self.commit(get_db(), current_config(), self.take_outcomes(), [])

    def dispatch_due(self) -> None:
        conn, config = get_db(), current_config()
        done = self.take_outcomes()
        busy = [delivery_id for ids in self.sending.values() for delivery_id in ids]
        free = self.pool.size - len(busy)
        ids = due(conn, self.room(config), busy)[:free] if free > 0 else []
        for row in self.commit(conn, config, done, ids):
            self.sending.setdefault(row["webhook_id"], set()).add(row["id"])
            self.pool.submit(self.send, row)

    def room(self, config: dict) -> Callable[[str], int]:
        """How many more deliveries of a webhook may be sent now: at most half of the
        sending threads, so one slow receiver always leaves the other half to the rest."""
        bound = min(config["webhooks"]["max_in_flight_per_webhook"], max(1, self.pool.size // 2))
        return lambda webhook_id: (1 if webhook_id in self.failing else bound) \
            - len(self.sending.get(webhook_id, ()))

    def send(self, row: sqlite3.Row) -> None:
        try:
            with self.app.app_context():
                outcome = attempt(current_config(), self.app.extensions["j1msky_master"], row)
        except Exception as exc:
            log.exception("webhook delivery %s failed unexpectedly", row["id"])
            outcome = None, f"internal error: {type(exc).__name__}", 0
        self.outcomes.put((row["id"], row["webhook_id"], outcome))
        wake.set()

    def take_outcomes(self) -> list[tuple[int, tuple]]:
        """The attempts finished since the last pass; their places are free again."""
        done = []
        while not self.outcomes.empty():
            delivery_id, webhook_id, outcome = self.outcomes.get()
            ids = self.sending[webhook_id]
            ids.discard(delivery_id)
            if not ids:
                del self.sending[webhook_id]
            (self.failing.add if outcome[1] else self.failing.discard)(webhook_id)
            done.append((delivery_id, outcome))
        return done

    @staticmethod
    def commit(conn: sqlite3.Connection, config: dict, done: list[tuple[int, tuple]],
               ids: list[int]) -> list[sqlite3.Row]:
        """Record finished attempts and claim due deliveries in one transaction: one
        wait for the write lock a pass, which the runner's transactions keep busy. An
        attempt left unrecorded (a failed pass) is sent again once its lease ends."""
        if not (done or ids):
            return []
        with transaction(conn):
            for delivery_id, outcome in done:
                record(conn, config, delivery_id, *outcome)
            return claim(conn, config, ids)


def due(conn: sqlite3.Connection, room: Callable[[str], int],
        busy: list[int]) -> list[int]:
    """Ids of due deliveries, up to room(webhook) of each active webhook, none of `busy`
    (an answer that trickles in may outlast its lease): every webhook's oldest first, then
    every webhook's second, and so on, so a long backlog at one receiver cannot starve
    the others."""
    now = clock.now_iso()
    ranked = []
    for (webhook_id,) in conn.execute("SELECT id FROM webhooks WHERE active = 1").fetchall():
        limit = room(webhook_id)
        if limit <= 0:
            continue
        rows = conn.execute(
            "SELECT id, next_attempt_at FROM webhook_deliveries WHERE webhook_id = ?"
            " AND state = 'pending' AND next_attempt_at <= ?"
            " AND id NOT IN (SELECT value FROM json_each(?))"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (webhook_id, now, json.dumps(busy), limit)).fetchall()
        ranked += [(position, when, delivery_id)
                   for position, (delivery_id, when) in enumerate(rows)]
    return [delivery_id for _, _, delivery_id in sorted(ranked)]


def claim(conn: sqlite3.Connection, config: dict, ids: list[int]) -> list[sqlite3.Row]:
    """Take these deliveries for one attempt each and return what sending needs.

    The claim is a lease, in the caller's transaction: next_attempt_at moves past the
    longest an attempt takes (connecting, then the answer, each up to timeout_seconds),
    only on rows still pending and due. No other dispatcher (another process) takes them
    meanwhile, and after a crash they are due again once the lease ends.
    """
    if not ids:
        return []
    now = clock.now()
    lease = now + dt.timedelta(seconds=2 * config["webhooks"]["timeout_seconds"] + 1)
    claimed = conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE state = 'pending'"
        " AND next_attempt_at <= ? AND id IN (SELECT value FROM json_each(?)) RETURNING id",
        (clock.iso(lease), clock.iso(now), json.dumps(ids))).fetchall()
    rows = conn.execute(
        "SELECT d.id, d.webhook_id, d.event_id, d.payload, w.url, w.secret_sealed"
        " FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
        " WHERE d.id IN (SELECT value FROM json_each(?))",
        (json.dumps([r[0] for r in claimed]),)).fetchall()
    order = {delivery_id: i for i, delivery_id in enumerate(ids)}
    return sorted(rows, key=lambda row: order[row["id"]])


def attempt(config: dict, master: bytes, row: sqlite3.Row) -> tuple[int | None, str | None, int]:
    """One attempt at a claimed delivery: (status code, error, duration in ms)."""
    secret = crypto.unseal(crypto.derive_key(master, SECRET_PURPOSE), row["secret_sealed"])
    msg_id = f"evt_{row['event_id'] or 'test_' + str(row['id'])}"
    started = time.monotonic()
    status, error = post(row["url"], secret, msg_id, row["payload"], config)
    return status, error, int((time.monotonic() - started) * 1000)


def post(url: str, secret: str, msg_id: str, body: str, config: dict,
         resolver: Resolver = resolve) -> tuple[int | None, str | None]:
    """POST the payload, signed, to the address checked; (status code, error).
    Redirects are not followed."""
    try:
        address = check_destination(url, config, resolver)
    except Refused as exc:
        return None, f"destination refused: {exc}"
    target, host = pinned(url, address)
    timestamp = int(time.time())
    headers = {"host": host, "content-type": "application/json",
               "user-agent": "j1msky-webhooks/4.0",
               "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": signature(secret, msg_id, timestamp, body)}
    # No proxy: a proxy would not be the address checked. Redirects are not followed:
    # the adapter never does.
    request = requests.Request("POST", target, headers=headers, data=body.encode()).prepare()
    try:
        response = outbound.adapter(PinnedAdapter).send(
            request, timeout=config["webhooks"]["timeout_seconds"], verify=outbound.ca_bundle())
        response.content  # noqa: B018 - read to the end: the connection goes back to its pool
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"
    return response.status_code, None if 200 <= response.status_code < 300 else \
        f"HTTP {response.status_code}"


def record(conn: sqlite3.Connection, config: dict, delivery_id: int, status: int | None,
           error: str | None, duration_ms: int) -> None:
    """Store an attempt (caller's transaction); mark delivered, schedule a retry, give up,
    or disable on 410."""
    row = conn.execute("SELECT webhook_id, state, attempts FROM webhook_deliveries"
                       " WHERE id = ?", (delivery_id,)).fetchone()
    if row is None:  # its webhook was deleted meanwhile
        return
    now = clock.now()
    conn.execute("INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, error,"
                 " duration_ms) VALUES (?, ?, ?, ?, ?)",
                 (delivery_id, clock.iso(now), status, error, duration_ms))
    if row["state"] != "pending":  # cancelled meanwhile: its webhook was disabled
        return
    attempts = row["attempts"] + 1
    schedule = config["webhooks"]["retry_schedule_seconds"]
    if error is None:
        conn.execute("UPDATE webhook_deliveries SET state = 'delivered', attempts = ?,"
                     " delivered_at = ? WHERE id = ?", (attempts, clock.iso(now), delivery_id))
        metrics.webhook_delivery(conn, "delivered")
    elif status == 410:
        disable(conn, row["webhook_id"], "receiver answered 410 Gone")
        conn.execute("UPDATE webhook_deliveries SET state = 'failed', attempts = ?"
                     " WHERE id = ?", (attempts, delivery_id))
        metrics.webhook_delivery(conn, "disabled")
    elif attempts > len(schedule):
        conn.execute("UPDATE webhook_deliveries SET state = 'failed', attempts = ?"
                     " WHERE id = ?", (attempts, delivery_id))
        metrics.webhook_delivery(conn, "failed")
    else:
        delay = schedule[attempts - 1] * random.uniform(0.8, 1.2)
        conn.execute("UPDATE webhook_deliveries SET attempts = ?, next_attempt_at = ?"
                     " WHERE id = ?",
                     (attempts, clock.iso(now + dt.timedelta(seconds=delay)), delivery_id))
        metrics.webhook_delivery(conn, "retry")


def disable(conn: sqlite3.Connection, webhook_id: str, reason: str) -> None:
    conn.execute("UPDATE webhooks SET active = 0, disabled_reason = ? WHERE id = ?",
                 (reason, webhook_id))
    conn.execute("UPDATE webhook_deliveries SET state = 'cancelled' WHERE webhook_id = ?"
                 " AND state = 'pending'", (webhook_id,))

"""Soak test of J1MSKY: mixed traffic against a live server that is SIGKILLed at random.

What it does, in one run (--seconds of traffic, plus setup and a bounded drain):

1. Starts the tests' fake upstream (tests.fake_upstream.FakeUpstream, the real
   Anthropic Messages and OpenAI Chat wire protocols over HTTP) in this process, slow
   enough (OpenAI/kimi-coding 0.15 s, Anthropic 0.6 s a call) that agents are running
   when the server dies, a team given a 1 s timeout fails, and cancels catch calls in
   flight. Makes a temporary instance folder (J1MSKY_INSTANCE) with a config.json like
   the tests' (tests/helpers.upstream_config) pointing at it, 4 agent workers, limits raised so
   nothing is refused, a 2 s shutdown grace, and webhooks allowed to 127.0.0.0/8 with
   short retries (0.5, 1, 2, 2, ... s) and a 2 s timeout. Runs ``j1msky init`` and
   ``j1msky keys create`` (the installed console script) and starts ``j1msky serve``
   (tests/live.LiveServer: its own process group, output to serve.log).
2. Starts a flaky webhook receiver in this process (tests.webhook_receiver.WebhookReceiver,
   subclassed: it answers 500 to a random share of deliveries and holds a few past the
   service's timeout; every delivery is verified with the standardwebhooks library) and
   registers a webhook with a whsec_ secret for agent.completed, agent.failed and
   agent.cancelled.
3. Runs --clients client threads until --seconds have passed, each picking at random:
   POST /api/spawn (a unique Idempotency-Key each; retried with the same key and the
   same bytes on connection errors, 5xx, 429 and 409 "in progress" until an answer
   arrives; sometimes sent again after the answer, or twice at once, to check the
   replay), POST /api/spawn-team and /api/spawn-batch (the same way), GET /api/agents
   (filters, sort, following the cursor), GET /api/agent/{id}, GET
   /api/orchestrator/status, GET /api/events (each client follows the feed by
   cursor), DELETE /api/agent/{id} on recent agents (409 is fine) and spawn-and-cancel
   (an opus or sonnet agent cancelled 0.05-0.8 s after its 202). Spawning pauses
   while more than --backlog agents are waiting or running (read from GET /api/agents),
   so the queue stays bounded and the run can drain.
4. A killer thread SIGKILLs the server's process group at random points (every
   --kill-every MIN-MAX seconds, or --kills times spread over the run) and starts it
   again. A kill window lasts from the kill until the server answers again; a request
   whose time on the wire overlaps a window may fail (connection error or 5xx), any
   other failure is a violation.
5. At the end: stops the traffic, waits (bounded) until no agent is spawning or
   running and until every terminal agent event has reached the receiver, stops the
   server with SIGTERM and checks, in the SQLite file and against the receiver:
   (1) no agent is spawning or running; (2) no Idempotency-Key got two different
   agents, and the agents table holds exactly the agents the clients were given;
   (3) sum(agents.actual_micros) == sum(budget_days.spent_micros) ==
   sum(usage_daily.cost_micros), nothing is still reserved or in flight, and the
   ledger pays for every call the fake upstream answered: the charges from reported
   usage <= what the upstream billed (its answers at the configured prices) <= the
   whole spend (lost answers are charged at estimates, which cover them), with
   equality when no estimate was used; (4) every
   agent.completed/failed/cancelled event was accepted by the receiver at least once
   (valid signature, answered 2xx); (5) PRAGMA integrity_check is ok; (6) no 5xx or connection error outside
   the kill windows; (7) every other answer was one the API documents for the request
   (e.g. no 404 for an agent the server had accepted); (8) each finished agent has
   exactly one terminal event, of its status, and the events feed followed by cursor
   had no gap and no repeat; (9) the server came back after every kill and exited 0
   on SIGTERM.
6. Prints the figures and each invariant, then removes the folder (unless --keep).
   Exit code 0 when every invariant holds, 1 otherwise.

    /path/to/venv/bin/python scripts/soak.py [--seconds 600] [--kill-every 10-30 | --kills N]
        [--clients 4] [--seed N] [--backlog 30] [--json] [--keep]
"""
from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import random
import re
import secrets
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import harness  # noqa: E402
import requests  # noqa: E402

from j1msky.config import defaults  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.helpers import UPSTREAM_ENV, billed_micros, upstream_config  # noqa: E402
from tests.live import LiveServer  # noqa: E402
from tests.webhook_receiver import WebhookReceiver  # noqa: E402

TERMINAL_EVENTS = ("agent.completed", "agent.failed", "agent.cancelled")
ACTIVE = ("spawning", "running")
MODELS = ("k2p5", "sonnet", "opus", None)  # None: the service picks
TEAMS = ("team_coding", "team_creative", "team_research", "team_business")
PRIORITIES = ("low", "normal", "high")
SERVER_THREADS = 8
REQUEST_TIMEOUT = 10.0      # seconds a client waits for one answer
RESOLVE_LIMIT = 120.0       # seconds a client keeps retrying one idempotent write
# What each kind of request may answer besides 5xx/connection errors (judged separately).
EXPECTED = {
    "spawn": {202, 409, 429}, "spawn_team": {202, 409, 429}, "spawn_batch": {202, 409, 429},
    "replay": {202, 409}, "cancel": {200, 409}, "cancel_idem": {200, 409},
    "get_agent": {200}, "list": {200}, "list_backlog": {200}, "status": {200},
    "events": {200},
}
WORDS = ("parse refactor summarise review plan design test explain migrate python function "
         "endpoint csv report invoice budget schema query cache retry webhook sqlite pi").split()


# --------------------------------------------------------------------------- setup

def soak_config(upstream_url: str) -> dict:
    """Providers at the fake upstream, limits raised so that nothing is refused, and
    webhooks to a local receiver with short retries."""
    providers = upstream_config(upstream_url)["providers"]
    for provider in providers.values():
        provider["hourly"] = 1_000_000
    return harness.config(
        providers=providers,
        security={"cost_spike_per_hour": 1_000_000, "auth_failures_to_block": 1_000_000},
        webhooks={"allowed_networks": ["127.0.0.0/8"],
                  "retry_schedule_seconds": [0.5, 1, 2, 2, 2, 2, 2, 2, 2, 2],
                  "timeout_seconds": 2})


class SoakServer(LiveServer):
    """LiveServer whose start() also waits out a slow first answer (its probe gives up
    after 1 s of reading, e.g. while the worker is still loading the app)."""

    def start(self, wait: float = 60, extra: tuple = (), verify=True) -> SoakServer:
        deadline = time.monotonic() + wait
        try:
            super().start(wait=wait, extra=extra, verify=verify)
            return self
        except requests.RequestException:
            pass  # the process is up; keep probing with more patience
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log()[-4000:]}")
            try:
                requests.get(self.url + "/api/health", timeout=5)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(f"serve did not answer in {wait}s")


class FlakyReceiver(WebhookReceiver):
    """The tests' receiver, answering 500 to a random share of deliveries and holding a
    few past the service's timeout (so the service retries one the receiver did see)."""

    def __init__(self, *, fail_rate: float, slow_rate: float, slow_seconds: float, seed: int):
        super().__init__()
        self.fail_rate, self.slow_rate, self.slow_seconds = fail_rate, slow_rate, slow_seconds
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.answered_500 = 0
        self.held = 0

    def _roll(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    def _record(self, record: dict) -> dict:
        knobs = super()._record(record)
        if self._roll() < self.slow_rate:
            knobs["delay"] = self.slow_seconds
            with self._rng_lock:
                self.held += 1
        return knobs

    def _response(self, path: str, verified: bool) -> tuple[int, str | None]:
        if self._roll() < self.fail_rate:
            with self._rng_lock:
                self.answered_500 += 1
            return 500, None
        return super()._response(path, verified)


# --------------------------------------------------------------------------- shared state

class Shared:
    """What the client threads and the killer record, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.log: list[tuple[str, float, float, object]] = []  # kind, sent, answered, status
        self.idem: dict[str, set[str]] = collections.defaultdict(set)  # key -> agent ids
        self.idem_kind: dict[str, str] = {}
        self.unresolved: list[str] = []         # idempotent writes never answered
        self.known: set[str] = set()            # agent ids the server gave out
        self.recent: collections.deque = collections.deque(maxlen=200)
        self.unexpected: list[str] = []         # examples of answers not expected
        self.unexpected_count = 0
        self.replayed = 0                       # answers with Idempotent-Replayed: true
        self.mismatched_replays: list[str] = []
        self.feed_problems: list[str] = []
        self.feed_events = 0
        self.backlog = 0
        self.backlog_at = 0.0
        self.windows: list[list[float]] = []   # [killed_at, answering_again_at]
        self.kills = 0
        self.restart_errors: list[str] = []
        self.cancel_results: collections.Counter = collections.Counter()

    def note_unexpected(self, text: str) -> None:
        with self.lock:
            self.unexpected_count += 1
            if len(self.unexpected) < 10:
                self.unexpected.append(text)


class Answer:
    def __init__(self, status, body: dict | None, headers: dict, error: str | None = None):
        self.status, self.body, self.headers, self.error = status, body, headers, error

    @property
    def transient(self) -> bool:
        """Worth retrying an idempotent write: no answer, 5xx, 429, or 409 in progress."""
        if not isinstance(self.status, int) or self.status >= 500 or self.status == 429:
            return True
        return self.status == 409 and "in progress" in self.message

    @property
    def message(self) -> str:
        try:
            return str(self.body["error"]["message"])
        except (TypeError, KeyError):
            return ""


# --------------------------------------------------------------------------- clients

class ClientThread(threading.Thread):
    def __init__(self, n: int, base: str, auth: dict, shared: Shared, rng: random.Random,
                 stop_at: float, backlog_cap: int, abort: threading.Event):
        super().__init__(name=f"soak-client-{n}", daemon=True)
        self.n, self.base, self.auth, self.shared = n, base, auth, shared
        self.rng, self.stop_at, self.backlog_cap, self.abort = rng, stop_at, backlog_cap, abort
        self.session = requests.Session()
        self.session.trust_env = False  # never through a proxy: the server is on 127.0.0.1
        self.seq = 0
        self.feed_cursor: str | None = None
        self.feed_last: int | None = None
        self.error: str | None = None

    # plumbing -----------------------------------------------------------------------
    def call(self, kind: str, method: str, path: str, *, data: str | None = None,
             headers: dict | None = None, session: requests.Session | None = None) -> Answer:
        all_headers = {**self.auth, **(headers or {})}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        sent = time.monotonic()
        try:
            response = (session or self.session).request(
                method, self.base + path, data=data, headers=all_headers,
                timeout=REQUEST_TIMEOUT)
        except requests.Timeout as exc:
            answer = Answer("timeout", None, {}, f"{type(exc).__name__}")
        except requests.RequestException as exc:
            answer = Answer("conn", None, {}, f"{type(exc).__name__}")
        else:
            try:
                body = response.json()
            except ValueError:
                body = None
            answer = Answer(response.status_code, body, dict(response.headers))
        answered = time.monotonic()
        with self.shared.lock:
            self.shared.log.append((kind, sent, answered, answer.status))
        if answer.status == "conn":
            time.sleep(self.rng.uniform(0.05, 0.15))  # the server is down: do not spin
        if isinstance(answer.status, int) and answer.status < 500 \
                and answer.status not in EXPECTED[kind]:
            self.shared.note_unexpected(f"{kind} {method} {path} -> {answer.status} "
                                        f"{answer.message or str(answer.body)[:200]}")
        return answer

    def pause(self, low: float = 0.05, high: float = 0.25) -> None:
        time.sleep(self.rng.uniform(low, high))

    def idempotent(self, kind: str, path: str, body: dict, key: str,
                   session: requests.Session | None = None) -> Answer | None:
        """POST with an Idempotency-Key, the same bytes every time, until a final answer."""
        data = json.dumps(body, separators=(",", ":"))
        give_up = time.monotonic() + RESOLVE_LIMIT
        while True:
            answer = self.call(kind, "POST", path, data=data, headers={"Idempotency-Key": key},
                               session=session)
            if not answer.transient:
                return answer
            if time.monotonic() > give_up or self.abort.is_set():
                return None
            self.pause()

    def record_spawn(self, key: str, kind: str, answer: Answer | None) -> list[str]:
        """Remember which agents a key was given; a second different set is a violation."""
        if answer is None:
            with self.shared.lock:
                self.shared.unresolved.append(key)
            return []
        if answer.status != 202 or not isinstance(answer.body, dict):
            if answer.status == 409:
                self.shared.note_unexpected(f"{kind} key {key} -> 409 {answer.message}")
            return []
        if "agents" in answer.body:
            ids = [a["agent_id"] for a in answer.body["agents"]]
        else:
            ids = [answer.body["agent_id"]]
        with self.shared.lock:
            self.shared.idem[key].add(tuple(ids))
            self.shared.idem_kind[key] = kind
            self.shared.known.update(ids)
            self.shared.recent.extend(ids)
            self.shared.backlog += len(ids)
            if answer.headers.get("Idempotent-Replayed") == "true":
                self.shared.replayed += 1
        return ids

    def new_key(self) -> str:
        self.seq += 1
        return f"soak-{self.n}-{self.seq}-{secrets.token_hex(4)}"

    def task(self) -> str:
        return f"Soak {self.seq}: " + " ".join(self.rng.choices(WORDS, k=self.rng.randint(3, 12)))

    # operations ---------------------------------------------------------------------
    def spawn(self) -> None:
        body = {"task": self.task(), "priority": self.rng.choice(PRIORITIES)}
        model = self.rng.choice(MODELS)
        if model:
            body["model"] = model
        self.write("spawn", "/api/spawn", body)

    def spawn_team(self) -> None:
        body = {"team": self.rng.choice(TEAMS), "task": self.task(),
                "priority": self.rng.choice(PRIORITIES)}
        if self.rng.random() < 0.3:
            body["timeout"] = 1  # two 0.6 s anthropic steps: fails with a timeout
        self.write("spawn_team", "/api/spawn-team", body)

    def spawn_batch(self) -> None:
        agents = []
        for _ in range(self.rng.randint(2, 5)):
            item = {"task": self.task(), "priority": self.rng.choice(PRIORITIES)}
            model = self.rng.choice(MODELS)
            if model:
                item["model"] = model
            agents.append(item)
        self.write("spawn_batch", "/api/spawn-batch", {"agents": agents})

    def write(self, kind: str, path: str, body: dict) -> list[str]:
        key = self.new_key()
        roll = self.rng.random()
        if roll < 0.04:
            # the same key sent twice at once: one agent, the other answer a replay
            other: list = []
            twin_session = requests.Session()
            twin_session.trust_env = False
            twin = threading.Thread(target=lambda: other.append(
                self.idempotent(kind, path, body, key, session=twin_session)), daemon=True)
            twin.start()
            first = self.idempotent(kind, path, body, key)
            twin.join(RESOLVE_LIMIT + REQUEST_TIMEOUT + 5)
            twin_session.close()
            ids = self.record_spawn(key, kind, first)
            self.record_spawn(key, kind, other[0] if other else None)
            return ids
        answer = self.idempotent(kind, path, body, key)
        ids = self.record_spawn(key, kind, answer)
        if ids and roll < 0.15:
            # a client that never saw the answer sends it again: the same agent(s)
            replay = self.idempotent("replay", path, body, key)
            self.record_spawn(key, kind, replay)
            if replay is not None and replay.status == 202 \
                    and replay.headers.get("Idempotent-Replayed") != "true":
                with self.shared.lock:
                    self.shared.mismatched_replays.append(f"{key}: no Idempotent-Replayed")
        return ids

    def spawn_cancel(self) -> None:
        """A client that gives up soon after spawning: its call may be in flight."""
        body = {"task": self.task(), "model": self.rng.choice(("opus", "sonnet"))}
        for agent_id in self.write("spawn", "/api/spawn", body) or ():
            time.sleep(self.rng.uniform(0.05, 0.8))
            answer = self.call("cancel", "DELETE", f"/api/agent/{agent_id}")
            with self.shared.lock:
                self.shared.cancel_results[answer.status] += 1

    def get_agent(self) -> None:
        with self.shared.lock:
            if not self.shared.recent:
                return
            agent_id = self.rng.choice(list(self.shared.recent)) if self.rng.random() < 0.5 \
                else self.rng.choice(tuple(self.shared.known))
        self.call("get_agent", "GET", f"/api/agent/{agent_id}")

    def cancel(self) -> None:
        with self.shared.lock:
            recent = list(self.shared.recent)[-100:]
        if not recent:
            return
        agent_id = self.rng.choice(recent)
        if self.rng.random() < 0.3:
            # with an Idempotency-Key: retried with it until answered
            key = self.new_key()
            give_up = time.monotonic() + RESOLVE_LIMIT
            while True:
                answer = self.call("cancel_idem", "DELETE", f"/api/agent/{agent_id}",
                                   headers={"Idempotency-Key": key})
                if not answer.transient or time.monotonic() > give_up or self.abort.is_set():
                    break
                self.pause()
        else:
            answer = self.call("cancel", "DELETE", f"/api/agent/{agent_id}")
        with self.shared.lock:
            self.shared.cancel_results[answer.status] += 1

    def list_agents(self) -> None:
        choice = self.rng.random()
        if choice < 0.3:
            params = {"limit": "20"}
        elif choice < 0.6:
            params = {"filter": json.dumps({"status": self.rng.choice(
                ("completed", "failed", "cancelled"))}), "sort": "-created_at", "limit": "20"}
        elif choice < 0.8:
            params = {"model": self.rng.choice(MODELS[:3]), "sort": "-created_at", "limit": "50"}
        else:
            params = {"filter": json.dumps({"status": {"in": list(ACTIVE)}}), "limit": "10"}
        answer = self.call("list", "GET", "/api/agents?" + urllib.parse.urlencode(params))
        pages = self.rng.randint(0, 2)
        while pages and answer.status == 200 and isinstance(answer.body, dict):
            cursor = answer.body.get("pagination", {}).get("next_cursor") or \
                answer.body.get("pagination", {}).get("cursor")
            if not cursor or not answer.body["pagination"].get("has_more"):
                break
            params = {k: v for k, v in params.items() if k != "offset"}
            params["cursor"] = cursor
            answer = self.call("list", "GET", "/api/agents?" + urllib.parse.urlencode(params))
            pages -= 1

    def refresh_backlog(self) -> None:
        params = {"filter": json.dumps({"status": {"in": list(ACTIVE)}}), "limit": "1"}
        answer = self.call("list_backlog", "GET", "/api/agents?" + urllib.parse.urlencode(params))
        if answer.status == 200 and isinstance(answer.body, dict):
            with self.shared.lock:
                self.shared.backlog = int(answer.body["pagination"]["total"])
                self.shared.backlog_at = time.monotonic()

    def status(self) -> None:
        self.call("status", "GET", "/api/orchestrator/status")

    def events(self) -> None:
        """Follow the feed by cursor: ids must come one after the other."""
        params = {"limit": "100"}
        if self.feed_cursor:
            params["cursor"] = self.feed_cursor
        answer = self.call("events", "GET", "/api/events?" + urllib.parse.urlencode(params))
        if answer.status != 200 or not isinstance(answer.body, dict):
            return
        for event in answer.body.get("data", []):
            number = int(event["id"].removeprefix("evt_"))
            expected = 1 if self.feed_last is None else self.feed_last + 1
            if number != expected:
                with self.shared.lock:
                    if len(self.shared.feed_problems) < 10:
                        self.shared.feed_problems.append(
                            f"client {self.n}: after {self.feed_last} came evt_{number}")
                    else:
                        self.shared.feed_problems.append("...")
            self.feed_last = number
            with self.shared.lock:
                self.shared.feed_events += 1
        cursor = answer.body.get("pagination", {}).get("cursor")
        if cursor:
            self.feed_cursor = cursor

    # the loop -----------------------------------------------------------------------
    OPS = (("spawn", 30), ("spawn_team", 6), ("spawn_batch", 2), ("get_agent", 20),
           ("list_agents", 12), ("status", 8), ("events", 12), ("cancel", 4),
           ("spawn_cancel", 4))

    def run(self) -> None:
        names = [name for name, _ in self.OPS]
        weights = [weight for _, weight in self.OPS]
        try:
            while time.monotonic() < self.stop_at and not self.abort.is_set():
                op = self.rng.choices(names, weights)[0]
                if op.startswith("spawn"):
                    with self.shared.lock:
                        stale = time.monotonic() - self.shared.backlog_at > 0.5
                    if stale:
                        self.refresh_backlog()
                    with self.shared.lock:
                        full = self.shared.backlog >= self.backlog_cap
                    if full:
                        op = self.rng.choice(("get_agent", "list_agents", "events", "status"))
                getattr(self, op)()
                time.sleep(self.rng.uniform(0, 0.02))
        except Exception as exc:  # noqa: BLE001 - reported as a failed run
            import traceback
            self.error = "".join(traceback.format_exception(exc))
            self.abort.set()
        finally:
            self.session.close()


# --------------------------------------------------------------------------- killer

class Killer(threading.Thread):
    def __init__(self, server: SoakServer, shared: Shared, rng: random.Random, start: float,
                 stop_at: float, every: tuple[float, float] | None, kills: int | None):
        super().__init__(name="soak-killer", daemon=True)
        self.server, self.shared, self.rng = server, shared, rng
        self.stop = threading.Event()
        if kills is not None:
            span = stop_at - start
            self.plan = sorted(start + span * self.rng.uniform(0.05, 0.9) for _ in range(kills))
        else:
            self.plan, moment = [], start
            while True:
                moment += self.rng.uniform(*every)
                if moment >= stop_at - 1:
                    break
                self.plan.append(moment)

    def run(self) -> None:
        for moment in self.plan:
            if self.stop.wait(max(0.0, moment - time.monotonic())):
                return
            window = [time.monotonic(), float("inf")]
            with self.shared.lock:
                self.shared.windows.append(window)
            self.server.kill()
            with self.shared.lock:
                self.shared.kills += 1
            try:
                self.server.start(wait=60)
            except Exception as exc:  # noqa: BLE001
                with self.shared.lock:
                    self.shared.restart_errors.append(str(exc)[:2000])
                return
            window[1] = time.monotonic()


# --------------------------------------------------------------------------- checks

def ro_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def scalar(conn: sqlite3.Connection, sql: str, *args):
    return conn.execute(sql, args).fetchone()[0]


def received_event_ids(receiver: WebhookReceiver) -> tuple[set[int], collections.Counter, int]:
    """Event ids the receiver accepted (valid signature, answered 2xx), accepted receipts
    per webhook-id, and receipts whose payload id differs from their webhook-id."""
    ids, per_id, mismatched = set(), collections.Counter(), 0
    for record in receiver.deliveries():
        msg_id = record["headers"].get("webhook-id", "")
        payload_id = (record["json"] or {}).get("id") if isinstance(record["json"], dict) else None
        if payload_id != msg_id:
            mismatched += 1
        match = re.fullmatch(r"evt_(\d+)", msg_id)
        if record["verified"] and match and isinstance(record["status"], int) \
                and 200 <= record["status"] < 300:
            per_id[msg_id] += 1
            ids.add(int(match.group(1)))
    return ids, per_id, mismatched


def wait_until(condition, timeout: float, step: float = 0.25) -> float | None:
    """Seconds until condition() held, or None on timeout."""
    began = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            return None
        time.sleep(step)


def in_window(sent: float, answered: float, windows: list[list[float]]) -> bool:
    return any(sent <= end and answered >= start for start, end in windows)


def log_problems(path: str) -> tuple[int, collections.Counter]:
    """Tracebacks in the server log, by their last line."""
    count, kinds = 0, collections.Counter()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return 0, kinds
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            count += 1
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                j += 1
            kinds[(lines[j] if j < len(lines) else "?")[:160]] += 1
    return count, kinds


# --------------------------------------------------------------------------- main

def parse_every(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    low_f, high_f = float(low), float(high or low)
    if not 0 < low_f <= high_f:
        raise argparse.ArgumentTypeError("--kill-every takes MIN-MAX seconds, 0 < MIN <= MAX")
    return low_f, high_f


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Soak J1MSKY: mixed traffic, random SIGKILLs, invariants checked at the end "
                    "(see the docstring).")
    parser.add_argument("--seconds", type=float, default=600,
                        help="seconds of traffic (default 600)")
    kill = parser.add_mutually_exclusive_group()
    kill.add_argument("--kill-every", type=parse_every, default=(10.0, 30.0), metavar="MIN-MAX",
                      help="SIGKILL the server after a random MIN..MAX seconds, again and again "
                           "(default 10-30)")
    kill.add_argument("--kills", type=int, default=None,
                      help="SIGKILL the server this many times, at random points of the run")
    parser.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--backlog", type=int, default=30,
                        help="pause spawning while this many agents are waiting or running "
                             "(default 30)")
    parser.add_argument("--webhook-fail-rate", type=float, default=0.3,
                        help="share of deliveries the receiver answers with 500 (default 0.3)")
    parser.add_argument("--webhook-slow-rate", type=float, default=0.01,
                        help="share of deliveries the receiver holds past the service's 2 s "
                             "timeout (default 0.01)")
    parser.add_argument("--drain", type=float, default=120,
                        help="at most this many seconds to wait for agents, and again for "
                             "webhooks, at the end (default 120)")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    parser.add_argument("--keep", action="store_true", help="keep the instance folder (logs)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    instance = tempfile.mkdtemp(prefix="j1msky-soak-")
    server: SoakServer | None = None
    receiver: FlakyReceiver | None = None
    upstream = FakeUpstream().start()
    upstream.set("anthropic", latency=0.6)
    upstream.set("openai", latency=0.15)
    # Answers to a server that was killed meanwhile write to closed sockets.
    upstream._server.handle_error = lambda request, client_address: None  # noqa: SLF001
    shared = Shared()
    abort = threading.Event()
    kill_text = (f"{args.kills} kills" if args.kills is not None
                 else f"a kill every {args.kill_every[0]:g}-{args.kill_every[1]:g}s")
    print(f"J1MSKY soak  {args.seconds:g}s of traffic  {args.clients} clients  {kill_text}  "
          f"seed={seed}  webhook receiver: {args.webhook_fail_rate:.0%} answered 500, "
          f"{args.webhook_slow_rate:.0%} held past the timeout  cpus={os.cpu_count()}",
          flush=True)
    try:
        with open(os.path.join(instance, "config.json"), "w", encoding="utf-8") as fh:
            json.dump(soak_config(upstream.url), fh, indent=2)
        server = SoakServer(instance, env={"NO_PROXY": "127.0.0.1,localhost",
                                           "no_proxy": "127.0.0.1,localhost", **UPSTREAM_ENV},
                            threads=SERVER_THREADS)
        for name in ("ANTHROPIC_API_KEY", "KIMI_API_KEY", "OPENAI_API_KEY"):
            server.env.pop(name, None)
        server.cli("init")
        key = server.create_key("agents:read", "agents:write", "admin:write")
        auth = {"Authorization": f"Bearer {key['key']}"}
        db_path = os.path.join(instance, "j1msky.sqlite3")
        began = time.monotonic()
        server.start(wait=60)
        print(f"setup             serve ready in {time.monotonic() - began:.1f}s on {server.url}"
              f"; instance {instance}", flush=True)

        receiver = FlakyReceiver(fail_rate=args.webhook_fail_rate,
                                 slow_rate=args.webhook_slow_rate, slow_seconds=2.5,
                                 seed=rng.randrange(2**32)).start()
        # Held requests answered after the service gave up write to closed sockets.
        receiver._server.handle_error = lambda request, client_address: None  # noqa: SLF001
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        receiver.expect_secret(None, secret)
        hook = requests.post(server.url + "/api/webhooks", headers=auth, timeout=10, json={
            "url": receiver.url + "/hook", "events": list(TERMINAL_EVENTS), "secret": secret})
        if hook.status_code != 201:
            raise RuntimeError(f"POST /api/webhooks answered {hook.status_code}: {hook.text}")

        # traffic ----------------------------------------------------------------------
        start = time.monotonic()
        stop_at = start + args.seconds
        killer = Killer(server, shared, random.Random(rng.randrange(2**32)), start, stop_at,
                        args.kill_every, args.kills)
        clients = [ClientThread(n, server.url, auth, shared, random.Random(rng.randrange(2**32)),
                                stop_at, args.backlog, abort) for n in range(args.clients)]
        killer.start()
        for client in clients:
            client.start()
        next_report = start + 60
        while any(c.is_alive() for c in clients):
            time.sleep(0.5)
            if time.monotonic() >= next_report and time.monotonic() < stop_at:
                with shared.lock:
                    n_req, kills, known = len(shared.log), shared.kills, len(shared.known)
                print(f"  t={time.monotonic() - start:5.0f}s  requests {n_req}  kills {kills}  "
                      f"agents {known}", flush=True)
                next_report += 60
            if time.monotonic() > stop_at + RESOLVE_LIMIT + 30:
                abort.set()
        for client in clients:
            client.join(5)
        traffic_s = time.monotonic() - start
        killer.stop.set()
        killer.join(90)
        client_errors = [c.error for c in clients if c.error]

        # drain ------------------------------------------------------------------------
        def active() -> int:
            conn = ro_connect(db_path)
            try:
                return scalar(conn, "SELECT (SELECT count(*) FROM agents WHERE status IN"
                                    " ('spawning', 'running')) + (SELECT count(*) FROM"
                                    " calls_in_flight)")
            finally:
                conn.close()

        server_up = not shared.restart_errors and server.process.poll() is None
        drain_s = wait_until(lambda: active() == 0, args.drain) if server_up else None

        def terminal_ids() -> set[int]:
            conn = ro_connect(db_path)
            try:
                return {r[0] for r in conn.execute(
                    "SELECT id FROM events WHERE type IN (?, ?, ?)", TERMINAL_EVENTS)}
            finally:
                conn.close()

        def outbox_settled() -> bool:
            """Every terminal event received, or its delivery no longer pending."""
            missing = terminal_ids() - received_event_ids(receiver)[0]
            if not missing:
                return True
            conn = ro_connect(db_path)
            try:
                marks = ",".join("?" * len(missing))
                pending = scalar(conn, f"SELECT count(*) FROM webhook_deliveries WHERE"
                                       f" event_id IN ({marks}) AND state = 'pending'",
                                 *missing)
                absent = len(missing) - scalar(conn, f"SELECT count(DISTINCT event_id) FROM"
                                                     f" webhook_deliveries WHERE event_id IN"
                                                     f" ({marks})", *missing)
            finally:
                conn.close()
            return pending == 0 and absent == 0

        webhooks_s = wait_until(outbox_settled, args.drain) if server_up else None
        exit_code = server.stop(timeout=60)
        time.sleep(0.3)  # a delivery answered as the server stopped is recorded by now

        # invariants -------------------------------------------------------------------
        conn = ro_connect(db_path)
        try:
            by_status = dict(conn.execute("SELECT status, count(*) FROM agents GROUP BY status"))
            failed_reasons = collections.Counter()
            for (error,) in conn.execute("SELECT error FROM agents WHERE status = 'failed'"):
                reason = re.sub(r"\d+(\.\d+)?", "N", error or "")[:80]
                failed_reasons[reason] += 1
            stuck = sum(by_status.get(s, 0) for s in ACTIVE)
            db_ids = {r[0] for r in conn.execute("SELECT agent_id FROM agents")}
            actual = scalar(conn, "SELECT coalesce(sum(actual_micros), 0) FROM agents")
            spent = scalar(conn, "SELECT coalesce(sum(spent_micros), 0) FROM budget_days")
            reserved = scalar(conn, "SELECT coalesce(sum(reserved_micros), 0) FROM budget_days")
            usage = scalar(conn, "SELECT coalesce(sum(cost_micros), 0) FROM usage_daily")
            estimated = scalar(conn, "SELECT coalesce(sum(estimated_charge_micros), 0)"
                                     " FROM agents")
            in_flight = scalar(conn, "SELECT count(*) FROM calls_in_flight")
            terminal = {r[0]: (r[1], json.loads(r[2])["agent_id"]) for r in conn.execute(
                "SELECT id, type, data FROM events WHERE type IN (?, ?, ?)", TERMINAL_EVENTS)}
            finished = dict(conn.execute("SELECT agent_id, status FROM agents WHERE status IN"
                                         " ('completed', 'failed', 'cancelled')"))
            outbox = dict(conn.execute("SELECT state, count(*) FROM webhook_deliveries"
                                       " GROUP BY state"))
            attempts = scalar(conn, "SELECT count(*) FROM webhook_attempts")
            stored_keys = {r[0]: r[1] for r in conn.execute(
                "SELECT idem_key, response_body FROM idempotency_keys WHERE state = 'done'")}
            executing_keys = scalar(conn, "SELECT count(*) FROM idempotency_keys"
                                          " WHERE state = 'executing'")
            integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()

        # (2) idempotency and the agents the clients were given
        duplicates = {k: v for k, v in shared.idem.items() if len(v) > 1}
        stored_mismatch = []
        for idem_key, answers in shared.idem.items():
            body = stored_keys.get(idem_key)
            if body is None:
                stored_mismatch.append(f"{idem_key}: not stored")
                continue
            parsed = json.loads(body)
            ids = tuple(a["agent_id"] for a in parsed["agents"]) if "agents" in parsed \
                else (parsed.get("agent_id"),)
            if answers != {ids}:
                stored_mismatch.append(f"{idem_key}: stored {ids}, clients got {answers}")
        unexpected_agents = db_ids - shared.known
        lost_agents = shared.known - db_ids

        # (4) webhooks
        received, per_id, payload_mismatch = received_event_ids(receiver)
        deliveries = receiver.deliveries()
        verified = sum(d["verified"] for d in deliveries)
        accepted = sum(per_id.values())
        dup_receipts = sum(c - 1 for c in per_id.values() if c > 1)
        undelivered = sorted(set(terminal) - received)

        # (6) failures by kill window
        with shared.lock:
            log = list(shared.log)
            windows = [list(w) for w in shared.windows]
        by_kind = collections.Counter(kind for kind, *_ in log)
        by_status_code = collections.Counter(str(status) for *_, status in log)
        inside = collections.Counter()
        outside: list[str] = []
        outside_count = collections.Counter()
        for kind, sent, answered, status in log:
            failure = not isinstance(status, int) or status >= 500
            if not failure:
                continue
            label = "5xx" if isinstance(status, int) else str(status)
            if in_window(sent, answered, windows):
                inside[label] += 1
            else:
                outside_count[label] += 1
                if len(outside) < 10:
                    outside.append(f"{kind} -> {status} at t={sent - start:.2f}s")
        window_lengths = [w[1] - w[0] for w in windows if w[1] != float("inf")]

        # (8) terminal events
        terminal_per_agent = collections.defaultdict(list)
        for event_type, agent_id in terminal.values():
            terminal_per_agent[agent_id].append(event_type)
        event_problems = []
        for agent_id, status in finished.items():
            types = terminal_per_agent.get(agent_id, [])
            if types != [f"agent.{status}"]:
                event_problems.append(f"{agent_id} ({status}): {types}")
        for agent_id in set(terminal_per_agent) - set(finished):
            event_problems.append(f"{agent_id} (not finished): {terminal_per_agent[agent_id]}")

        tracebacks, traceback_kinds = log_problems(server.log_path)
        billed = billed_micros(defaults(), upstream.answered())
        agents_total = sum(by_status.values())
        invariants = [
            ("1 no agent stuck in spawning/running",
             stuck == 0 and drain_s is not None,
             f"{stuck} active at the end; drained in "
             + (f"{drain_s:.1f}s" if drain_s is not None else f"more than {args.drain:g}s")),
            ("2 one agent per idempotency key, agents table == agents the clients got",
             not duplicates and not unexpected_agents and not lost_agents
             and not shared.unresolved and not stored_mismatch and executing_keys == 0,
             f"{len(shared.idem)} keys, {len(duplicates)} with two answers"
             f"{' e.g. ' + str(next(iter(duplicates.items()))) if duplicates else ''}; "
             f"{agents_total} agents in the table, {len(shared.known)} given to clients, "
             f"{len(unexpected_agents)} unexpected, {len(lost_agents)} lost; "
             f"{len(shared.unresolved)} writes never answered; {len(stored_mismatch)} stored "
             f"answers differing{' e.g. ' + stored_mismatch[0] if stored_mismatch else ''}; "
             f"{executing_keys} keys left executing"),
            ("3 spend consistent, every answered provider call paid for",
             actual == spent == usage and reserved == 0 and in_flight == 0
             and actual - estimated <= billed <= actual and (estimated or billed == actual),
             f"agents {actual} = budget_days {spent} = usage_daily {usage} micro-$, "
             f"reserved {reserved}, {in_flight} calls in flight; upstream billed {billed} for"
             f" {len(upstream.answered())} answers, charged from usage {actual - estimated},"
             f" at estimates {estimated}"),
            ("4 every terminal agent event delivered (verified signature, answered 2xx)",
             not undelivered,
             f"{len(terminal)} terminal events, {len(terminal) - len(undelivered)} accepted"
             + (f"; missing e.g. {['evt_%d' % i for i in undelivered[:5]]}" if undelivered
                else "")),
            ("5 PRAGMA integrity_check", integrity == ["ok"], ", ".join(integrity[:5])),
            ("6 no 5xx / connection error outside kill windows",
             not outside_count,
             f"outside {dict(outside_count) or 0}; inside {dict(inside) or 0}"
             + (f"; e.g. {outside[:3]}" if outside else "")),
            ("7 every other answer expected",
             shared.unexpected_count == 0 and not shared.mismatched_replays
             and not client_errors,
             f"{shared.unexpected_count} unexpected"
             + (f", e.g. {shared.unexpected[:3]}" if shared.unexpected else "")
             + (f"; replays without the header {shared.mismatched_replays[:3]}"
                if shared.mismatched_replays else "")
             + (f"; client crashed: {client_errors[0][-800:]}" if client_errors else "")),
            ("8 one terminal event per finished agent; events feed without gaps",
             not event_problems and not shared.feed_problems,
             f"{len(event_problems)} agents wrong"
             + (f" e.g. {event_problems[:3]}" if event_problems else "")
             + f"; {shared.feed_events} events read by cursor, {len(shared.feed_problems)} gaps"
             + (f" e.g. {shared.feed_problems[:3]}" if shared.feed_problems else "")),
            ("9 server back after every kill, clean exit on SIGTERM",
             not shared.restart_errors and exit_code == 0,
             f"{shared.kills} kills, {len(shared.restart_errors)} failed restarts; "
             f"SIGTERM exit code {exit_code}"
             + (f"; {shared.restart_errors[0][-500:]}" if shared.restart_errors else "")),
        ]

        # figures ----------------------------------------------------------------------
        print(f"duration          {traffic_s:.1f}s of traffic; drain "
              + (f"{drain_s:.1f}s" if drain_s is not None else "timed out")
              + "; webhooks settled "
              + (f"{webhooks_s:.1f}s later" if webhooks_s is not None else "never"), flush=True)
        print(f"requests          {len(log)}  " + "  ".join(
            f"{k} {v}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])))
        print("responses         " + "  ".join(
            f"{k}: {v}" for k, v in sorted(by_status_code.items())))
        print(f"kills             {shared.kills}  windows "
              + (f"{min(window_lengths):.1f}-{max(window_lengths):.1f}s "
                 f"(mean {sum(window_lengths) / len(window_lengths):.1f}s)"
                 if window_lengths else "-")
              + f"  5xx/conn errors inside windows {sum(inside.values())} {dict(inside)}"
              f"  outside {sum(outside_count.values())}")
        print(f"agents            {agents_total}  " + "  ".join(
            f"{k} {v}" for k, v in sorted(by_status.items())))
        print("  failed because  " + "; ".join(
            f"{k} x{v}" for k, v in failed_reasons.most_common(6)))
        print(f"idempotency       {len(shared.idem)} keys  {shared.replayed} replayed answers  "
              f"{len(duplicates)} keys with two different agents")
        print("cancels           " + "  ".join(
            f"{k}: {v}" for k, v in sorted(shared.cancel_results.items(), key=str)))
        print(f"webhooks          {len(deliveries)} deliveries received, {verified} verified "
              f"(signature), {accepted} accepted (verified, answered 2xx) for {len(received)} "
              f"events, {dup_receipts} accepted twice or more (same webhook-id); "
              f"{payload_mismatch} with a payload id other than the webhook-id; the receiver "
              f"answered 500 to {receiver.answered_500} and held {receiver.held} past the "
              f"timeout; outbox {outbox}, {attempts} attempts recorded")
        print(f"spend             ${actual / 1e6:.4f}")
        print(f"serve log         {tracebacks} tracebacks"
              + ("".join(f"\n   {v} x {k}" for k, v in traceback_kinds.most_common(5))))
        failed_any = False
        for name, ok, detail in invariants:
            failed_any |= not ok
            print(f"{'✓' if ok else '✗'} {name}: {detail}")
        print("PASS: every invariant holds" if not failed_any else "FAIL: invariant violated",
              flush=True)
        if args.json:
            print(json.dumps({
                "seed": seed, "seconds": round(traffic_s, 1), "clients": args.clients,
                "requests": len(log), "requests_by_kind": dict(by_kind),
                "responses_by_status": dict(by_status_code), "kills": shared.kills,
                "kill_windows_s": [round(x, 2) for x in window_lengths],
                "errors_inside_windows": dict(inside),
                "errors_outside_windows": dict(outside_count),
                "agents": agents_total, "agents_by_status": by_status,
                "failed_reasons": dict(failed_reasons),
                "idempotency_keys": len(shared.idem), "replayed": shared.replayed,
                "duplicates": len(duplicates),
                "webhooks": {"received": len(deliveries), "verified": verified,
                             "accepted": accepted,
                             "duplicates": dup_receipts, "answered_500": receiver.answered_500,
                             "terminal_events": len(terminal), "missing": len(undelivered),
                             "outbox": outbox},
                "spend_micros": actual, "tracebacks": tracebacks,
                "invariants": {name: ok for name, ok, _ in invariants},
                "passed": not failed_any}, indent=2))
        return 1 if failed_any else 0
    finally:
        abort.set()
        harness.clean_up([("serve", server), ("the receiver", receiver),
                          ("the fake upstream", upstream)], instance, args.keep)


if __name__ == "__main__":
    sys.exit(main())

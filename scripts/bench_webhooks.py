"""Benchmark of J1MSKY's webhook deliveries (CONTRACT.md §8), on 127.0.0.1.

What it does, in one run (about 40 s at the defaults on 2 cores):

1. Makes a temporary instance folder (J1MSKY_INSTANCE) with a config.json like the
   tests' (simulated providers with no delay, 4 agent workers, limits raised so that
   nothing is refused, webhooks allowed to 127.0.0.0/8 with retries after 1, 2 and 5 s
   and a 2 s timeout; webhooks.workers and max_in_flight_per_webhook left at their
   defaults), runs ``j1msky init`` and
   ``j1msky keys create`` (agents:read, agents:write, admin:write) and starts
   ``j1msky serve --threads 8`` (the installed console script; output to serve.log).
2. Starts two receivers in this process: a fast one (FastReceiver below, lighter than
   tests/webhook_receiver.WebhookReceiver: it answers 200 at once and only records the
   arrival, time.time() and time.monotonic(), with headers, body and data.agent_id;
   signatures are checked after the run, so its own work stays out of the timings) and a
   hanging one (tests.webhook_receiver.WebhookReceiver with hang=True: it never answers,
   so every attempt to it lasts the service's 2 s timeout).
3. A. Registers one webhook (agent.completed) to the fast receiver, then
   - paced: spawns --paced agents one by one at --rate/s (POST /api/spawn): the delay
     of a delivery when nothing queues;
   - burst: spawns --agents agents at once (POST /api/spawn-batch, 50 a request, 2
     client threads) and waits until every agent.completed event of them has reached
     the receiver (or, once the agents finished, --stall s without a new delivery or
     --wait s in all). Reports deliveries/s = received / (last receipt - first
     receipt), split into while the agents were completing and after the last
     completion (the backlog alone), beside the agents' completion rate; the time from
     the first agent.completed event to the last receipt.
   For both: p50/p99 of completion -> receipt, the event's created_at in the events
   table (microseconds, UTC, read from the SQLite file, matched by the payload's evt_
   id) against the receiver's time.time() at arrival; and the outbox rows' own
   created_at -> delivered_at (the service's clock) as a cross-check.
4. B. Registers a second webhook (agent.completed) to the hanging receiver and repeats
   A (paced, then burst: the paced agents' rows to the hanging receiver are still
   pending during the burst), measuring the fast receiver; prints its p50/p99 with and
   without the hanging receiver and the ratios. Deliveries still missing when the wait
   ends count as "more than N ms" (N: the least any of them had waited). When some are
   missing it shows each webhook's due rows, then releases the hanging receiver (it
   answers 200 from then on) and reports how long the missing deliveries take to arrive.
5. Verifies every delivery to the fast receiver with tests.webhook_receiver.verify
   (the standardwebhooks library) against the secret registered, checks its webhook-id
   is the event's evt_ id, counts duplicates (same webhook-id twice: allowed, at least
   once); the hanging receiver verifies its requests itself (generated secret).
6. Reads the gunicorn worker's RSS, then prints each target of issue 13 on a line
   ending in "met" or "MISSED": burst (A) completion -> receipt p50 <= 250 ms and
   p99 <= 1 s; the healthy receiver's paced p99 with the hanging one registered (B)
   <= 50 ms; worker RSS <= 80 MB; and every delivery to the fast receiver verified,
   none missing, none twice.
7. Stops the server (SIGTERM, then SIGKILL) and the receivers and removes the folder,
   even on error.

It prints figures; it asserts nothing.

    /path/to/venv/bin/python scripts/bench_webhooks.py [--agents 1000] [--paced 200]
        [--rate 40] [--stall 10] [--wait 20] [--json] [--keep]
"""
from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import json
import os
import secrets
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import harness  # noqa: E402
from harness import Server, free_port, j1msky_command, setup_instance  # noqa: E402

from tests.webhook_receiver import WebhookReceiver, verify  # noqa: E402

UTC = dt.timezone.utc
SERVER_THREADS = 8
SPAWN_THREADS = 2
BATCH = 50
TIMEOUT_SECONDS = 2
TARGET_BURST_P50_MS = 250
TARGET_BURST_P99_MS = 1000
TARGET_PACED_P99_MS = 50  # the healthy receiver's, with a hanging one registered
TARGET_RSS_MB = 80


# --------------------------------------------------------------------------- setup

def bench_config() -> dict:
    """tests/helpers.config_for_tests, limits high enough not to refuse anything, and
    webhooks to local receivers with short retries."""
    return harness.config(
        security={"cost_spike_per_hour": 1_000_000},
        webhooks={"allowed_networks": ["127.0.0.0/8"], "retry_schedule_seconds": [1, 2, 5],
                  "timeout_seconds": TIMEOUT_SECONDS})


class Client(harness.Client):
    """harness.Client sending and answering JSON."""

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        status, raw = super().request(
            method, path, data, {"Content-Type": "application/json"} if data else None)
        try:
            return status, json.loads(raw) if raw else {}
        except ValueError:
            return status, {"raw": raw[:300].decode(errors="replace")}


# --------------------------------------------------------------------------- receiver

class FastReceiver:
    """Answers every POST 200 at once; records arrival (time.time(), time.monotonic()),
    headers, body and data.agent_id. Verification is left for after the run."""

    def __init__(self):
        self.records: list[dict] = []  # list.append is atomic: no lock on the hot path
        self.server = _FastServer(("127.0.0.1", 0), _FastHandler)
        self.server.receiver = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       name="fast-receiver", daemon=True)

    def start(self) -> FastReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


class _FastServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # listen backlog (socketserver's default is 5)


class _FastHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format, *args):  # noqa: A002 - silence the access log
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        wall, mono = time.time(), time.monotonic()
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
        try:
            agent_id = json.loads(body)["data"].get("agent_id")
        except (ValueError, KeyError, TypeError, AttributeError):
            agent_id = None
        self.server.receiver.records.append({  # type: ignore[attr-defined]
            "wall": wall, "mono": mono, "body": body, "agent_id": agent_id,
            "headers": {k.lower(): v for k, v in self.headers.items()}})


# --------------------------------------------------------------------------- measuring

def parse_stored(text: str) -> float:
    """Storage form YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC) -> epoch seconds."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def ro_connect(db_path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)


def max_event_id(db_path: str) -> int:
    conn = ro_connect(db_path)
    try:
        return conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    finally:
        conn.close()


def completions(conn: sqlite3.Connection, since_event: int, agent_ids: set[str]) -> dict:
    """{agent_id: (event_id, created_at epoch)} of the agent.completed events after
    `since_event` of these agents."""
    rows = conn.execute("SELECT id, created_at, json_extract(data, '$.agent_id') FROM events"
                        " WHERE type = 'agent.completed' AND id > ?", (since_event,)).fetchall()
    return {aid: (eid, parse_stored(created)) for eid, created, aid in rows if aid in agent_ids}


def spawn_agents(port: int, headers: dict, count: int) -> tuple[list[str], collections.Counter,
                                                                 float]:
    """POST /api/spawn-batch (BATCH per request) from SPAWN_THREADS clients; returns
    (agent ids, response statuses, seconds)."""
    batches = [min(BATCH, count - i) for i in range(0, count, BATCH)]
    ids: list[str] = []
    statuses: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def spawner(mine: list[int]) -> None:
        client = Client(port, headers)
        for size in mine:
            body = {"agents": [{"model": "k2p5",
                                "task": f"Webhook bench {secrets.token_hex(4)}: a haiku"}
                               for _ in range(size)]}
            try:
                status, answer = client.request("POST", "/api/spawn-batch", body)
            except OSError as exc:
                status, answer = type(exc).__name__, {}
            with lock:
                statuses[status] += 1
                ids.extend(a["agent_id"] for a in answer.get("agents", []))
                if status != 202 and statuses[status] == 1:
                    print(f"  spawn-batch answered {status}: {str(answer)[:300]}", flush=True)
        client.close()

    threads = [threading.Thread(target=spawner, args=(batches[n::SPAWN_THREADS],), daemon=True)
               for n in range(SPAWN_THREADS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ids, statuses, time.perf_counter() - began


def spawn_paced(port: int, headers: dict, count: int, rate: float) -> tuple[list[str],
                                                                           collections.Counter,
                                                                           float]:
    """POST /api/spawn one agent at a time, `rate` a second, from one client."""
    client = Client(port, headers)
    ids: list[str] = []
    statuses: collections.Counter = collections.Counter()
    began = time.perf_counter()
    for i in range(count):
        pause = began + i / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        status, answer = client.request("POST", "/api/spawn", {
            "model": "k2p5", "task": f"Webhook bench {secrets.token_hex(4)}: a haiku"})
        statuses[status] += 1
        if "agent_id" in answer:
            ids.append(answer["agent_id"])
        elif statuses[status] == 1:
            print(f"  spawn answered {status}: {str(answer)[:300]}", flush=True)
    client.close()
    return ids, statuses, time.perf_counter() - began


def first_receipts(receiver: FastReceiver, agent_ids: set[str]) -> dict:
    """{agent_id: the first record that arrived for it} among these agents."""
    out: dict[str, dict] = {}
    for record in list(receiver.records):
        aid = record["agent_id"]
        if aid in agent_ids and aid not in out:
            out[aid] = record
    return out


def wait_delivered(receiver: FastReceiver, db_path: str, since_event: int,
                   agent_ids: set[str], stall: float, wait: float) -> dict:
    """Poll until every agent is finished and every agent.completed event of them has
    reached the receiver; give up once all agents finished and either nothing new
    arrived for `stall` seconds or `wait` seconds passed."""
    began = time.monotonic()
    last_progress, last_seen, finished_at = began, -1, None
    placeholders = ",".join("?" * len(agent_ids))
    conn = ro_connect(db_path)
    try:
        while True:
            in_flight = conn.execute(
                f"SELECT count(*) FROM agents WHERE agent_id IN ({placeholders})"
                " AND status IN ('spawning', 'running')", list(agent_ids)).fetchone()[0]
            done = completions(conn, since_event, agent_ids)
            got = first_receipts(receiver, agent_ids)
            now = time.monotonic()
            if len(got) != last_seen:
                last_seen, last_progress = len(got), now
            if in_flight == 0 and finished_at is None:
                finished_at = now
            if in_flight == 0 and set(done) <= set(got):
                stalled = False
                break
            if (finished_at is not None and (now - last_progress > stall
                                             or now - finished_at > wait)) \
                    or now - began > wait + 60:
                stalled = True
                break
            time.sleep(0.05)
        statuses = dict(conn.execute(
            f"SELECT status, count(*) FROM agents WHERE agent_id IN ({placeholders})"
            " GROUP BY status", list(agent_ids)).fetchall())
    finally:
        conn.close()
    return {"completed": done, "received": got, "stalled": stalled, "in_flight": in_flight,
            "statuses": statuses, "waited": time.monotonic() - began}


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list (inf stands for "not received")."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def outbox_delays(db_path: str, webhook_id: str, since_event: int) -> list[float]:
    """created_at -> delivered_at of the webhook's delivered outbox rows (service clock)."""
    conn = ro_connect(db_path)
    try:
        rows = conn.execute("SELECT created_at, delivered_at FROM webhook_deliveries"
                            " WHERE webhook_id = ? AND event_id > ? AND state = 'delivered'",
                            (webhook_id, since_event)).fetchall()
    finally:
        conn.close()
    return sorted(parse_stored(b) - parse_stored(a) for a, b in rows)


def outbox_states(db_path: str, webhook_id: str, since_event: int) -> dict:
    conn = ro_connect(db_path)
    try:
        return dict(conn.execute("SELECT state, count(*) FROM webhook_deliveries"
                                 " WHERE webhook_id = ? AND event_id > ? GROUP BY state",
                                 (webhook_id, since_event)).fetchall())
    finally:
        conn.close()


def due_rows(db_path: str, healthy_id: str, hanging_id: str) -> str:
    """Why the healthy webhook waits: each webhook's due pending rows."""
    now = dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    conn = ro_connect(db_path)
    try:
        due = dict(conn.execute("SELECT webhook_id, count(*) FROM webhook_deliveries"
                                " WHERE state = 'pending' AND next_attempt_at <= ?"
                                " GROUP BY webhook_id", (now,)).fetchall())
    finally:
        conn.close()
    return f"due pending rows: healthy {due.get(healthy_id, 0)}, hanging {due.get(hanging_id, 0)}"


def run_phase(port: int, headers: dict, receiver: FastReceiver, db_path: str, n: int,
              webhook_id: str, args: argparse.Namespace, rate: float | None = None) -> dict:
    """Spawn n agents (all at once, or `rate` a second) and measure their deliveries to
    `receiver`."""
    since = max_event_id(db_path)
    if rate:
        ids, statuses, spawn_s = spawn_paced(port, headers, n, rate)
    else:
        ids, statuses, spawn_s = spawn_agents(port, headers, n)
    agent_ids = set(ids)
    wait = wait_delivered(receiver, db_path, since, agent_ids, args.stall, args.wait)
    gave_up = time.time()
    done, got = wait["completed"], wait["received"]
    delays = []
    mismatched = 0
    for aid, (event_id, created) in done.items():
        record = got.get(aid)
        if record is None:
            delays.append(float("inf"))
            continue
        msg_id = record["headers"].get("webhook-id")
        if msg_id != f"evt_{event_id}":
            mismatched += 1
        delays.append(record["wall"] - created)
    delays.sort()
    missing_waited = min((gave_up - created for aid, (_, created) in done.items()
                          if aid not in got), default=0.0)
    received = [r for aid, r in got.items() if aid in done]
    first_rx = min((r["mono"] for r in received), default=None)
    last_rx = max((r["mono"] for r in received), default=None)
    last_rx_wall = max((r["wall"] for r in received), default=None)
    created = sorted(c for _, c in done.values())
    rx_span = (last_rx - first_rx) if received else 0.0
    # Deliveries after the last completion, when the service had nothing else to do.
    after = sorted(r["wall"] for r in received if created and r["wall"] > created[-1])
    drain_rate = (len(after) - 1) / (after[-1] - after[0]) if len(after) > 10 else float("nan")
    during = [r["wall"] for r in received if created and r["wall"] <= created[-1]]
    during_rate = len(during) / (created[-1] - min(during)) \
        if len(during) > 10 and created[-1] > min(during) else float("nan")
    done_span = (created[-1] - created[0]) if len(created) > 1 else 0.0
    return {
        "since_event": since, "stall": args.stall, "rate": rate, "agent_ids": agent_ids, "spawned": len(ids),
        "spawn_statuses": statuses, "spawn_seconds": spawn_s, "agent_statuses": wait["statuses"],
        "completed": len(done), "received": len(received), "missing": len(done) - len(received),
        "missing_waited": missing_waited,
        "stalled": wait["stalled"], "waited": wait["waited"], "delays": delays,
        "mismatched_ids": mismatched,
        "deliveries_per_s": len(received) / rx_span if rx_span > 0 else float("nan"),
        "completions_per_s": len(created) / done_span if done_span > 0 else float("nan"),
        "first_completion_to_last_receipt": (last_rx_wall - created[0])
        if received and created else float("nan"),
        "rx_span": rx_span, "done_span": done_span, "drain_rate": drain_rate,
        "drained": len(after), "during_rate": during_rate,
        "outbox": outbox_delays(db_path, webhook_id, since),
        "outbox_states": outbox_states(db_path, webhook_id, since),
    }


def delay_ms(p: dict, q: float) -> str:
    """A percentile of completion -> receipt in ms; ">N" when it falls on deliveries that
    never arrived (N: the least they had waited when we gave up)."""
    value = pct(p["delays"], q)
    if value == float("inf"):
        return f">{p['missing_waited'] * 1000:.0f}"
    return f"{value * 1000:.1f}"


def print_burst(p: dict) -> None:
    print(f"   burst             {p['spawned']} agents spawned in {p['spawn_seconds']:.1f}s "
          f"(spawn-batch of {BATCH}{spawn_trouble(p)}), {p['completed']} completed at "
          f"{p['completions_per_s']:.0f}/s over {p['done_span']:.1f}s{outcome_trouble(p)}",
          flush=True)
    tail = f"  {p['missing']} NOT received (gave up {p['waited']:.0f}s after spawning)" \
        if p["missing"] else ""
    print(f"   deliveries/s      {p['deliveries_per_s']:.0f}  ({p['received']}/{p['completed']}"
          f" received over {p['rx_span']:.2f}s; first completion → last receipt "
          f"{p['first_completion_to_last_receipt']:.2f}s){tail}", flush=True)
    if p["drained"] > 10:
        print(f"                     {p['during_rate']:.0f}/s while agents were completing, "
              f"{p['drain_rate']:.0f}/s after the last completion ({p['drained']} deliveries "
              f"of the backlog)", flush=True)
    print(f"   completion→receipt p50 {delay_ms(p, .5)} ms  p99 {delay_ms(p, .99)} ms   "
          f"(outbox created→delivered p50 {pct(p['outbox'], .5) * 1000:.1f} ms  p99 "
          f"{pct(p['outbox'], .99) * 1000:.1f} ms)", flush=True)


def print_paced(p: dict) -> None:
    tail = f", {p['missing']} NOT received" if p["missing"] else ""
    print(f"   paced             {p['spawned']} agents at {p['rate']:g}/s{spawn_trouble(p)}"
          f"{outcome_trouble(p)}: completion→receipt p50 {delay_ms(p, .5)} ms  p99 "
          f"{delay_ms(p, .99)} ms  ({p['received']}/{p['completed']} received{tail})",
          flush=True)


def spawn_trouble(p: dict) -> str:
    bad = {k: v for k, v in p["spawn_statuses"].items() if k not in (200, 202)}
    return f", refused: {bad}" if bad else ""


def outcome_trouble(p: dict) -> str:
    other = {k: v for k, v in p["agent_statuses"].items() if k != "completed"}
    return f" (others: {other})" if other else ""


def print_targets(burst: dict, paced_with_hanging: dict | None, rss: float | None,
                  faults: int) -> None:
    """Each target of issue 13 on its own line, ending in "met" or "MISSED"."""
    def line(what: str, value: float | None, target: float, unit: str) -> None:
        shown = "not measured" if value is None else f"{value:.1f} {unit}" if unit \
            else f"{value:g}"
        ok = value is not None and value <= target
        print(f"target  {what:<66} {shown:>12} <= {target:g} {unit}".rstrip()
              + f"  {'met' if ok else 'MISSED'}", flush=True)

    line("burst to one fast receiver, completion→receipt p50", pct(burst["delays"], .5) * 1000,
         TARGET_BURST_P50_MS, "ms")
    line("burst to one fast receiver, completion→receipt p99", pct(burst["delays"], .99) * 1000,
         TARGET_BURST_P99_MS, "ms")
    line("healthy receiver, paced p99 with a hanging one registered",
         pct(paced_with_hanging["delays"], .99) * 1000 if paced_with_hanging else None,
         TARGET_PACED_P99_MS, "ms")
    line("gunicorn worker RSS after the run", rss, TARGET_RSS_MB, "MB")
    line("deliveries unverified, missing or sent twice to the fast receiver", faults, 0, "")


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark J1MSKY webhook deliveries "
                                                 "(see the docstring).")
    parser.add_argument("--agents", type=int, default=1000,
                        help="agents spawned in each burst (default 1000)")
    parser.add_argument("--paced", type=int, default=200,
                        help="agents spawned one by one before each burst (default 200; 0: none)")
    parser.add_argument("--rate", type=float, default=40.0,
                        help="spawns a second of the paced run (default 40)")
    parser.add_argument("--stall", type=float, default=10.0,
                        help="once the agents finished, stop waiting after this many seconds"
                             " without a new delivery (default 10)")
    parser.add_argument("--wait", type=float, default=20.0,
                        help="once the agents finished, stop waiting after this many seconds"
                             " (default 20)")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    parser.add_argument("--keep", action="store_true", help="keep the instance folder (logs)")
    args = parser.parse_args()
    if args.agents < 2:
        parser.error("--agents must be at least 2")

    # SIGTERM (a CI timeout, `kill`) unwinds through the cleanup below, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    instance = tempfile.mkdtemp(prefix="j1msky-bench-webhooks-")
    server: Server | None = None
    fast: FastReceiver | None = None
    hanging: WebhookReceiver | None = None
    print(f"J1MSKY bench_webhooks  burst={args.agents} agents  paced={args.paced} at "
          f"{args.rate:g}/s  webhook timeout={TIMEOUT_SECONDS}s  server threads="
          f"{SERVER_THREADS}  cpus={os.cpu_count()}", flush=True)
    try:
        t = time.perf_counter()
        env, key = setup_instance(instance, bench_config(), "bench-webhooks",
                                  ("agents:read", "agents:write", "admin:write"))
        setup_s = time.perf_counter() - t
        db_path = os.path.join(instance, "j1msky.sqlite3")
        port = free_port()
        server = Server("serve", [*j1msky_command(), "serve", "--host", "127.0.0.1",
                                  "--port", str(port), "--threads", str(SERVER_THREADS)],
                        env, os.path.join(instance, "serve.log"), port)
        headers = {"Authorization": f"Bearer {key['key']}"}
        ready_s = server.start("/api/health", headers)
        fast = FastReceiver().start()
        hanging = WebhookReceiver().start()
        hanging.set(hang=True)
        # Hung requests released after the service gave up on them write to closed sockets;
        # socketserver would print a traceback for each.
        hanging._server.handle_error = lambda request, client_address: None  # noqa: SLF001
        print(f"setup             init+key {setup_s:.1f}s, serve ready in {ready_s:.1f}s; "
              f"receivers in this process: fast {fast.url} (FastReceiver: 200 at once), "
              f"hanging {hanging.url} (tests' WebhookReceiver, hang=True)", flush=True)

        api = Client(port, headers)
        fast_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        status, hook = api.request("POST", "/api/webhooks", {
            "url": fast.url + "/hook", "events": ["agent.completed"], "secret": fast_secret})
        if status != 201:
            raise RuntimeError(f"POST /api/webhooks answered {status}: {hook}")
        fast_id = hook["id"]

        print("A. one webhook (agent.completed) to the fast receiver", flush=True)
        alone_paced = run_phase(port, headers, fast, db_path, args.paced, fast_id, args,
                                rate=args.rate) if args.paced else None
        if alone_paced:
            print_paced(alone_paced)
        alone = run_phase(port, headers, fast, db_path, args.agents, fast_id, args)
        print_burst(alone)

        status, hook2 = api.request("POST", "/api/webhooks", {
            "url": hanging.url + "/hang", "events": ["agent.completed"]})
        if status != 201:
            raise RuntimeError(f"POST /api/webhooks (hanging) answered {status}: {hook2}")
        hanging.expect_secret(None, hook2["secret"])  # generated: shown once
        hang_id = hook2["id"]
        print("B. the same, plus a second webhook (agent.completed) to the hanging receiver",
              flush=True)
        shared_paced = run_phase(port, headers, fast, db_path, args.paced, fast_id, args,
                                 rate=args.rate) if args.paced else None
        if shared_paced:
            print_paced(shared_paced)
        shared = run_phase(port, headers, fast, db_path, args.agents, fast_id, args)
        print_burst(shared)
        since_b = (shared_paced or shared)["since_event"]
        if shared["missing"]:
            print(f"   outbox at give-up {due_rows(db_path, fast_id, hang_id)}", flush=True)
        print(f"   hanging receiver  {hanging.count()} requests arrived in phase B, each held "
              f"until the service's {TIMEOUT_SECONDS}s timeout; its outbox rows "
              f"{outbox_states(db_path, hang_id, since_b)}", flush=True)

        def ratio(b: dict, a: dict, q: float) -> str:
            vb, va = pct(b["delays"], q), pct(a["delays"], q)
            if vb == float("inf"):
                return "inf"
            return f"{vb / va:.1f}" if va > 0 else "nan"

        print(f"with a hanging receiver  burst p50 {delay_ms(shared, .5)} ms  p99 "
              f"{delay_ms(shared, .99)} ms   without p50 {delay_ms(alone, .5)} ms  p99 "
              f"{delay_ms(alone, .99)} ms   ratio p50 {ratio(shared, alone, .5)}  p99 "
              f"{ratio(shared, alone, .99)}", flush=True)
        if alone_paced and shared_paced:
            print(f"                         paced p50 {delay_ms(shared_paced, .5)} ms  p99 "
                  f"{delay_ms(shared_paced, .99)} ms   without p50 {delay_ms(alone_paced, .5)} ms"
                  f"  p99 {delay_ms(alone_paced, .99)} ms   ratio p50 "
                  f"{ratio(shared_paced, alone_paced, .5)}  p99 "
                  f"{ratio(shared_paced, alone_paced, .99)}", flush=True)

        # Release the hanging receiver: do the healthy receiver's missing deliveries come now?
        recovery = None
        phase_b = [p for p in (shared_paced, shared) if p]
        b_ids = set().union(*(p["agent_ids"] for p in phase_b))
        if any(p["missing"] for p in phase_b):
            conn = ro_connect(db_path)
            try:
                expected = set(completions(conn, since_b, b_ids))
            finally:
                conn.close()
            before = len(first_receipts(fast, b_ids))
            hanging.release()
            released = time.monotonic()
            arrived_all = None
            while time.monotonic() - released < 30:
                if expected <= set(first_receipts(fast, b_ids)):
                    arrived_all = time.monotonic() - released
                    break
                time.sleep(0.05)
            after = len(first_receipts(fast, b_ids))
            recovery = {"missing_before": len(expected) - before,
                        "missing_after": len(expected) - after, "seconds": arrived_all}
            print(f"   after release     (the hanging receiver answers 200 from now on) the fast"
                  f" receiver got the {after - before} missing deliveries "
                  + (f"in {arrived_all:.1f}s" if arrived_all is not None
                     else f"within 30s, {len(expected) - after} still missing")
                  + f"; the hanging one has had {hanging.count()} requests", flush=True)

        # Signatures and duplicates of every delivery to the fast receiver.
        failures = collections.Counter()
        examples: list[str] = []
        per_id = collections.Counter()
        for record in list(fast.records):
            per_id[record["headers"].get("webhook-id")] += 1
            error = verify(fast_secret, record["body"], record["headers"])
            if error is not None:
                failures[error.split(":")[0]] += 1
                if len(examples) < 3:
                    examples.append(error[:200])
        duplicates = sum(c - 1 for c in per_id.values() if c > 1)
        hanging_log = hanging.deliveries()
        hang_bad = sum(not d["verified"] for d in hanging_log)
        phases = [p for p in (alone_paced, alone, shared_paced, shared) if p]
        mismatched = sum(p["mismatched_ids"] for p in phases)
        print(f"signatures        fast receiver: {len(fast.records)} deliveries, "
              f"{sum(failures.values())} failed verification"
              f"{' ' + str(dict(failures)) if failures else ''}, {duplicates} duplicates (same "
              f"webhook-id), {mismatched} with a webhook-id other than the event's;  hanging "
              f"receiver: {len(hanging_log)} requests, {hang_bad} failed verification",
              flush=True)
        for example in examples:
            print(f"   e.g. {example}", flush=True)
        problems = harness.log_problems(server.log_path)
        print(f"serve log         {problems or 'no tracebacks, no 4xx/5xx'}", flush=True)
        rss = server.worker_rss_mb()
        missing = sum(p["missing"] for p in phases)
        print_targets(alone, shared_paced, rss,
                      sum(failures.values()) + missing + duplicates + mismatched)

        if args.json:
            def summary(p: dict | None) -> dict | None:
                if p is None:
                    return None
                return {k: (None if v == float("inf") else round(v, 4) if isinstance(v, float)
                            else v) for k, v in {
                    "spawned": p["spawned"], "completed": p["completed"],
                    "received": p["received"], "missing": p["missing"],
                    "deliveries_per_s": p["deliveries_per_s"],
                    "completions_per_s": p["completions_per_s"],
                    "deliveries_per_s_while_completing": p["during_rate"],
                    "deliveries_per_s_after_last_completion": p["drain_rate"],
                    "first_completion_to_last_receipt_s": p["first_completion_to_last_receipt"],
                    "p50_ms": pct(p["delays"], .5) * 1000, "p99_ms": pct(p["delays"], .99) * 1000,
                    "outbox_p50_ms": pct(p["outbox"], .5) * 1000,
                    "outbox_p99_ms": pct(p["outbox"], .99) * 1000}.items()}
            print(json.dumps({"agents": args.agents, "paced": args.paced, "rate": args.rate,
                              "alone": {"burst": summary(alone), "paced": summary(alone_paced)},
                              "with_hanging": {"burst": summary(shared),
                                               "paced": summary(shared_paced)},
                              "recovery": recovery, "hanging_requests": len(hanging_log),
                              "signature_failures": sum(failures.values()),
                              "duplicates": duplicates, "serve_log": problems,
                              "worker_rss_mb": rss and round(rss, 1)},
                             indent=2, default=str))
        return 0
    finally:
        # Stop the service first (it may be waiting on the hanging receiver), then the
        # receivers; stop() lets hung requests go unanswered.
        harness.clean_up([("serve", server), ("a receiver", fast), ("a receiver", hanging)],
                         instance, args.keep)


if __name__ == "__main__":
    sys.exit(main())

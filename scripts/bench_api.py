"""Benchmark of the J1MSKY HTTP API against a bare Flask app, on 127.0.0.1.

What it does, in one run (about two and a half minutes at the defaults on 2 cores, most
of it growing the database to a million agents):

1. Makes a temporary instance folder (J1MSKY_INSTANCE) with a config.json like
   the tests' (simulated providers with no delay, 4 agent workers, limits raised
   so that the benchmark is not refused), runs ``j1msky init`` and ``j1msky keys
   create`` (the installed console script), and seeds N finished agents straight
   into SQLite (one transaction, then ANALYZE), with their running totals: the
   agents' budget_day, and budget_days and usage_daily summed from them by SQL.
2. Starts ``j1msky serve --threads 8`` and the bare app of scripts/bare_app.py
   under the same gunicorn settings (1 worker, gthread, 8 threads, access log to
   stdout); both servers' output goes to files in the instance folder.
3. Measures, with keep-alive HTTP clients (http.client, one connection per
   client thread, 4 client threads, the service and the bare app measured in
   alternating 1 s rounds; list latencies from one sequential client):
   - req/s of ``GET /api/agent/{id}`` (random seeded ids) against the bare route;
   - p50/p99 latency and req/s of
     ``GET /api/agents?filter={"status":"completed","model":"opus"}&sort=-created_at&limit=20``;
   - p50/p99 of the first page and of a page ~90% deep (by cursor) of
     ``GET /api/agents?sort=-created_at&limit=100``;
   - agents/s completed through the simulated provider: M agents spawned with
     ``POST /api/spawn`` (Idempotency-Key on each), timed until none is in flight;
   - accepted spawns/s of ``POST /api/spawn`` (a unique Idempotency-Key each) against
     the bare app's ``POST /spawn`` req/s, alternating rounds; after each spawn round
     the runner finishes its agents before the next round starts (untimed);
   - RSS of the serve worker process, idle after start and after the run.
4. Stops the service, grows the database to --status-agents agents (same seeding and
   totals), starts it again and measures the p50/p99 latency (one sequential client)
   of ``GET /api/orchestrator/status`` and ``POST /api/orchestrator/recommend-model``
   (coding, medium, normal, 2500 tokens), and checks that status's today_spend is the
   sum over today's agents.
5. Stops both servers (SIGTERM, then SIGKILL) and removes the folder, even on error.

It prints figures and "target met"/"target MISSED"; it asserts nothing.

    /path/to/venv/bin/python scripts/bench_api.py [--agents 100000] [--seconds 5]
        [--spawn 2000] [--status-agents 1000000] [--json] [--keep]
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import zoneinfo

import harness
from harness import Server, free_port, j1msky_command, setup_instance

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_THREADS = 4
SERVER_THREADS = 8
UTC = dt.timezone.utc

TARGET_AGENT_RATIO = 0.5     # GET /agent/{id} req/s over the bare app's
TARGET_LIST_P50_MS = 10.0    # filtered list p50
TARGET_DEEP_RATIO = 1.5      # deep page p50 over first page p50
TARGET_RSS_MB = 80.0         # serve worker RSS
TARGET_STATUS_P50_MS = 10.0  # GET /orchestrator/status p50 at --status-agents

LIST_FILTERED = "/api/agents?" + urllib.parse.urlencode({
    "filter": json.dumps({"status": "completed", "model": "opus"}),
    "sort": "-created_at", "limit": "20"})
LIST_FIRST = "/api/agents?sort=-created_at&limit=100"
IN_FLIGHT = "/api/agents?" + urllib.parse.urlencode({
    "filter": json.dumps({"status": {"in": ["spawning", "running"]}}), "limit": "1"})


# --------------------------------------------------------------------------- setup

TEAMS = {"team_coding": ["k2p5", "sonnet"], "team_creative": ["sonnet", "opus"],
         "team_research": ["k2p5", "sonnet", "opus"], "team_business": ["sonnet", "opus"]}
PRICES = {"k2p5": (600, 2500), "sonnet": (3000, 15000), "opus": (15000, 75000)}  # micros/1K
TASK_WORDS = ("write parse refactor summarise review plan design test explain migrate the a "
              "python function api endpoint csv report invoice customer budget schema "
              "query cache retry webhook sqlite raspberry pi dashboard").split()


def iso(moment: dt.datetime) -> str:
    """j1msky.services.clock.iso: the storage form, fixed width."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seed_rows(n: int, key_id: str, rng: random.Random, timezone: str, taken: set[str]):
    """N finished agents over the last 60 days, in creation order (ids follow time).

    Yields insert tuples; agent ids already in `taken` are avoided and new ones added.
    budget_day is the creation date in the configured time zone, as admission sets it.
    """
    zone = zoneinfo.ZoneInfo(timezone)
    now = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    span = 60 * 86400
    created = sorted(now - dt.timedelta(seconds=rng.random() * span) for _ in range(n))
    for moment in created:
        while True:
            agent_id = f"subagent_{int(moment.timestamp())}_{rng.randrange(10**6):06d}"
            if agent_id not in taken:
                taken.add(agent_id)
                break
        status = rng.choices(("completed", "failed", "cancelled"), (85, 10, 5))[0]
        team = rng.choice(list(TEAMS)) if rng.random() < 0.05 else None
        model = TEAMS[team][0] if team else rng.choices(("k2p5", "sonnet", "opus"),
                                                        (50, 35, 15))[0]
        task = " ".join(rng.choices(TASK_WORDS, k=rng.randint(6, 30))).capitalize()
        input_tokens = len(task) // 4 + 8
        output_tokens = rng.randint(40, 900) if status == "completed" else rng.randint(0, 50)
        price_in, price_out = PRICES[model]
        actual = (input_tokens * price_in + output_tokens * price_out) // 1000
        estimated = (input_tokens * 75000 + 4096 * 75000) // 1000
        started = moment + dt.timedelta(seconds=rng.uniform(0.01, 3))
        done = started + dt.timedelta(seconds=rng.uniform(0.5, 90))
        if status == "cancelled" and rng.random() < 0.5:
            started, actual, input_tokens, output_tokens = None, 0, 0, 0
        result = (f"[simulated {model}] " + " ".join(rng.choices(TASK_WORDS, k=rng.randint(20, 60)))
                  if status == "completed" else None)
        error = {"failed": "Provider anthropic: 529 overloaded after 3 retries",
                 "cancelled": "cancelled by request"}.get(status)
        steps = json.dumps([{"model": m, "status": "completed", "output": "...", "cost": 0.0}
                            for m in TEAMS[team]]) if team else None
        yield (agent_id, key_id, model, team, status, task,
               rng.choices(("normal", "high", "low"), (80, 10, 10))[0], 300.0,
               iso(moment), iso(started) if started else None, iso(done), result, error,
               estimated, actual, input_tokens, output_tokens, None, steps, 1,
               moment.astimezone(zone).date().isoformat())


# The running totals of the seeded agents, as the service keeps them for agents it runs:
# budget_days.spent_micros = Σ actual_micros of the day's agents (nothing reserved: all
# finished); usage_daily one call per agent that reached its model (tokens or cost), its
# tokens and cost under the agent's model (a team's whole cost under its first model).
# Added to whatever totals are there, for the rows with id > ? only.
ADD_BUDGET_DAYS = """
INSERT INTO budget_days (day, spent_micros, reserved_micros)
SELECT budget_day, sum(actual_micros), 0 FROM agents WHERE id > ? GROUP BY budget_day
ON CONFLICT (day) DO UPDATE SET spent_micros = spent_micros + excluded.spent_micros"""
ADD_USAGE_DAILY = """
WITH provider_of (model, provider) AS (SELECT key, value FROM json_each(?))
INSERT INTO usage_daily (day, model, provider, key_id, calls, input_tokens, output_tokens,
                         cost_micros)
SELECT a.budget_day, a.model, p.provider, coalesce(a.key_id, ''), count(*),
       sum(a.input_tokens), sum(a.output_tokens), sum(a.actual_micros)
FROM agents AS a JOIN provider_of AS p ON p.model = a.model
WHERE a.id > ? AND (a.input_tokens > 0 OR a.actual_micros > 0)
GROUP BY a.budget_day, a.model, p.provider, a.key_id
ON CONFLICT (day, model, provider, key_id) DO UPDATE SET
    calls = calls + excluded.calls, input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cost_micros = cost_micros + excluded.cost_micros"""


def seed(db_path: str, n: int, key_id: str, config: dict, taken: set[str],
         rng_seed: int = 42) -> list[str]:
    """Insert N agents and add them to the running totals in one transaction, ANALYZE;
    return the new agent ids. `config` is the service's effective config (time zone,
    each model's provider)."""
    new_ids: list[str] = []

    def rows():
        for row in seed_rows(n, key_id, random.Random(rng_seed), config["timezone"], taken):
            new_ids.append(row[0])
            yield row

    providers = json.dumps({m: spec["provider"] for m, spec in config["models"].items()})
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA cache_size = -262144")  # 256 MB: the indexes fit while seeding
        conn.execute("BEGIN IMMEDIATE")
        last_id = conn.execute("SELECT coalesce(max(id), 0) FROM agents").fetchone()[0]
        conn.executemany(
            "INSERT INTO agents (agent_id, key_id, model, team, status, task, priority, timeout,"
            " created_at, started_at, completed_at, result, error, estimated_micros,"
            " actual_micros, input_tokens, output_tokens, fallback_from, steps, simulated,"
            " budget_day) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows())
        conn.execute(ADD_BUDGET_DAYS, (last_id,))
        conn.execute(ADD_USAGE_DAILY, (providers, last_id))
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return new_ids


# --------------------------------------------------------------------------- clients

class Client(harness.Client):
    """harness.Client with a GET that decodes JSON."""

    def get_json(self, path: str) -> tuple[int, dict]:
        status, data = self.request("GET", path)
        return status, json.loads(data) if data else {}


class Load:
    """Result of a timed run: request count, wall time, sorted latencies, status counts."""

    def __init__(self, count: int, elapsed: float, latencies: list[float],
                 statuses: collections.Counter):
        self.count, self.elapsed, self.statuses = count, elapsed, statuses
        self.latencies = sorted(latencies)

    @property
    def rps(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def pct_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, int(q * len(self.latencies)))] * 1000


def as_request(what) -> tuple[str, str, bytes | None, dict | None]:
    """A path means a GET of it; anything else is (method, path, body, headers)."""
    return ("GET", what, None, None) if isinstance(what, str) else what


def run_load(port: int, headers: dict, next_path, seconds: float,
             threads: int = CLIENT_THREADS) -> Load:
    """`threads` keep-alive clients issuing next_path(rng) back to back for `seconds`
    (a path to GET, or a request tuple: see as_request)."""
    barrier = threading.Barrier(threads + 1)
    results: list[tuple[list[float], collections.Counter]] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        client, rng = Client(port, headers), random.Random(n)
        latencies, statuses = [], collections.Counter()
        try:
            client.request(*as_request(next_path(rng)))  # connect before the clock starts
        except OSError:
            pass
        barrier.wait()
        deadline = time.perf_counter() + seconds
        while True:
            began = time.perf_counter()
            if began >= deadline:
                break
            try:
                status, _ = client.request(*as_request(next_path(rng)))
            except OSError as exc:
                status = type(exc).__name__
            latencies.append(time.perf_counter() - began)
            statuses[status] += 1
        client.close()
        with lock:
            results.append((latencies, statuses))

    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies = [x for lat, _ in results for x in lat]
    statuses = sum((s for _, s in results), collections.Counter())
    return Load(len(latencies), elapsed, latencies, statuses)


def merge(loads: list[Load]) -> Load:
    return Load(sum(x.count for x in loads), sum(x.elapsed for x in loads),
                [v for x in loads for v in x.latencies],
                sum((x.statuses for x in loads), collections.Counter()))


def interleaved(targets: dict, seconds: float, round_seconds: float = 1.0,
                settle=None) -> dict[str, Load]:
    """Each target for `seconds` in all, in alternating rounds, so that background load on
    the machine falls on all of them alike; {name: Load}. Target: (port, headers, next_path).
    settle(name), if given, runs after each round of a target, outside the timed part."""
    rounds = max(1, round(seconds / round_seconds))
    for name, (port, headers, next_path) in targets.items():  # warm-up
        run_load(port, headers, next_path, min(1.0, seconds))
        if settle:
            settle(name)
    runs = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (port, headers, next_path) in targets.items():
            runs[name].append(run_load(port, headers, next_path, seconds / rounds))
            if settle:
                settle(name)
    return {name: merge(loads) for name, loads in runs.items()}


def sequential(client: Client, paths, seconds: float, max_requests: int = 5000) -> list[Load]:
    """One client cycling through `paths` (or request tuples: see as_request) for
    `seconds`; one Load (latencies) per path."""
    latencies = [[] for _ in paths]
    statuses = [collections.Counter() for _ in paths]
    began = time.perf_counter()
    deadline = began + seconds
    n = 0
    while time.perf_counter() < deadline and n < max_requests * len(paths):
        i = n % len(paths)
        t = time.perf_counter()
        status, _ = client.request(*as_request(paths[i]))
        latencies[i].append(time.perf_counter() - t)
        statuses[i][status] += 1
        n += 1
    elapsed = time.perf_counter() - began
    return [Load(len(lat), elapsed, lat, st) for lat, st in zip(latencies, statuses, strict=True)]


# --------------------------------------------------------------------------- measurements

def deep_cursor(db_path: str, depth: int) -> tuple[str, str]:
    """The cursor of `LIST_FIRST` after `depth` rows, and the agent_id the page must start with.

    Built from the row at that depth with the service's own pagination code, which is
    what the service hands out after walking there page by page.
    """
    from j1msky.api.agents import AGENT_FIELDS, SHORTHANDS
    from j1msky.services.pagination import parse_list_args

    query = parse_list_args({"sort": "-created_at", "limit": "100"}, AGENT_FIELDS,
                            shorthands=SHORTHANDS)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, created_at, agent_id FROM agents"
                            " ORDER BY created_at DESC, id DESC LIMIT 2 OFFSET ?",
                            (depth - 1,)).fetchall()
    finally:
        conn.close()
    (last_id, last_created, _), (_, _, expected_first) = rows
    return query.next_cursor(last_created, last_id), expected_first


def walk_cursor(client: Client, depth: int) -> str:
    """Fallback: follow the pages' cursors down to `depth` rows."""
    path, seen = LIST_FIRST, 0
    while True:
        status, body = client.get_json(path)
        if status != 200:
            raise RuntimeError(f"walking pages: {status} {body}")
        seen += len(body["data"])
        page = body["pagination"]
        cursor = page.get("cursor") or page.get("next_cursor")
        if seen >= depth or not cursor:
            return cursor
        path = f"{LIST_FIRST}&cursor={cursor}"


def measure_pages(client: Client, db_path: str, n_agents: int, seconds: float) -> dict:
    depth = max(100, int(n_agents * 0.9) // 100 * 100)
    how = "constructed from SQLite"
    try:
        cursor, expected = deep_cursor(db_path, depth)
        status, body = client.get_json(f"{LIST_FIRST}&cursor={cursor}")
        if status != 200 or not body.get("data") or body["data"][0]["agent_id"] != expected:
            raise RuntimeError(f"constructed cursor not accepted: {status} {str(body)[:200]}")
    except Exception as exc:  # noqa: BLE001 - the service's API moved: walk instead
        print(f"  (cursor: {exc}; walking {depth // 100} pages instead)", flush=True)
        how = "walked page by page"
        cursor = walk_cursor(client, depth)
    deep = f"{LIST_FIRST}&cursor={cursor}"
    sequential(client, [LIST_FIRST, deep], 0.5)  # warm-up
    first, deep_load = sequential(client, [LIST_FIRST, deep], 2 * seconds)
    return {"depth": depth, "cursor_source": how, "first": first, "deep": deep_load}


def measure_spawn(port: int, headers: dict, count: int, timeout: float = 150) -> dict:
    """Spawn `count` agents from the client threads; time until none is in flight."""
    models = ("k2p5", "sonnet", "opus")
    statuses = collections.Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    since = iso(dt.datetime.now(UTC) - dt.timedelta(seconds=1))
    done_spawning = threading.Event()

    def spawner(n: int, how_many: int) -> None:
        client = Client(port, {**headers, "Content-Type": "application/json"})
        mine, lat = collections.Counter(), []
        for i in range(how_many):
            body = json.dumps({"model": models[(n + i) % 3],
                               "task": f"Bench task {n}-{i}: write a haiku about SQLite"})
            t = time.perf_counter()
            try:
                status, _ = client.request("POST", "/api/spawn", body.encode(),
                                           {"Idempotency-Key": str(uuid.uuid4())})
            except OSError as exc:
                status = type(exc).__name__
            lat.append(time.perf_counter() - t)
            mine[status] += 1
        client.close()
        with lock:
            statuses.update(mine)
            latencies.extend(lat)

    shares = [count // CLIENT_THREADS + (n < count % CLIENT_THREADS) for n in range(CLIENT_THREADS)]
    pool = [threading.Thread(target=spawner, args=(n, k), daemon=True)
            for n, k in enumerate(shares)]
    began = time.perf_counter()
    for thread in pool:
        thread.start()
    poller = Client(port, headers)
    spawn_elapsed = None
    in_flight, polls = None, collections.Counter()
    while time.perf_counter() - began < timeout:
        if spawn_elapsed is None and not any(t.is_alive() for t in pool):
            spawn_elapsed = time.perf_counter() - began
            done_spawning.set()
        status, body = poller.get_json(IN_FLIGHT)
        polls[status] += 1
        in_flight = body.get("pagination", {}).get("total") if status == 200 else None
        if done_spawning.is_set() and in_flight == 0:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - began
    for thread in pool:
        thread.join()
    outcome = {}
    for name in ("completed", "failed", "cancelled"):
        path = "/api/agents?" + urllib.parse.urlencode(
            {"filter": json.dumps({"status": name, "created_at": {"gte": since}}), "limit": "1"})
        status, body = poller.get_json(path)
        outcome[name] = body["pagination"]["total"] if status == 200 else None
    poller.close()
    return {"requested": count, "statuses": statuses, "poll_statuses": polls,
            "spawn_seconds": spawn_elapsed, "seconds": elapsed, "still_in_flight": in_flight,
            "timed_out": in_flight != 0, "outcome": outcome,
            "spawn_latency": Load(len(latencies), spawn_elapsed or elapsed, latencies,
                                  statuses)}


def spawn_request(path: str):
    """next_path for run_load: POST `path` with a small spawn body and a fresh
    Idempotency-Key (sent to the bare app too, so the clients do the same work)."""
    def next_request(rng):
        body = json.dumps({"model": rng.choice(("k2p5", "sonnet", "opus")),
                           "task": f"Bench task {rng.randrange(10**9)}: write a haiku about SQLite"})
        return ("POST", path, body.encode(), {"Content-Type": "application/json",
                                              "Idempotency-Key": str(uuid.uuid4())})
    return next_request


def wait_idle(client: Client, timeout: float = 120) -> float:
    """Poll until no agent is waiting or running; return the seconds waited."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        status, body = client.get_json(IN_FLIGHT)
        if status == 200 and body["pagination"]["total"] == 0:
            break
        time.sleep(0.05)
    return time.perf_counter() - began


def measure_spawn_rate(port: int, headers: dict, bare_port: int, seconds: float) -> dict:
    """POST /api/spawn (unique Idempotency-Key each) against the bare app's POST /spawn, in
    alternating rounds. After each spawn round the runner is left to finish the agents it
    was given (untimed), so that their work does not fall on the next bare round."""
    poller = Client(port, headers)
    drained = []

    def settle(name: str) -> None:
        if name == "spawn":
            drained.append(wait_idle(poller))

    loads = interleaved({"bare": (bare_port, {}, spawn_request("/spawn")),
                         "spawn": (port, headers, spawn_request("/api/spawn"))},
                        seconds, settle=settle)
    poller.close()
    return {**loads, "drain_seconds": sum(drained)}


STATUS = "/api/orchestrator/status"
RECOMMEND = ("POST", "/api/orchestrator/recommend-model",
             json.dumps({"task_type": "coding", "complexity": "medium", "priority": "normal",
                         "estimated_tokens": 2500}).encode(),
             {"Content-Type": "application/json"})


def check_totals(client: Client, db_path: str, config: dict) -> dict:
    """What /orchestrator/status says about today, beside the same sums over the agents."""
    status, body = client.get_json(STATUS)
    if status != 200:
        raise RuntimeError(f"GET {STATUS} answered {status}: {str(body)[:300]}")
    today = dt.datetime.now(zoneinfo.ZoneInfo(config["timezone"])).date().isoformat()
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        agents, spent, in_flight = conn.execute(
            "SELECT count(*), coalesce(sum(actual_micros), 0),"
            " coalesce(sum(status IN ('spawning', 'running')), 0)"
            " FROM agents WHERE budget_day = ?", (today,)).fetchone()
        total = conn.execute("SELECT count(*) FROM agents").fetchone()[0]
    finally:
        conn.close()
    return {"stored_agents": total, "today": today, "today_agents": agents,
            "today_spend": body["today_spend"], "agents_spend": round(spent / 1e6, 6),
            "today_reserved": body["today_reserved"], "in_flight": in_flight,
            "calls": body["usage_summary"]["total_calls"],
            "projected": body["monthly_forecast"]["projected_spend"],
            "level": body["budget_alert_level"]}


# --------------------------------------------------------------------------- report

def verdict(ok: bool) -> str:
    return "target met" if ok else "target MISSED"


def non_2xx(statuses: collections.Counter) -> dict:
    return {str(k): v for k, v in statuses.items() if not (isinstance(k, int) and k < 300)}


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the J1MSKY HTTP API (see the docstring).")
    parser.add_argument("--agents", type=int, default=100_000, help="agents seeded (default 100000)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="seconds per throughput measurement (default 5)")
    parser.add_argument("--spawn", type=int, default=2000, help="agents spawned (default 2000)")
    parser.add_argument("--status-agents", type=int, default=1_000_000,
                        help="agents stored for the /orchestrator measurements: the database"
                             " is grown to this many, then served again (default 1000000)")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    parser.add_argument("--keep", action="store_true", help="keep the instance folder (logs)")
    args = parser.parse_args()
    if args.agents < 200:
        parser.error("--agents must be at least 200")

    instance = tempfile.mkdtemp(prefix="j1msky-bench-")
    servers: list[Server] = []
    summary: dict = {"agents": args.agents, "status_agents": args.status_agents,
                     "seconds": args.seconds,
                     "client_threads": CLIENT_THREADS, "server_threads": SERVER_THREADS}
    print(f"J1MSKY bench_api  agents={args.agents}  status agents={args.status_agents}  "
          f"seconds={args.seconds:g}  "
          f"client threads={CLIENT_THREADS}  server threads={SERVER_THREADS}  "
          f"cpus={os.cpu_count()}", flush=True)
    try:
        t = time.perf_counter()
        # The tests' config, limits high enough not to refuse the benchmark.
        env, key = setup_instance(instance, harness.config(), "bench",
                                  ("agents:read", "agents:write"))
        setup_s = time.perf_counter() - t
        db_path = os.path.join(instance, "j1msky.sqlite3")
        from j1msky.config import load_file
        config = load_file(os.path.join(instance, "config.json"))  # with the defaults
        taken: set[str] = set()
        t = time.perf_counter()
        ids = seed(db_path, args.agents, key["key_id"], config, taken)
        seed_s = time.perf_counter() - t
        db_mb = os.path.getsize(db_path) / 2**20

        port, bare_port = free_port(), free_port()
        serve = Server("j1msky serve", [*j1msky_command(), "serve", "--host", "127.0.0.1",
                                        "--port", str(port), "--threads", str(SERVER_THREADS)],
                       env, os.path.join(instance, "serve.log"), port)
        servers.append(serve)
        auth = {"Authorization": f"Bearer {key['key']}"}
        ready_s = serve.start("/api/health", auth)
        bare = Server("bare app", [sys.executable, os.path.join(HERE, "bare_app.py"),
                                   "--host", "127.0.0.1", "--port", str(bare_port),
                                   "--threads", str(SERVER_THREADS)],
                      env, os.path.join(instance, "bare.log"), bare_port)
        servers.append(bare)
        bare.start("/agent")
        time.sleep(1.0)
        rss_idle, bare_rss_idle = serve.worker_rss_mb(), bare.worker_rss_mb()
        print(f"setup       init+key {setup_s:.1f}s, seeded {args.agents} agents in {seed_s:.1f}s"
              f" (db {db_mb:.0f} MB), serve ready in {ready_s:.1f}s", flush=True)

        probe = Client(port, auth)
        status, body = probe.request("GET", f"/api/agent/{ids[0]}")
        if status != 200:
            raise RuntimeError(f"GET /api/agent/{ids[0]} answered {status}: {body[:300]!r}")
        agent_bytes = len(body)
        status, body = Client(bare_port).request("GET", "/agent")
        bare_bytes = len(body)

        def agent_path(rng):
            return f"/api/agent/{rng.choice(ids)}"

        def bare_path(rng):
            return "/agent"

        def list_path(rng):
            return LIST_FILTERED

        loads = interleaved(
            {"bare": (bare_port, {}, bare_path), "agent": (port, auth, agent_path),
             "list": (port, auth, list_path)}, args.seconds)
        bare_rps = loads["bare"].rps
        ratio = loads["agent"].rps / bare_rps
        print(f"GET /api/agent/{{id}}      {loads['agent'].rps:7.0f} req/s   bare "
              f"{bare_rps:7.0f} req/s   ratio {ratio:.2f}  (target >= {TARGET_AGENT_RATIO})  "
              f"{verdict(ratio >= TARGET_AGENT_RATIO)}", flush=True)
        print(f"   latency under load      p50 {loads['agent'].pct_ms(.5):.1f} ms  p99 "
              f"{loads['agent'].pct_ms(.99):.1f} ms   bare p50 {loads['bare'].pct_ms(.5):.1f} ms"
              f"  p99 {loads['bare'].pct_ms(.99):.1f} ms   body {agent_bytes} B vs bare "
              f"{bare_bytes} B", flush=True)

        list_seq = sequential(probe, [LIST_FILTERED], args.seconds)[0]
        p50 = list_seq.pct_ms(.5)
        list_ratio = loads["list"].rps / bare_rps
        print(f"GET /api/agents filtered  p50 {p50:.1f} ms  p99 {list_seq.pct_ms(.99):.1f} ms"
              f"  ({list_seq.count} sequential)  (target p50 <= {TARGET_LIST_P50_MS:g} ms)  "
              f"{verdict(p50 <= TARGET_LIST_P50_MS)}", flush=True)
        print(f"   status=completed,model=opus,sort=-created_at,limit=20   "
              f"{loads['list'].rps:.0f} req/s   ratio to bare {list_ratio:.2f}", flush=True)

        pages = measure_pages(probe, db_path, args.agents, args.seconds)
        first, deep = pages["first"], pages["deep"]
        page_ratio = deep.pct_ms(.5) / first.pct_ms(.5)
        print(f"GET /api/agents?sort=-created_at&limit=100   first page p50 "
              f"{first.pct_ms(.5):.1f} ms  p99 {first.pct_ms(.99):.1f} ms", flush=True)
        print(f"   cursor page at depth {pages['depth']} ({pages['cursor_source']})   p50 "
              f"{deep.pct_ms(.5):.1f} ms  p99 {deep.pct_ms(.99):.1f} ms   ratio deep/first "
              f"{page_ratio:.2f}  (target <= {TARGET_DEEP_RATIO})  "
              f"{verdict(page_ratio <= TARGET_DEEP_RATIO)}", flush=True)
        probe.close()

        spawn = measure_spawn(port, auth, args.spawn)
        done = spawn["outcome"].get("completed") or 0
        agents_s = done / spawn["seconds"] if spawn["seconds"] else 0.0
        accepted = spawn["statuses"].get(202, 0)
        spawn_rps = accepted / spawn["spawn_seconds"] if spawn["spawn_seconds"] else 0.0
        print(f"POST /api/spawn x{args.spawn}   {accepted} accepted (202), {spawn_rps:.0f} spawn"
              f"/s, spawn p50 {spawn['spawn_latency'].pct_ms(.5):.1f} ms  p99 "
              f"{spawn['spawn_latency'].pct_ms(.99):.1f} ms", flush=True)
        tail = " (TIMED OUT with %s in flight)" % spawn["still_in_flight"] \
            if spawn["timed_out"] else ""
        print(f"   agents completed        {agents_s:.0f} agents/s  ({done} completed, "
              f"{spawn['outcome'].get('failed')} failed in {spawn['seconds']:.1f}s from first "
              f"spawn){tail}", flush=True)

        rate = measure_spawn_rate(port, auth, bare_port, args.seconds)
        spawn_load, bare_post = rate["spawn"], rate["bare"]
        accepted_rps = spawn_load.statuses.get(202, 0) / spawn_load.elapsed
        spawn_ratio = accepted_rps / bare_post.rps
        print(f"POST /api/spawn throughput {accepted_rps:6.0f} accepted/s   bare POST "
              f"{bare_post.rps:7.0f} req/s   ratio {spawn_ratio:.2f}   ({spawn_load.count} "
              f"requests, {spawn_load.statuses.get(202, 0)} accepted)", flush=True)
        print(f"   latency under load      p50 {spawn_load.pct_ms(.5):.1f} ms  p99 "
              f"{spawn_load.pct_ms(.99):.1f} ms   bare p50 {bare_post.pct_ms(.5):.1f} ms  p99 "
              f"{bare_post.pct_ms(.99):.1f} ms   (runner drained {rate['drain_seconds']:.1f}s "
              f"between rounds, untimed)", flush=True)

        time.sleep(0.5)
        rss_after, bare_rss_after = serve.worker_rss_mb(), bare.worker_rss_mb()
        worst = max(x for x in (rss_idle, rss_after) if x is not None) if rss_after else None
        print(f"RSS serve worker          idle {rss_idle or 0:.1f} MB   after run "
              f"{rss_after or 0:.1f} MB  (target <= {TARGET_RSS_MB:g} MB)  "
              f"{verdict(worst is not None and worst <= TARGET_RSS_MB)}   bare worker "
              f"{bare_rss_idle or 0:.1f} / {bare_rss_after or 0:.1f} MB", flush=True)

        # /orchestrator at --status-agents: grow the database with the service stopped.
        stored = check_totals(probe, db_path, config)["stored_agents"]
        probe.close()
        grow_s = restart_s = 0.0
        if args.status_agents > stored:
            serve.stop()
            t = time.perf_counter()
            seed(db_path, args.status_agents - stored, key["key_id"], config, taken,
                 rng_seed=43)
            grow_s = time.perf_counter() - t
            restart_s = serve.start("/api/health", auth)
        big = Client(port, auth)
        sequential(big, [STATUS, RECOMMEND], 0.5)  # warm-up
        status_seq, recommend_seq = sequential(big, [STATUS, RECOMMEND], 2 * args.seconds)
        _, choice = big.request(*RECOMMEND)
        choice = json.loads(choice)
        totals = check_totals(big, db_path, config)
        big.close()
        status_p50 = status_seq.pct_ms(.5)
        print(f"setup       grew to {totals['stored_agents']} agents in {grow_s:.1f}s (db "
              f"{os.path.getsize(db_path) / 2**20:.0f} MB), serve ready again in "
              f"{restart_s:.1f}s", flush=True)
        print(f"GET /api/orchestrator/status  p50 {status_p50:.1f} ms  p99 "
              f"{status_seq.pct_ms(.99):.1f} ms  ({status_seq.count} sequential, "
              f"{totals['stored_agents']} agents)  (target p50 <= {TARGET_STATUS_P50_MS:g} ms)  "
              f"{verdict(status_p50 <= TARGET_STATUS_P50_MS)}", flush=True)
        print(f"POST /api/orchestrator/recommend-model  p50 {recommend_seq.pct_ms(.5):.1f} ms  "
              f"p99 {recommend_seq.pct_ms(.99):.1f} ms  ({recommend_seq.count} sequential)   "
              f"coding/medium/normal/2500 -> {choice.get('recommended_model')} "
              f"${choice.get('estimated_cost')}", flush=True)
        print(f"   status {totals['today']}: today_spend ${totals['today_spend']:.2f} "
              f"(agents of the day sum to ${totals['agents_spend']:.2f}, "
              f"{totals['today_agents']} agents), reserved ${totals['today_reserved']:.2f}, "
              f"{totals['calls']} calls, month projected ${totals['projected']:.0f}, "
              f"level {totals['level']}", flush=True)

        errors = {name: non_2xx(load.statuses) for name, load in loads.items()}
        errors["list sequential"] = non_2xx(list_seq.statuses)
        errors["first page"] = non_2xx(first.statuses)
        errors["deep page"] = non_2xx(deep.statuses)
        errors["spawn"] = non_2xx(spawn["statuses"])
        errors["spawn polling"] = non_2xx(spawn["poll_statuses"])
        errors["spawn throughput"] = non_2xx(spawn_load.statuses)
        errors["bare POST"] = non_2xx(bare_post.statuses)
        errors["status"] = non_2xx(status_seq.statuses)
        errors["recommend-model"] = non_2xx(recommend_seq.statuses)
        errors = {k: v for k, v in errors.items() if v}
        problems = harness.log_problems(serve.log_path)
        print(f"errors                    non-2xx responses: {errors or 'none'};  serve log: "
              f"{problems or 'no tracebacks, no 4xx/5xx'}", flush=True)

        summary.update({
            "seed_seconds": round(seed_s, 2), "db_mb": round(db_mb, 1),
            "get_agent": {"rps": round(loads["agent"].rps, 1), "bare_rps": round(bare_rps, 1),
                          "ratio": round(ratio, 3), "target": TARGET_AGENT_RATIO,
                          "met": ratio >= TARGET_AGENT_RATIO},
            "list_filtered": {"p50_ms": round(p50, 2), "p99_ms": round(list_seq.pct_ms(.99), 2),
                              "rps": round(loads["list"].rps, 1),
                              "ratio_to_bare": round(list_ratio, 3),
                              "target_p50_ms": TARGET_LIST_P50_MS,
                              "met": p50 <= TARGET_LIST_P50_MS},
            "pagination": {"depth": pages["depth"], "cursor_source": pages["cursor_source"],
                           "first_p50_ms": round(first.pct_ms(.5), 2),
                           "first_p99_ms": round(first.pct_ms(.99), 2),
                           "deep_p50_ms": round(deep.pct_ms(.5), 2),
                           "deep_p99_ms": round(deep.pct_ms(.99), 2),
                           "ratio": round(page_ratio, 3), "target": TARGET_DEEP_RATIO,
                           "met": page_ratio <= TARGET_DEEP_RATIO},
            "spawn": {"requested": args.spawn, "accepted": accepted,
                      "spawn_per_s": round(spawn_rps, 1), "completed": done,
                      "failed": spawn["outcome"].get("failed"),
                      "seconds": round(spawn["seconds"], 2), "agents_per_s": round(agents_s, 1),
                      "timed_out": spawn["timed_out"]},
            "spawn_throughput": {"accepted_per_s": round(accepted_rps, 1),
                                 "bare_post_rps": round(bare_post.rps, 1),
                                 "ratio": round(spawn_ratio, 3), "requests": spawn_load.count,
                                 "accepted": spawn_load.statuses.get(202, 0),
                                 "p50_ms": round(spawn_load.pct_ms(.5), 2),
                                 "p99_ms": round(spawn_load.pct_ms(.99), 2)},
            "orchestrator": {"stored_agents": totals["stored_agents"],
                             "grow_seconds": round(grow_s, 1),
                             "status_p50_ms": round(status_p50, 2),
                             "status_p99_ms": round(status_seq.pct_ms(.99), 2),
                             "target_status_p50_ms": TARGET_STATUS_P50_MS,
                             "met": status_p50 <= TARGET_STATUS_P50_MS,
                             "recommend_p50_ms": round(recommend_seq.pct_ms(.5), 2),
                             "recommend_p99_ms": round(recommend_seq.pct_ms(.99), 2),
                             "recommended_model": choice.get("recommended_model"),
                             "totals": totals},
            "rss_mb": {"idle": rss_idle and round(rss_idle, 1),
                       "after": rss_after and round(rss_after, 1), "target": TARGET_RSS_MB,
                       "met": worst is not None and worst <= TARGET_RSS_MB,
                       "bare_idle": bare_rss_idle and round(bare_rss_idle, 1),
                       "bare_after": bare_rss_after and round(bare_rss_after, 1)},
            "errors": errors, "serve_log": problems,
        })
        if args.json:
            print(json.dumps(summary, indent=2))
        return 0
    finally:
        harness.clean_up([(s.name, s) for s in reversed(servers)], instance, args.keep)


if __name__ == "__main__":
    sys.exit(main())

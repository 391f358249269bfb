"""Benchmark of the J1MSKY read path against a bare Flask app, on 127.0.0.1.

What it does, in one run (about two minutes at the defaults on 2 cores, a third of it
growing the database to a million agents):

1. Makes a temporary instance folder (J1MSKY_INSTANCE) with a config.json like the
   tests' (simulated providers with no delay, limits raised so that the benchmark is not
   refused; everything else, the access log included, at its default), runs ``j1msky
   init`` and ``j1msky keys create`` (the installed console script), and seeds N finished
   agents straight into SQLite (one transaction, then ANALYZE), with their running
   totals: the agents' budget_day, and budget_days, usage_daily and agent_totals summed
   from them by SQL (agent_totals' triggers are dropped for the insert and put back).
2. Starts ``j1msky serve --threads 8`` and the bare app of scripts/bare_app.py under
   the same gunicorn settings (1 worker of serve's worker class, 8 threads, serve's
   keep-alive, no access log); both servers' output goes to files in the instance folder.
3. Measures with wrk (``-t2 -c16``, keep-alive; the targets in alternating rounds, so
   that background load on the machine falls on all of them alike) the req/s of
   - the bare app's ``GET /agent`` (an agent-shaped dict: the baseline);
   - ``GET /api/agent/{id}`` with a valid key (seeded ids, in random order);
   - the 401 path: the same requests without a key;
   - ``GET /api/agents?filter={"status":"completed","model":"opus"}&sort=-created_at&limit=20``.
4. Measures with one sequential keep-alive client (http.client) the p50/p99 latency of
   filtered lists and of the first page and a page ~90% deep (by cursor) of
   ``GET /api/agents?sort=-created_at&limit=100``, at N agents.
5. Stops the service, grows the database to --big-agents agents (same seeding and
   totals), starts it again and measures (sequential client) the p50/p99 of the first
   unfiltered page of ``GET /api/agents`` (the default page of 20, and a page of 100),
   checks its meta and pagination.total against sums over the agents table, and
   measures ``GET /api/orchestrator/status`` and ``POST /api/orchestrator/recommend-model``
   (coding, medium, normal, 2500 tokens), checking status's today_spend against the sum
   over today's agents.
6. Reads the serve worker's RSS, idle after start and after the whole run.
7. Stops both servers (SIGTERM, then SIGKILL) and removes the folder, even on error.

Each target is printed on its own line, ending in "met" or "MISSED" (ratios against the
bare app measured in the same run); it asserts nothing. Spawn latency and throughput are
scripts/bench_spawn.py's.

    /path/to/venv/bin/python scripts/bench_api.py [--agents 100000] [--seconds 5]
        [--big-agents 1000000] [--json] [--keep]
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zoneinfo

import harness
from harness import Server, free_port, j1msky_command, setup_instance

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_THREADS = 8
WRK_THREADS, WRK_CONNECTIONS = 2, 16
ROUND_SECONDS = 1
UTC = dt.timezone.utc

TARGET_AGENT_RATIO = 0.5     # GET /agent/{id} req/s over the bare app's
TARGET_401_RATIO = 0.7       # the 401 path's req/s over the bare app's
TARGET_LIST_P50_MS = 10.0    # filtered list p50 at --agents
TARGET_DEEP_RATIO = 1.5      # deep page p50 over first page p50
TARGET_FIRST_P50_MS = 15.0   # first unfiltered page p50 at --big-agents
TARGET_STATUS_P50_MS = 10.0  # GET /orchestrator/status p50 at --big-agents
TARGET_RSS_MB = 80.0         # serve worker RSS after the whole run


def list_path(where: dict, limit: int = 20) -> str:
    return "/api/agents?" + urllib.parse.urlencode(
        {"filter": json.dumps(where), "sort": "-created_at", "limit": str(limit)})


def list_filters() -> dict[str, dict]:
    """The filtered lists measured: the running totals answer the first two, the list's
    indexes the others (the seeded agents span 60 days; a third of them are sonnet)."""
    week_ago = (dt.datetime.now(UTC) - dt.timedelta(days=7)).strftime("%Y-%m-%d")
    return {"status+model": {"status": "completed", "model": "opus"},
            "status": {"status": "failed"},
            "model, all time": {"model": "sonnet", "created_at": {"gte": "2000-01-01"}},
            "team": {"team": "team_coding"},
            "last week, cost": {"created_at": {"gte": week_ago}, "cost": {"gt": 0.01}}}


LIST_FILTERED = list_path({"status": "completed", "model": "opus"})
LIST_FIRST = "/api/agents?sort=-created_at&limit=100"
LIST_DEFAULT = "/api/agents"


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


# agent_totals (the list's running totals, kept by triggers on agents) summed by SQL for
# the rows with id > ?, like the totals above: a trigger per inserted row would make
# seeding a million agents a third slower.
ADD_AGENT_TOTALS = """
INSERT INTO agent_totals (status, model, agents, actual_micros)
SELECT status, model, count(*), sum(actual_micros) FROM agents WHERE id > ? GROUP BY 1, 2
ON CONFLICT (status, model) DO UPDATE SET agents = agents + excluded.agents,
    actual_micros = actual_micros + excluded.actual_micros"""


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
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                                " AND tbl_name = 'agents'").fetchall()
        for name, _ in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        last_id = conn.execute("SELECT coalesce(max(id), 0) FROM agents").fetchone()[0]
        conn.executemany(
            "INSERT INTO agents (agent_id, key_id, model, team, status, task, priority, timeout,"
            " created_at, started_at, completed_at, result, error, estimated_micros,"
            " actual_micros, input_tokens, output_tokens, fallback_from, steps, simulated,"
            " budget_day) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows())
        conn.execute(ADD_BUDGET_DAYS, (last_id,))
        conn.execute(ADD_USAGE_DAILY, (providers, last_id))
        conn.execute(ADD_AGENT_TOTALS, (last_id,))
        for _, sql in triggers:
            conn.execute(sql)
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


WRK_SCRIPT = """-- GET the paths of %(file)s in turn (each wrk thread from the first)
local paths = {}
for line in io.lines("%(file)s") do paths[#paths + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, paths[n %% #paths + 1])
end
"""
UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


class WrkRun:
    """Figures of wrk runs of one target: requests, seconds, non-2xx/3xx answers, socket
    errors, and the rounds' latency percentiles (ms)."""

    def __init__(self):
        self.requests, self.seconds, self.non_2xx, self.socket_errors = 0, 0.0, 0, 0
        self.p50s: list[float] = []
        self.p99s: list[float] = []

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def add(self, output: str) -> None:
        count, elapsed, unit = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output).groups()
        self.requests += int(count)
        self.seconds += float(elapsed) * UNIT_SECONDS[unit]
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        self.non_2xx += int(non_2xx.group(1)) if non_2xx else 0
        errors = re.search(r"Socket errors: (.*)", output)
        self.socket_errors += sum(map(int, re.findall(r"\d+", errors.group(1)))) if errors else 0
        for percent, into in (("50", self.p50s), ("99", self.p99s)):
            value, unit = re.search(rf"{percent}%\s+([\d.]+)(us|ms|s)", output).groups()
            into.append(float(value) * UNIT_SECONDS[unit] * 1000)

    def latency(self) -> str:
        return (f"p50 {sorted(self.p50s)[len(self.p50s) // 2]:.1f} ms  "
                f"p99 {max(self.p99s):.1f} ms")


def wrk_command() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("bench_api.py needs wrk: apt-get install wrk")
    return found


def run_wrk(url: str, seconds: int, script: str | None = None,
            headers: dict | None = None) -> str:
    command = [wrk_command(), f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s",
               "--latency", *(["-s", script] if script else [])]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    result = subprocess.run([*command, url], capture_output=True, text=True,
                            timeout=seconds + 30)
    if result.returncode != 0 or "requests in" not in result.stdout:
        raise RuntimeError(f"wrk failed: {result.stdout}{result.stderr}")
    return result.stdout


def wrk_rounds(targets: dict[str, tuple], seconds: float) -> dict[str, WrkRun]:
    """Each target (url, script, headers) for `seconds` in all, in alternating rounds of
    ROUND_SECONDS after a warm-up round each; {name: WrkRun}."""
    for url, script, headers in targets.values():
        run_wrk(url, ROUND_SECONDS, script, headers)
    runs = {name: WrkRun() for name in targets}
    for _ in range(max(1, round(seconds / ROUND_SECONDS))):
        for name, (url, script, headers) in targets.items():
            runs[name].add(run_wrk(url, ROUND_SECONDS, script, headers))
    return runs


def write_paths_script(folder: str, name: str, paths: list[str]) -> str:
    """A wrk script GETting `paths` in turn; returns its file name."""
    paths_file = os.path.join(folder, f"{name}.txt")
    with open(paths_file, "w", encoding="utf-8") as fh:
        fh.write("\n".join(paths) + "\n")
    script = os.path.join(folder, f"{name}.lua")
    with open(script, "w", encoding="utf-8") as fh:
        fh.write(WRK_SCRIPT % {"file": paths_file})
    return script


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


def check_meta(client: Client, db_path: str) -> tuple[dict, dict]:
    """The first page's pagination.total and meta, beside the same sums over the agents."""
    status, body = client.get_json(LIST_DEFAULT)
    if status != 200:
        raise RuntimeError(f"GET {LIST_DEFAULT} answered {status}: {str(body)[:300]}")
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        by_model = conn.execute("SELECT model, count(*), sum(actual_micros) FROM agents"
                                " GROUP BY model ORDER BY model").fetchall()
    finally:
        conn.close()
    expected = {"total": sum(r[1] for r in by_model), "by_model": {r[0]: r[1] for r in by_model},
                "total_cost": round(sum(r[2] for r in by_model) / 1e6, 6)}
    served = {"total": body["pagination"]["total"], "by_model": body["meta"]["by_model"],
              "total_cost": body["meta"]["total_cost"]}
    return served, expected


# --------------------------------------------------------------------------- report

def target(label: str, figure: str, goal: str, ok: bool) -> None:
    """One target's line: what, the figure, the goal, then met or MISSED."""
    print(f"TARGET  {label:<46} {figure:<36} ({goal})  {'met' if ok else 'MISSED'}", flush=True)


def info(label: str, text: str) -> None:
    print(f"        {label:<46} {text}", flush=True)


def non_2xx(statuses: collections.Counter) -> dict:
    return {str(k): v for k, v in statuses.items() if not (isinstance(k, int) and k < 300)}


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the J1MSKY read path (see the docstring).")
    parser.add_argument("--agents", type=int, default=100_000, help="agents seeded (default 100000)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="seconds per throughput target, in rounds of 1 s (default 5)")
    parser.add_argument("--big-agents", type=int, default=1_000_000,
                        help="agents stored for the first-page and /orchestrator measurements:"
                             " the database is grown to this many, then served again"
                             " (default 1000000)")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    parser.add_argument("--keep", action="store_true", help="keep the instance folder (logs)")
    args = parser.parse_args()
    if args.agents < 200:
        parser.error("--agents must be at least 200")
    wrk_command()

    instance = tempfile.mkdtemp(prefix="j1msky-bench-")
    servers: list[Server] = []
    summary: dict = {"agents": args.agents, "big_agents": args.big_agents,
                     "seconds": args.seconds, "server_threads": SERVER_THREADS,
                     "wrk": f"-t{WRK_THREADS} -c{WRK_CONNECTIONS}"}
    print(f"J1MSKY bench_api  agents={args.agents}  big agents={args.big_agents}  "
          f"seconds={args.seconds:g}  wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS}  "
          f"server threads={SERVER_THREADS}  cpus={os.cpu_count()}", flush=True)
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
        print(f"setup   init+key {setup_s:.1f}s, seeded {args.agents} agents in {seed_s:.1f}s"
              f" (db {db_mb:.0f} MB), serve ready in {ready_s:.1f}s", flush=True)

        probe = Client(port, auth)
        status, body = probe.request("GET", f"/api/agent/{ids[0]}")
        if status != 200:
            raise RuntimeError(f"GET /api/agent/{ids[0]} answered {status}: {body[:300]!r}")
        agent_bytes = len(body)
        status, body = Client(port).request("GET", f"/api/agent/{ids[0]}")
        if status != 401:
            raise RuntimeError(f"GET /api/agent/{ids[0]} without a key answered {status}")
        bare_bytes = len(Client(bare_port).request("GET", "/agent")[1])

        # Reads: wrk, alternating rounds.
        script = write_paths_script(instance, "agents", [
            f"/api/agent/{agent_id}" for agent_id in random.Random(7).sample(ids, min(len(ids), 5000))])
        service = f"http://127.0.0.1:{port}"
        runs = wrk_rounds({"bare": (f"http://127.0.0.1:{bare_port}/agent", None, None),
                           "agent": (service, script, auth),
                           "401": (service, script, None),
                           "list": (service + LIST_FILTERED, None, auth)}, args.seconds)
        bare_rps = runs["bare"].rps
        ratio, ratio_401 = runs["agent"].rps / bare_rps, runs["401"].rps / bare_rps
        info("bare app GET /agent (the baseline)",
             f"{bare_rps:6.0f} req/s   {runs['bare'].latency()}   body {bare_bytes} B")
        target("GET /api/agent/{id} vs bare",
               f"{runs['agent'].rps:6.0f} req/s = {ratio:.2f}x", f">= {TARGET_AGENT_RATIO}x",
               ratio >= TARGET_AGENT_RATIO)
        info("", f"{runs['agent'].latency()}   body {agent_bytes} B")
        target("401 path: GET /api/agent/{id}, no key, vs bare",
               f"{runs['401'].rps:6.0f} req/s = {ratio_401:.2f}x", f">= {TARGET_401_RATIO}x",
               ratio_401 >= TARGET_401_RATIO)
        info("", runs["401"].latency())
        info("filtered list (status+model) vs bare",
             f"{runs['list'].rps:6.0f} req/s = {runs['list'].rps / bare_rps:.2f}x   "
             f"{runs['list'].latency()}")

        # Lists at --agents: one sequential client.
        filtered = {name: list_path(where) for name, where in list_filters().items()}
        sequential(probe, list(filtered.values()), 0.5)  # warm-up
        list_loads = dict(zip(filtered, sequential(probe, list(filtered.values()), args.seconds),
                              strict=True))
        for name, load in list_loads.items():
            p50 = load.pct_ms(.5)
            target(f"filtered list ({name}) @{args.agents}",
                   f"p50 {p50:.1f} ms  p99 {load.pct_ms(.99):.1f} ms",
                   f"p50 <= {TARGET_LIST_P50_MS:g} ms", p50 <= TARGET_LIST_P50_MS)
        pages = measure_pages(probe, db_path, args.agents, args.seconds)
        first, deep = pages["first"], pages["deep"]
        page_ratio = deep.pct_ms(.5) / first.pct_ms(.5)
        target(f"cursor page {pages['depth']} deep vs first (limit 100)",
               f"p50 {deep.pct_ms(.5):.1f} vs {first.pct_ms(.5):.1f} ms = {page_ratio:.2f}x",
               f"<= {TARGET_DEEP_RATIO}x", page_ratio <= TARGET_DEEP_RATIO)
        info("", f"deep cursor {pages['cursor_source']}; p99 deep {deep.pct_ms(.99):.1f} ms,"
                 f" first {first.pct_ms(.99):.1f} ms")
        probe.close()

        # First page, meta and /orchestrator at --big-agents: grow with the service stopped.
        stored = len(taken)
        grow_s = restart_s = 0.0
        if args.big_agents > stored:
            serve.stop()
            t = time.perf_counter()
            seed(db_path, args.big_agents - stored, key["key_id"], config, taken, rng_seed=43)
            grow_s = time.perf_counter() - t
            restart_s = serve.start("/api/health", auth)
        big = Client(port, auth)
        print(f"setup   grew to {len(taken)} agents in {grow_s:.1f}s (db "
              f"{os.path.getsize(db_path) / 2**20:.0f} MB), serve ready again in "
              f"{restart_s:.1f}s", flush=True)
        big_paths = [LIST_DEFAULT, LIST_FIRST, LIST_FILTERED, STATUS, RECOMMEND]
        sequential(big, big_paths, 0.5)  # warm-up
        default_page, first_100, filtered_big, status_seq, recommend_seq = \
            sequential(big, big_paths, 2 * args.seconds)
        for label, load in ((f"first page GET /api/agents @{len(taken)}", default_page),
                            (f"first page, limit=100 @{len(taken)}", first_100)):
            p50 = load.pct_ms(.5)
            target(label, f"p50 {p50:.1f} ms  p99 {load.pct_ms(.99):.1f} ms",
                   f"p50 <= {TARGET_FIRST_P50_MS:g} ms", p50 <= TARGET_FIRST_P50_MS)
        served_meta, counted_meta = check_meta(big, db_path)
        target(f"first page meta and total exact @{len(taken)}", f"total {served_meta['total']},"
               f" ${served_meta['total_cost']:.2f}", "= sums over the agents table",
               served_meta == counted_meta)
        info(f"filtered list (status+model) @{len(taken)}", f"p50 {filtered_big.pct_ms(.5):.1f} ms  "
             f"p99 {filtered_big.pct_ms(.99):.1f} ms")
        status_p50 = status_seq.pct_ms(.5)
        target(f"GET /api/orchestrator/status @{len(taken)}",
               f"p50 {status_p50:.1f} ms  p99 {status_seq.pct_ms(.99):.1f} ms",
               f"p50 <= {TARGET_STATUS_P50_MS:g} ms", status_p50 <= TARGET_STATUS_P50_MS)
        _, choice = big.request(*RECOMMEND)
        choice = json.loads(choice)
        totals = check_totals(big, db_path, config)
        big.close()
        info("POST /api/orchestrator/recommend-model",
             f"p50 {recommend_seq.pct_ms(.5):.1f} ms  p99 {recommend_seq.pct_ms(.99):.1f} ms   "
             f"coding/medium/normal/2500 -> {choice.get('recommended_model')} "
             f"${choice.get('estimated_cost')}")
        info("", f"status {totals['today']}: today_spend ${totals['today_spend']:.2f} (agents of"
                 f" the day sum to ${totals['agents_spend']:.2f}, {totals['today_agents']}"
                 f" agents), {totals['calls']} calls, level {totals['level']}")

        time.sleep(0.5)
        rss_after, bare_rss_after = serve.worker_rss_mb(), bare.worker_rss_mb()
        worst = max(x for x in (rss_idle, rss_after) if x is not None) if rss_after else None
        target("RSS of the serve worker after the run", f"{rss_after or 0:.1f} MB"
               f" (idle {rss_idle or 0:.1f} MB)", f"<= {TARGET_RSS_MB:g} MB",
               worst is not None and worst <= TARGET_RSS_MB)
        info("", f"bare worker {bare_rss_idle or 0:.1f} MB idle, {bare_rss_after or 0:.1f} MB"
                 " after")

        unexpected = {name: run.non_2xx for name, run in runs.items() if name != "401"}
        unexpected["401 path: not 401"] = runs["401"].requests - runs["401"].non_2xx
        unexpected["socket errors"] = sum(run.socket_errors for run in runs.values())
        loads = {**{f"list {n}": load for n, load in list_loads.items()}, "first page": first,
                 "deep page": deep, "big default page": default_page, "big page 100": first_100,
                 "big filtered": filtered_big, "status": status_seq,
                 "recommend-model": recommend_seq}
        errors = {k: v for k, v in unexpected.items() if v}
        errors.update({k: v for k, v in ((n, non_2xx(x.statuses)) for n, x in loads.items()) if v})
        problems = harness.log_problems(serve.log_path)
        info("errors", f"unexpected answers: {errors or 'none'};  serve log: "
                       f"{problems or 'no tracebacks'}")

        summary.update({
            "seed_seconds": round(seed_s, 2), "db_mb": round(db_mb, 1),
            "bare_rps": round(bare_rps, 1),
            "get_agent": {"rps": round(runs["agent"].rps, 1), "ratio": round(ratio, 3),
                          "target": TARGET_AGENT_RATIO, "met": ratio >= TARGET_AGENT_RATIO},
            "unauthorized": {"rps": round(runs["401"].rps, 1), "ratio": round(ratio_401, 3),
                             "target": TARGET_401_RATIO, "met": ratio_401 >= TARGET_401_RATIO},
            "list_filtered": {name: {"p50_ms": round(load.pct_ms(.5), 2),
                                     "p99_ms": round(load.pct_ms(.99), 2),
                                     "met": load.pct_ms(.5) <= TARGET_LIST_P50_MS}
                              for name, load in list_loads.items()},
            "pagination": {"depth": pages["depth"], "first_p50_ms": round(first.pct_ms(.5), 2),
                           "deep_p50_ms": round(deep.pct_ms(.5), 2),
                           "ratio": round(page_ratio, 3), "met": page_ratio <= TARGET_DEEP_RATIO},
            "big": {"agents": len(taken), "grow_seconds": round(grow_s, 1),
                    "first_page_p50_ms": round(default_page.pct_ms(.5), 2),
                    "first_page_100_p50_ms": round(first_100.pct_ms(.5), 2),
                    "meta_exact": served_meta == counted_meta,
                    "status_p50_ms": round(status_p50, 2), "totals": totals},
            "rss_mb": {"idle": rss_idle and round(rss_idle, 1),
                       "after": rss_after and round(rss_after, 1), "target": TARGET_RSS_MB,
                       "met": worst is not None and worst <= TARGET_RSS_MB},
            "errors": errors, "serve_log": problems,
        })
        if args.json:
            print(json.dumps(summary, indent=2))
        return 0
    finally:
        harness.clean_up([(s.name, s) for s in reversed(servers)], instance, args.keep)


if __name__ == "__main__":
    sys.exit(main())

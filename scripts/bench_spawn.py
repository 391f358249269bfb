"""Benchmark of the spawn path (issue 13, perf-spawn slice), on 127.0.0.1.

What it does, in one run (about 80 s on 2 cores):

1. Starts tests/fake_upstream.py's FakeUpstream in this process (answering at once) and
   a temporary instance pointing both providers at it (kinds anthropic and openai),
   with scripts/harness.py's config (limits and budget raised so nothing is refused);
   runs ``j1msky init``, ``j1msky keys create`` and ``j1msky serve`` at its default
   server settings (and the default database.durability).
2. Latency: spawns one agent at a time, paced at --rate/s for --seconds (POST /api/spawn,
   keep-alive, a unique Idempotency-Key each), and times each from just before the
   request is sent to the fake upstream recording the provider call (matched by a
   token in the task); also the spawn's own HTTP answer.
3. Throughput: wrk (-t2 -c16, --wrk-seconds) POSTs a spawn body to the bare app's
   ``POST /spawn`` (scripts/bare_app.py: bare Flask on serve's gunicorn settings, no
   access log), then to ``POST /api/spawn`` of a second instance whose providers are
   simulated at zero delay (the agents run too); accepted (202) spawns/s over bare req/s.
4. The gunicorn workers' RSS (the larger) once the agents have finished.
5. The cost of one commit with synchronous FULL and NORMAL (WAL) on the disk holding the
   instances: database.durability "power_cut" against "crash".

Prints each target on a line ending in "met" or "MISSED"; asserts nothing.

    /path/to/venv/bin/python scripts/bench_spawn.py [--rate 30] [--seconds 15]
        [--wrk-seconds 10] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import harness  # noqa: E402
from harness import Client, Server, free_port, j1msky_command, setup_instance  # noqa: E402

from tests.fake_upstream import FakeUpstream  # noqa: E402

LATENCY_P50_MS, LATENCY_P99_MS = 3.0, 8.0
THROUGHPUT_RATIO = 0.3
RSS_MB = 80.0
TOKEN = re.compile(r"bench-token-(\d+)")
SPAWN_BODY = json.dumps({"model": "k2p5", "task": "Write a haiku about SQLite write-ahead logs"})
WRK_SCRIPT = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


class TimedUpstream(FakeUpstream):
    """The fake upstream, stamping when each provider call carrying a token arrives."""

    def __init__(self):
        super().__init__()
        self.arrivals: dict[int, float] = {}
        self.arrived = threading.Condition()

    def _record(self, protocol, path, headers, body):
        now = time.perf_counter()
        match = TOKEN.search(json.dumps(body))
        if match:
            with self.arrived:
                self.arrivals[int(match.group(1))] = now
                self.arrived.notify_all()
        return super()._record(protocol, path, headers, body)

    def wait_for(self, token: int, timeout: float = 5.0) -> float | None:
        with self.arrived:
            self.arrived.wait_for(lambda: token in self.arrivals, timeout)
            return self.arrivals.get(token)


def spawn_config(upstream_url: str) -> dict:
    config = harness.config()
    config["providers"] = {
        "anthropic": {"kind": "anthropic", "base_url": upstream_url,
                      "api_key_env": "BENCH_ANTHROPIC_KEY", "hourly": 1_000_000},
        "kimi-coding": {"kind": "openai", "base_url": upstream_url + "/v1",
                        "api_key_env": "BENCH_KIMI_KEY", "hourly": 1_000_000},
    }
    return config


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_latency(port: int, headers: dict, upstream: TimedUpstream, rate: float,
                    seconds: float, first_token: int = 0) -> dict:
    """Paced sequential spawns: client send -> upstream receipt, and the HTTP answer."""
    client = Client(port, headers)
    to_upstream, answered, refused = [], [], 0
    count = int(rate * seconds)
    began = time.perf_counter()
    for n in range(first_token, first_token + count):
        due = began + (n - first_token) / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        body = json.dumps({"model": "k2p5", "task": f"Haiku about WAL, bench-token-{n}"})
        sent = time.perf_counter()
        status, _ = client.request("POST", "/api/spawn", body.encode(),
                                   {"Idempotency-Key": str(uuid.uuid4())})
        answered.append(time.perf_counter() - sent)
        if status != 202:
            refused += 1
            continue
        arrival = upstream.wait_for(n)
        if arrival is not None:
            to_upstream.append(arrival - sent)
    client.close()
    return {"count": count, "refused": refused, "to_upstream": to_upstream,
            "answered": answered}


def run_wrk(port: int, path: str, seconds: float, auth: str | None, folder: str) -> dict:
    """wrk -t2 -c16 POSTing the spawn body; requests/s and the count of 202 answers."""
    script = os.path.join(folder, f"post-{port}.lua")
    auth_line = f'wrk.headers["Authorization"] = "Bearer {auth}"' if auth else ""
    with open(script, "w", encoding="utf-8") as fh:
        fh.write(WRK_SCRIPT.format(body=json.dumps(SPAWN_BODY), auth=auth_line))
        fh.write(STATUS_COUNTER)
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", script,
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    accepted = int(re.search(r"status 202: (\d+)", out).group(1)) \
        if "status 202:" in out else 0
    total = int(re.search(r"(\d+) requests in", out).group(1))
    elapsed = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    return {"rps": rps, "accepted_per_s": accepted / elapsed, "requests": total,
            "accepted": accepted, "raw": out}


# Counts answers per status in each wrk thread and sums them at the end.
STATUS_COUNTER = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, n in pairs(s) do total[code] = (total[code] or 0) + n end
  end
  for code, n in pairs(total) do io.write(string.format("status %d: %d\\n", code, n)) end
end
"""


def wait_idle(db_path: str, timeout: float = 120) -> None:
    """Until no agent waits or runs (read from the SQLite file)."""
    import sqlite3

    deadline = time.monotonic() + timeout
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        while time.monotonic() < deadline:
            left = conn.execute("SELECT count(*) FROM agents WHERE status IN"
                                " ('spawning', 'running')").fetchone()[0]
            if left == 0:
                return
            time.sleep(0.2)
    finally:
        conn.close()


def commit_cost(folder: str, commits: int = 300) -> dict[str, tuple[float, float]]:
    """(p50, mean) ms of a one-row commit in WAL mode, synchronous FULL and NORMAL."""
    import sqlite3

    conn = sqlite3.connect(os.path.join(folder, "commit-cost.sqlite3"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    costs = {}
    try:
        for level in ("NORMAL", "FULL"):
            conn.execute(f"PRAGMA synchronous = {level}")
            times = []
            for _ in range(commits):
                began = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 500,))
                conn.execute("COMMIT")
                times.append(time.perf_counter() - began)
            costs[level] = (percentile(times, .5) * 1000, statistics.mean(times) * 1000)
    finally:
        conn.close()
    return costs


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def start_j1msky(instance: str, config: dict, env_extra: dict) -> tuple[Server, str]:
    """An instance with `config`, a key (agents:read, agents:write) and `j1msky serve` at
    its default server settings; (server, key)."""
    os.makedirs(instance)
    env, key = setup_instance(instance, config, "bench-spawn", ("agents:read", "agents:write"))
    port = free_port()
    server = Server(os.path.basename(instance), [*j1msky_command(), "serve", "--host",
                                                 "127.0.0.1", "--port", str(port)],
                    {**env, **env_extra}, os.path.join(instance, "serve.log"), port)
    server.start("/api/health")
    return server, key["key"]


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the spawn path (see the docstring).")
    parser.add_argument("--rate", type=float, default=30, help="paced spawns/s (default 30)")
    parser.add_argument("--seconds", type=float, default=15, help="paced run (default 15)")
    parser.add_argument("--wrk-seconds", type=int, default=10, help="each wrk run (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the instance folders")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2

    folder = tempfile.mkdtemp(prefix="j1msky-bench-spawn-")
    upstream = TimedUpstream().start()
    servers: list[tuple[str, Server | None]] = []
    try:
        latency_server, key = start_j1msky(
            os.path.join(folder, "latency"), spawn_config(upstream.url),
            {"BENCH_ANTHROPIC_KEY": "sk-ant-bench", "BENCH_KIMI_KEY": "sk-kimi-bench"})
        servers.append(("latency", latency_server))
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        port = latency_server.port
        measure_latency(port, headers, upstream, args.rate, 2)  # warm-up
        latency = measure_latency(port, headers, upstream, args.rate, args.seconds,
                                  first_token=10**6)
        wait_idle(os.path.join(folder, "latency", "j1msky.sqlite3"))

        bare_port = free_port()
        bare = Server("bare", [sys.executable, os.path.join(HERE, "bare_app.py"), "--host",
                               "127.0.0.1", "--port", str(bare_port), "--threads", "8"],
                      dict(os.environ), os.path.join(folder, "bare.log"), bare_port)
        servers.append(("bare", bare))
        bare.start("/agent")
        bare_load = run_wrk(bare_port, "/spawn", args.wrk_seconds, None, folder)
        bare.stop()
        throughput_server, key = start_j1msky(os.path.join(folder, "throughput"),
                                              harness.config(), {})
        servers.append(("throughput", throughput_server))
        run_wrk(throughput_server.port, "/api/spawn", 1, key, folder)  # warm-up
        spawn_load = run_wrk(throughput_server.port, "/api/spawn", args.wrk_seconds, key, folder)
        wait_idle(os.path.join(folder, "throughput", "j1msky.sqlite3"))
        rss = max(latency_server.worker_rss_mb() or 0, throughput_server.worker_rss_mb() or 0)

        report(args, latency, bare_load, spawn_load, rss)
        costs = commit_cost(folder)
        print("one commit on this disk (WAL): " + ", ".join(
            f"{level} p50 {p50:.3f} ms mean {mean:.3f} ms" for level, (p50, mean) in costs.items()))
        return 0
    finally:
        harness.clean_up([*servers, ("upstream", upstream)], folder, args.keep)


def report(args, latency: dict, bare_load: dict, spawn_load: dict, rss: float) -> None:
    arrived = latency["to_upstream"]
    p50, p99 = percentile(arrived, .5) * 1000, percentile(arrived, .99) * 1000
    answer50 = percentile(latency["answered"], .5) * 1000
    answer99 = percentile(latency["answered"], .99) * 1000
    ratio = spawn_load["accepted_per_s"] / bare_load["rps"]
    print(f"spawn -> upstream at {args.rate:g}/s: {len(arrived)} of {latency['count']} reached"
          f" it ({latency['refused']} refused), mean {statistics.mean(arrived) * 1000:.1f} ms;"
          f" the spawn's answer p50 {answer50:.1f} ms p99 {answer99:.1f} ms")
    print(f"spawn -> upstream p50 {p50:.1f} ms (target <= {LATENCY_P50_MS:g} ms): "
          f"{verdict(p50 <= LATENCY_P50_MS)}")
    print(f"spawn -> upstream p99 {p99:.1f} ms (target <= {LATENCY_P99_MS:g} ms): "
          f"{verdict(p99 <= LATENCY_P99_MS)}")
    print(f"accepted spawns/s {spawn_load['accepted_per_s']:.0f} ({spawn_load['accepted']} of "
          f"{spawn_load['requests']} requests) vs bare POST {bare_load['rps']:.0f} req/s: ratio "
          f"{ratio:.2f} (target >= {THROUGHPUT_RATIO:g}): {verdict(ratio >= THROUGHPUT_RATIO)}")
    print(f"worker RSS after the run {rss:.1f} MB (target <= {RSS_MB:g} MB): "
          f"{verdict(0 < rss <= RSS_MB)}")


if __name__ == "__main__":
    sys.exit(main())

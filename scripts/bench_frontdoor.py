"""Benchmark of `j1msky serve` against idle and slow clients, on 127.0.0.1.

What it does (under a minute; about five more with --compare-gthread):

1. Makes a temporary instance folder with harness.config() plus
   ``server.max_connections_per_address: 200`` (so that every slow connection below is
   accepted), runs ``j1msky init`` and ``j1msky keys create``, starts ``j1msky serve
   --threads 8``.
2. Section "latency": p50/p99 of ``GET /api/agents?limit=20`` (authenticated), each on
   a fresh connection, from 127.0.0.2 (another device) and from 127.0.0.1 (the address
   of the slow clients), with
   - 0 other connections open (the baseline),
   - 50 idle connections from 127.0.0.1 (connected, never send a byte),
   - 20 connections from 127.0.0.1 trickling a request head (a byte every 0.5 s).
   Slow connections the server closes are opened again, so the count holds throughout.
   With --compare-gthread it measures the same against plain gthread (gunicorn -c
   scripts/gunicorn.conf.py --worker-class gthread) as well, what `j1msky serve` was.
3. Section "stream delay": a client following GET /api/events/stream and, as the
   baseline in the same run, one polling GET /api/events by cursor every --poll s (the
   SDKs' default is 1 s), while --agents agents are spawned at --rate a second (three
   events each). For every event: its created_at in the events table (microseconds,
   UTC, read from the SQLite file; written in the transaction that commits it) against
   time.time() when the client had it; p50/p99 and the ratio (target: stream p50 <= 20 ms).
4. Section "stream memory": the worker's RSS with every stream place taken
   (server.threads / 2), each stream having read its first block, minus its RSS before,
   per stream.
5. Stops the servers and removes the folder, even on error.

Each section is one function taking the Bench (instance, servers, key) and the
arguments, called from main(); add a section the same way.

It prints figures; it asserts nothing. A request that takes over --timeout seconds
counts as timed out and is left out of the percentiles; a scenario stops sending after
--budget seconds (plain gthread needs that).

    /path/to/venv/bin/python scripts/bench_frontdoor.py [--requests 100] [--compare-gthread]
        [--timeout 5] [--budget 30] [--keep]
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import harness
import requests
from harness import Server, SlowClients, free_port, j1msky_command, setup_instance

THREADS = 8
SLOW_ADDRESS, OTHER_ADDRESS = "127.0.0.1", "127.0.0.2"
PATH = "/api/agents?limit=20"


@dataclass
class Bench:
    instance: str
    env: dict
    headers: dict
    servers: list[Server] = field(default_factory=list)

    def start(self, name: str, *extra: str) -> Server:
        """`j1msky serve`, or (extra given) gunicorn with scripts/gunicorn.conf.py and extra."""
        port = free_port()
        if extra:
            conf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gunicorn.conf.py")
            gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
            command = [gunicorn, "-c", conf, "-b", f"127.0.0.1:{port}", "--threads",
                       str(THREADS), *extra, "j1msky:create_app()"]
        else:
            command = [*j1msky_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
                       "--threads", str(THREADS)]
        server = Server(name, command, self.env, os.path.join(self.instance, f"{name}.log"), port)
        self.servers.append(server)
        server.start("/api/health", self.headers)
        return server


def timed_get(port: int, headers: dict, source: str, timeout: float) -> float | None:
    """Seconds for one GET on a fresh connection from `source` (None: error or timeout)."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0))
    try:
        conn.request("GET", PATH, headers=headers)
        response = conn.getresponse()
        response.read()
        return time.perf_counter() - began if response.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def measure(port: int, headers: dict, source: str, args) -> dict:
    """--requests GETs, or as many as fit in --budget seconds."""
    times = []
    stop = time.monotonic() + args.budget
    while len(times) < args.requests and time.monotonic() < stop:
        times.append(timed_get(port, headers, source, args.timeout))
    done = sorted(t for t in times if t is not None)
    result = {"sent": len(times), "failed": len(times) - len(done), "p50": None, "p99": None}
    if done:
        result.update(p50=statistics.median(done),
                      p99=done[min(len(done) - 1, int(len(done) * .99))])
    return result


def ms(value: float | None) -> str:
    return "   -   " if value is None else f"{value * 1000:7.1f}"


def latency(bench: Bench, args) -> None:
    """p50/p99 of a normal GET with 0 / 50 idle / 20 trickling connections open."""
    servers = [("j1msky serve", bench.start("serve"))]
    if args.compare_gthread:
        servers.append(("plain gthread", bench.start("gthread", "--worker-class", "gthread")))
    print(f"latency   GET {PATH} on a fresh connection, {args.requests} each; "
          f"ms, ratio of p50 to the baseline's", flush=True)
    for name, server in servers:
        baseline = {}
        for scenario, count, trickle in (("0 open", 0, False), ("50 idle", 50, False),
                                         ("20 trickling", 20, True)):
            with SlowClients(server.port, count, trickle, SLOW_ADDRESS) as slow:
                for source in (OTHER_ADDRESS, SLOW_ADDRESS):
                    result = measure(server.port, bench.headers, source, args)
                    baseline.setdefault(source, result["p50"])
                    ratio = (f"x{result['p50'] / baseline[source]:.2f}"
                             if result["p50"] and baseline[source] else "")
                    print(f"  {name:14} {scenario:13} from {source}  p50 {ms(result['p50'])}  "
                          f"p99 {ms(result['p99'])}  {ratio:7} failed/timed out "
                          f"{result['failed']}/{result['sent']}", flush=True)
                if count:
                    print(f"  {'':14} {'':13} slow connections the server closed "
                          f"(opened again): {slow.reopened}", flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def stored_times(db_path: str) -> dict[str, float]:
    """evt_ id -> created_at as a POSIX time."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {f"evt_{i}": dt.datetime.fromisoformat(at).replace(tzinfo=dt.timezone.utc)
                .timestamp() for i, at in conn.execute("SELECT id, created_at FROM events")}
    finally:
        conn.close()


def follow_stream(base: str, auth: dict, arrivals: dict, stop: threading.Event,
                  ready: threading.Event) -> None:
    with requests.get(base + "/api/events/stream", headers=auth, stream=True,
                      timeout=(5, 30)) as response:
        for raw in response.iter_lines():
            ready.set()
            line = raw.decode()
            if line.startswith("data:"):
                arrivals[json.loads(line[5:])["id"]] = time.time()
            if stop.is_set():
                return


def poll_feed(base: str, auth: dict, interval: float, arrivals: dict,
              stop: threading.Event, cursor: str | None) -> None:
    session = requests.Session()
    while not stop.is_set():
        page = session.get(base + "/api/events", headers=auth, timeout=10,
                           params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        now = time.time()
        for event in page["data"]:
            arrivals[event["id"]] = now
        cursor = page["pagination"]["cursor"] or cursor
        if not page["pagination"]["has_more"]:
            stop.wait(interval)


def newest_cursor(base: str, auth: dict) -> str | None:
    cursor = None
    while True:
        page = requests.get(base + "/api/events", headers=auth, timeout=10,
                            params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        cursor = page["pagination"]["cursor"] or cursor
        if not page["pagination"]["has_more"]:
            return cursor


def stream_delay(bench: Bench, args) -> None:
    """Commit -> client, pushed on the live stream and polled by cursor."""
    server = bench.start("stream")
    base, auth = f"http://127.0.0.1:{server.port}", bench.headers
    db_path = os.path.join(bench.instance, "j1msky.sqlite3")
    streamed, polled = {}, {}
    stop, ready = threading.Event(), threading.Event()
    threads = [threading.Thread(target=follow_stream, args=(base, auth, streamed, stop, ready)),
               threading.Thread(target=poll_feed, args=(base, auth, args.poll, polled, stop,
                                                       newest_cursor(base, auth)))]
    for thread in threads:
        thread.start()
    ready.wait(10)
    session = requests.Session()
    began = time.monotonic()
    for n in range(args.agents):
        time.sleep(max(0.0, began + n / args.rate - time.monotonic()))
        session.post(base + "/api/spawn", headers=auth, timeout=10,
                     json={"model": "k2p5", "task": f"bench stream {n}"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(streamed) < 3 * args.agents:
        time.sleep(0.1)
    time.sleep(args.poll + 0.5)  # the poller's last round
    stop.set()
    for thread in threads:
        thread.join(35)
    created = stored_times(db_path)
    print(f"stream delay  {args.agents} agents at {args.rate:g}/s; commit -> client, ms"
          f" (events' created_at against the client's clock)")
    figures = {}
    for name, arrivals in (("stream", streamed), (f"poll every {args.poll:g}s", polled)):
        ms = [(at - created[event_id]) * 1000 for event_id, at in arrivals.items()]
        figures[name] = (percentile(ms, 0.5), percentile(ms, 0.99))
        print(f"  {name:<18} {len(ms):5d} events  p50 {figures[name][0]:8.1f}  "
              f"p99 {figures[name][1]:8.1f}  mean {statistics.fmean(ms):8.1f}")
    (s50, s99), (p50, p99) = figures.values()
    print(f"  stream / poll      p50 {s50 / p50:.3f}  p99 {s99 / p99:.3f}"
          f"   (target: stream p50 <= 20 ms: {'met' if s50 <= 20 else 'NOT met'})")
    server.stop()


def stream_memory(bench: Bench, args) -> None:
    """Worker RSS per open stream, with every stream place taken."""
    server = bench.start("streams")
    base, auth = f"http://127.0.0.1:{server.port}", bench.headers
    before = server.worker_rss_mb()
    held = []
    for _ in range(THREADS // 2):
        response = requests.get(base + "/api/events/stream", headers=auth, stream=True,
                                timeout=(5, 30))
        if response.status_code != 200:
            print(f"  stream {len(held) + 1} refused: {response.status_code}")
            break
        next(response.iter_lines())
        held.append(response)
    time.sleep(1)
    after = server.worker_rss_mb()
    for response in held:
        response.close()
    server.stop()
    per_stream_kib = (after - before) * 1024 / max(1, len(held))
    print(f"stream memory  worker RSS {before:.1f} MiB, {after:.1f} MiB with {len(held)} streams open:"
          f" {per_stream_kib:.0f} KiB per stream")


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark `j1msky serve` against idle and "
                                                 "slow clients (see the docstring).")
    parser.add_argument("--requests", type=int, default=100,
                        help="GETs per scenario and address (default 100)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds before a GET counts as timed out (default 5)")
    parser.add_argument("--budget", type=float, default=30.0,
                        help="seconds at most per scenario and address (default 30)")
    parser.add_argument("--compare-gthread", action="store_true",
                        help="measure plain gthread (gunicorn.conf.py, --worker-class gthread) too")
    parser.add_argument("--agents", type=int, default=300,
                        help="agents spawned in the stream delay section (default 300)")
    parser.add_argument("--rate", type=float, default=20,
                        help="their spawns a second (default 20)")
    parser.add_argument("--poll", type=float, default=1.0,
                        help="the polling baseline's interval in seconds (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the instance folder (logs)")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    instance = tempfile.mkdtemp(prefix="j1msky-bench-frontdoor-")
    bench = None
    print(f"J1MSKY bench_frontdoor  server threads={THREADS}  cpus={os.cpu_count()}", flush=True)
    try:
        config = harness.config(server={"max_connections_per_address": 200},
                                streams={"max_seconds": 300, "heartbeat_seconds": 1})
        env, key = setup_instance(instance, config, "bench-frontdoor",
                                  ("agents:read", "agents:write"))
        bench = Bench(instance, env, {"Authorization": f"Bearer {key['key']}"})
        latency(bench, args)
        stream_delay(bench, args)
        stream_memory(bench, args)
        for server in bench.servers:
            problems = harness.log_problems(server.log_path)
            print(f"{server.name} log  {problems or 'no tracebacks, no 4xx/5xx'}")
        return 0
    finally:
        harness.clean_up([(s.name, s) for s in (bench.servers if bench else [])], instance,
                         args.keep)


if __name__ == "__main__":
    sys.exit(main())

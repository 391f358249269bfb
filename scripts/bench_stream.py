"""Benchmark of the live event stream (GET /api/events/stream), on 127.0.0.1.

One server (``j1msky serve --threads 64``, so up to 32 streams; simulated providers
with no delay, limits raised so nothing is refused) and two sections, one function each:

- delay: a stream follower and, as the baseline in the same run, a client polling
  GET /api/events by cursor every --poll seconds (the SDKs' default is 1 s) while
  --agents agents are spawned at --rate a second (three events each). For every event:
  its created_at in the events table (microseconds, UTC, read from the SQLite file; it
  is written in the transaction that commits it) against time.time() when the client
  had it. Prints p50/p99 for both and their ratio (target: stream p50 <= 20 ms).
- memory: the worker's RSS with --streams streams open (each has read its first
  block) minus its RSS before, per stream.

It prints figures; it asserts nothing.

    /path/to/venv/bin/python scripts/bench_stream.py [--agents 300] [--rate 20]
        [--poll 1.0] [--streams 32] [--keep]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

import harness
import requests

THREADS = 64


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


def delay(server: harness.Server, base: str, auth: dict, db_path: str, args) -> None:
    """Commit -> client, pushed on the stream and polled by cursor."""
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
    print(f"delay   {args.agents} agents at {args.rate:g}/s; commit -> client, ms"
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


def memory(server: harness.Server, base: str, auth: dict, args) -> None:
    """Worker RSS per open stream."""
    time.sleep(2)  # the delay section's stream notices at a heartbeat that its client left
    before = server.worker_rss_mb()
    held = []
    for _ in range(args.streams):
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
    per_stream_kib = (after - before) * 1024 / max(1, len(held))
    print(f"memory  worker RSS {before:.1f} MiB, {after:.1f} MiB with {len(held)} streams open:"
          f" {per_stream_kib:.0f} KiB per stream")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20, help="spawns a second")
    parser.add_argument("--poll", type=float, default=1.0, help="the baseline's poll interval")
    parser.add_argument("--streams", type=int, default=THREADS // 2)
    parser.add_argument("--keep", action="store_true", help="keep the instance folder")
    args = parser.parse_args()
    instance = tempfile.mkdtemp(prefix="j1msky-bench-stream-")
    server = None
    try:
        config = harness.config(server={"threads": THREADS},
                                streams={"max_seconds": 300, "heartbeat_seconds": 1})
        env, key = harness.setup_instance(instance, config, "bench", ("agents:read",
                                                                      "agents:write"))
        auth = {"Authorization": f"Bearer {key['key']}"}
        port = harness.free_port()
        server = harness.Server("serve", [*harness.j1msky_command(), "serve", "--host",
                                          "127.0.0.1", "--port", str(port), "--threads",
                                          str(THREADS)],
                                env, os.path.join(instance, "serve.log"), port)
        server.start("/api/health", headers=auth)
        base = f"http://127.0.0.1:{port}"
        print(f"J1MSKY stream benchmark  cpus={os.cpu_count()}  threads={THREADS}")
        delay(server, base, auth, os.path.join(instance, "j1msky.sqlite3"), args)
        memory(server, base, auth, args)
        return 0
    finally:
        harness.clean_up([("serve", server)], instance, args.keep)


if __name__ == "__main__":
    sys.exit(main())

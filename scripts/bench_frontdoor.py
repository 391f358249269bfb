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
3. Stops the servers and removes the folder, even on error.

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
import http.client
import os
import select
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import harness
from harness import Server, free_port, j1msky_command, setup_instance

THREADS = 8
SLOW_ADDRESS, OTHER_ADDRESS = "127.0.0.1", "127.0.0.2"
PATH = "/api/agents?limit=20"
HEAD = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


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


class SlowClients:
    """`count` connections from SLOW_ADDRESS kept open: idle, or trickling a request head."""

    def __init__(self, port: int, count: int, trickle: bool):
        self.port, self.count, self.trickle = port, count, trickle
        self.socks: list[socket.socket] = []
        self.reopened = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self) -> SlowClients:
        self.socks = [self.open() for _ in range(self.count)]
        self.thread.start()
        time.sleep(1)  # past the point where gthread hands them to its threads
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()

    def open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5,
                                        source_address=(SLOW_ADDRESS, 0))
        if self.trickle:
            sock.sendall(HEAD)
        return sock

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            closed, _, _ = select.select(self.socks, [], [], 0)
            for sock in closed:  # readable: the server answered or closed it
                self.socks.remove(sock)
                sock.close()
                self.socks.append(self.open())
                self.reopened += 1
            for sock in self.socks if self.trickle else ():
                try:
                    sock.send(b"x")
                except OSError:
                    pass


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
            with SlowClients(server.port, count, trickle) as slow:
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
    parser.add_argument("--keep", action="store_true", help="keep the instance folder (logs)")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    instance = tempfile.mkdtemp(prefix="j1msky-bench-frontdoor-")
    bench = None
    print(f"J1MSKY bench_frontdoor  server threads={THREADS}  cpus={os.cpu_count()}", flush=True)
    try:
        config = harness.config(server={"max_connections_per_address": 200})
        env, key = setup_instance(instance, config, "bench-frontdoor", ("agents:read",))
        bench = Bench(instance, env, {"Authorization": f"Bearer {key['key']}"})
        latency(bench, args)
        for server in bench.servers:
            problems = harness.log_problems(server.log_path)
            print(f"{server.name} log  {problems or 'no tracebacks, no 4xx/5xx'}")
        return 0
    finally:
        harness.clean_up([(s.name, s) for s in (bench.servers if bench else [])], instance,
                         args.keep)


if __name__ == "__main__":
    sys.exit(main())

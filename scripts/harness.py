"""Set-up shared by the scripts that run J1MSKY on 127.0.0.1 (bench_api.py,
bench_webhooks.py, soak.py): the instance's config.json, the `j1msky` console script,
a free port, a server process and its log, a keep-alive HTTP client.

The scripts run as ``python scripts/X.py``, so this folder is on sys.path and they
``import harness``.
"""
from __future__ import annotations

import collections
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

# --------------------------------------------------------------------------- setup


def config(provider_delays: dict | None = None, **sections: dict) -> dict:
    """tests/helpers.config_for_tests with limits raised so that nothing is refused.

    `provider_delays` gives a simulated provider's delay per call (seconds; 0 when not
    given); `sections` are further top-level sections (e.g. security, webhooks).
    """
    delays = provider_delays or {}
    result = {
        "environment": "live",
        "providers": {
            name: {"kind": "simulated", "hourly": 1_000_000, "delay": delays.get(name, 0)}
            for name in ("anthropic", "kimi-coding")
        },
        "provider_calls": {"retries": 2, "backoff_base": 0.01, "backoff_max": 0.05,
                           "simulated_delay": 0},
        "agents": {"workers": 4, "shutdown_grace_seconds": 2,
                   "max_concurrent_per_key": 100_000},
        "budget": {"daily": 1_000_000, "monthly_ceiling": 30_000_000},
        "rate_limits": {"spawn": "1000000/hour", "agent": "1000000/hour",
                        "agents": "1000000/hour", "system": "1000000/hour",
                        "per_ip": "1000000/minute"},
    }
    result.update(sections)
    result["legacy_v3"] = {"sunset": "2099-01-01"}
    return result


def j1msky_command() -> list[str]:
    """The installed console script beside this interpreter, as a user runs it."""
    script = os.path.join(os.path.dirname(sys.executable), "j1msky")
    return [script] if os.path.exists(script) else [shutil.which("j1msky") or "j1msky"]


def run_cli(env: dict, *args: str) -> str:
    """Run `j1msky ARGS` with `env`; return its stdout, raise RuntimeError if it fails."""
    result = subprocess.run([*j1msky_command(), *args], env=env, capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"j1msky {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    return result.stdout


def setup_instance(instance: str, config: dict, key_name: str,
                   scopes: tuple[str, ...]) -> tuple[dict, dict]:
    """config.json, `j1msky init`, a key with `scopes`; returns (env, {key_id, key})."""
    with open(os.path.join(instance, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2)
    env = {**os.environ, "J1MSKY_INSTANCE": instance}
    run_cli(env, "init")
    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
    out = run_cli(env, "keys", "create", "--name", key_name, *scope_args, "--json")
    return env, json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- servers

def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A gunicorn server in its own process group, output to a log file."""

    def __init__(self, name: str, command: list[str], env: dict, log_path: str, port: int):
        self.name, self.command, self.env = name, command, env
        self.log_path, self.port = log_path, port
        self.process: subprocess.Popen | None = None

    def start(self, probe: str, headers: dict | None = None, wait: float = 60) -> float:
        """Start and wait until `probe` answers (any HTTP status); return seconds taken."""
        began = time.perf_counter()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", probe, headers=headers or {})
                conn.getresponse().read()
                conn.close()
                return time.perf_counter() - began
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer in {wait}s:\n{self.log_tail()}")

    def worker_rss_mb(self) -> float | None:
        """RSS of the gunicorn worker (the child of the arbiter we started)."""
        import psutil  # only the scripts that measure RSS need it

        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
            if not children:
                return None
            return max(c.memory_info().rss for c in children) / 2**20
        except (psutil.Error, AttributeError):
            return None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the process group we started; SIGKILL it after the timeout."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the server's log ("" if unreadable)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""


def log_problems(path: str) -> dict:
    """Count tracebacks and 4xx/5xx access-log lines in a server log."""
    counts: collections.Counter = collections.Counter()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Traceback"):
                    counts["tracebacks"] += 1
                parts = line.split('" ')
                if len(parts) > 1 and parts[-1][:3].isdigit() and parts[-1][0] in "45":
                    counts[parts[-1][:3]] += 1
    except OSError:
        pass
    return dict(counts)


# --------------------------------------------------------------------------- clients

class Client:
    """One keep-alive HTTP/1.1 connection; reconnects (and retries once) when the server closed it."""

    def __init__(self, port: int, headers: dict | None = None):
        self.port, self.headers, self.conn = port, headers or {}, None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        """Send one request; return (status, body bytes)."""
        all_headers = {**self.headers, **(headers or {})}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, http.client.CannotSendRequest,
                    ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection; the next request opens a new one."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class SlowClients:
    """`count` connections from `source` kept open: idle, or trickling a request head (a
    byte every 0.5 s). One the server answers or closes is opened again, also after the
    server was down (a connection that cannot be made now is tried again later)."""

    HEAD = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "

    def __init__(self, port: int, count: int, trickle: bool, source: str = "127.0.0.1"):
        self.port, self.count, self.trickle, self.source = port, count, trickle, source
        self.socks: list[socket.socket] = []
        self.reopened = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> SlowClients:
        self.socks = [self.open() for _ in range(self.count)]
        self.thread.start()
        time.sleep(1)  # past the point where gthread hands them to its threads
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()
        for sock in self.socks:
            sock.close()

    def __enter__(self) -> SlowClients:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5,
                                        source_address=(self.source, 0))
        if self.trickle:
            sock.sendall(self.HEAD)
        return sock

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            closed, _, _ = select.select(self.socks, [], [], 0)
            for sock in closed:  # readable: the server answered or closed it
                self.socks.remove(sock)
                sock.close()
            while len(self.socks) < self.count:
                try:
                    self.socks.append(self.open())
                except OSError:
                    break  # the server is down: next round
                self.reopened += 1
            for sock in self.socks if self.trickle else ():
                try:
                    sock.send(b"x")
                except OSError:
                    pass


def clean_up(stops: list[tuple[str, object]], instance: str, keep: bool) -> None:
    """Stop each (name, thing with .stop() or None) in order, reporting rather than
    raising failures, then remove the instance folder unless asked to keep it."""
    for name, thing in stops:
        if thing is None:
            continue
        try:
            thing.stop()
        except Exception as exc:  # noqa: BLE001 - keep cleaning up the rest
            print(f"stopping {name}: {exc}", file=sys.stderr)
    if keep:
        print(f"instance kept at {instance}")
    else:
        shutil.rmtree(instance, ignore_errors=True)

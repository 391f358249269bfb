"""A real `j1msky serve` process on a free 127.0.0.1 port."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def j1msky_command() -> list[str]:
    """The installed console script, as a user runs it."""
    script = os.path.join(os.path.dirname(sys.executable), "j1msky")
    return [script] if os.path.exists(script) else [shutil.which("j1msky") or "j1msky"]


class LiveServer:
    def __init__(self, instance, env: dict | None = None, threads: int = 8):
        self.instance = str(instance)
        self.env = {**os.environ, "J1MSKY_INSTANCE": self.instance, **(env or {})}
        self.threads = threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = os.path.join(self.instance, "serve.log")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*j1msky_command(), *args], env=self.env, capture_output=True,
                                text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"j1msky {' '.join(args)} failed: {result.stderr}")
        return result

    def create_key(self, *scopes: str, extra: tuple = ()) -> dict:
        args = ["keys", "create", "--name", "live-test", "--json", *extra]
        for scope in scopes:
            args += ["--scope", scope]
        return json.loads(self.cli(*args).stdout)

    def start(self, wait: float = 30, extra: tuple = (), verify=True) -> LiveServer:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*j1msky_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--threads", str(self.threads), *extra],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log()}")
            try:
                requests.get(self.url + "/api/health", timeout=1, verify=verify)
                return self
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        raise AssertionError(f"serve did not answer in {wait}s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def kill(self) -> None:
        """SIGKILL the whole process group (master and worker): a crash."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as systemd stops it; returns the exit code."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode if self.process else 0


@pytest.fixture
def live_server_factory(tmp_path):
    """live_server_factory(config_dict, env=...) -> a LiveServer with `j1msky init` run."""
    servers = []

    def make(config: dict | None = None, env: dict | None = None, **kw) -> LiveServer:
        instance = tmp_path / f"live{len(servers)}"
        instance.mkdir()
        if config is not None:
            (instance / "config.json").write_text(json.dumps(config))
        server = LiveServer(instance, env, **kw)
        server.cli("init")
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()

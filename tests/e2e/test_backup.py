"""Operations: `j1msky backup` while a real server writes, the systemd unit in scripts/, and
scripts/gunicorn.conf.py (same settings as `j1msky serve`, background started in the worker)."""
from __future__ import annotations

import os
import re
import runpy
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import pytest
import requests

from j1msky import server as embedded
from tests.helpers import config_for_tests

SCRIPTS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "scripts")
UNIT = os.path.abspath(os.path.join(SCRIPTS, "j1msky.service"))
GUNICORN_CONF = os.path.abspath(os.path.join(SCRIPTS, "gunicorn.conf.py"))
FINISHED = ("completed", "failed", "cancelled")
SLOW_OPUS = {"anthropic": {"kind": "simulated", "hourly": 1000, "delay": 30}}


def spawn(url: str, auth: dict, model: str = "k2p5", task: str = "back me up") -> requests.Response:
    return requests.post(url + "/api/spawn", headers=auth, json={"model": model, "task": task},
                         timeout=10)


def wait_status(url: str, auth: dict, agent_id: str, statuses=FINISHED, timeout=15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        agent = requests.get(f"{url}/api/agent/{agent_id}", headers=auth, timeout=10).json()
        if agent["status"] in statuses or time.monotonic() > deadline:
            return agent
        time.sleep(0.05)


def query(path, sql: str, *args) -> list:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# j1msky backup ---------------------------------------------------------------------------

def test_backup_while_serving_is_a_checked_consistent_copy(live_server_factory, tmp_path):
    server = live_server_factory(config_for_tests())
    auth = {"Authorization": f"Bearer {server.create_key('agents:read', 'agents:write')['key']}"}
    server.start()
    ids = [spawn(server.url, auth, task=f"task {i}").json()["agent_id"] for i in range(5)]
    assert {wait_status(server.url, auth, i)["status"] for i in ids} == {"completed"}

    stop = threading.Event()

    def keep_writing():  # spawns (and their runs) commit all through the backup
        while not stop.is_set():
            spawn(server.url, auth, task="during the backup")
            time.sleep(0.02)

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    target = tmp_path / "copies" / "j1msky-backup.sqlite3"
    target.parent.mkdir()
    try:
        result = server.cli("backup", str(target))
    finally:
        stop.set()
        writer.join(15)

    size = target.stat().st_size
    during = "SELECT count(*) FROM agents WHERE task = 'during the backup'"
    assert query(os.path.join(server.instance, "j1msky.sqlite3"), during)[0][0] > 0
    assert str(target) in result.stdout and f"{size} bytes" in result.stdout
    assert "integrity_check ok" in result.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert query(target, "PRAGMA integrity_check") == [("ok",)]
    assert query(target, "PRAGMA journal_mode") == [("delete",)]
    assert not os.path.exists(str(target) + "-wal")
    assert list(target.parent.iterdir()) == [target]  # no temp file left behind
    live_db = os.path.join(server.instance, "j1msky.sqlite3")
    assert query(target, "PRAGMA user_version") == query(live_db, "PRAGMA user_version")
    copied = {row[0] for row in query(target, "SELECT agent_id FROM agents")}
    assert set(ids) <= copied
    # One snapshot: the running totals agree with the agent rows they were written with.
    for day, spent, reserved in query(target, "SELECT day, spent_micros, reserved_micros"
                                              " FROM budget_days"):
        [(charged, held)] = query(
            target, "SELECT coalesce(sum(actual_micros), 0), coalesce(sum(CASE WHEN status IN"
                    " ('spawning', 'running') THEN estimated_micros END), 0) FROM agents"
                    " WHERE budget_day = ?", day)
        assert (spent, reserved) == (charged, held), day

    later = spawn(server.url, auth, task="after the first backup").json()["agent_id"]
    refused = server.cli("backup", str(target), check=False)
    assert refused.returncode == 1 and "already exists" in refused.stderr
    assert later not in {row[0] for row in query(target, "SELECT agent_id FROM agents")}
    server.cli("backup", str(target), "--force")
    assert later in {row[0] for row in query(target, "SELECT agent_id FROM agents")}
    assert server.stop() == 0


def test_backup_refuses_the_live_database_and_a_missing_folder(live_server_factory, tmp_path):
    server = live_server_factory(config_for_tests())
    live_db = os.path.join(server.instance, "j1msky.sqlite3")
    before = os.path.getsize(live_db)
    itself = server.cli("backup", live_db, "--force", check=False)
    assert itself.returncode == 1 and "is the live database" in itself.stderr
    assert os.path.getsize(live_db) == before
    nowhere = server.cli("backup", str(tmp_path / "no" / "such" / "b.sqlite3"), check=False)
    assert nowhere.returncode == 1 and "no such folder" in nowhere.stderr


# scripts/j1msky.service ------------------------------------------------------------------

def unit_directives(path: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                current = sections.setdefault(line.strip("[]"), {})
                continue
            key, sep, value = line.partition("=")
            assert sep and current is not None, f"not a directive: {raw!r}"
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span: 45, 45s, 1min 30s."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value))


def test_systemd_unit_runs_serve_unprivileged_and_sandboxed(monkeypatch, tmp_path):
    unit = unit_directives(UNIT)
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert "network-online.target" in unit["Unit"]["After"][0]
    assert service["User"] == "j1msky"
    assert service["ExecStart"].endswith("/j1msky serve")
    env = dict(v.split("=", 1) for v in unit["Service"]["Environment"])
    instance = env["J1MSKY_INSTANCE"]
    assert os.path.isabs(instance)
    assert service["EnvironmentFile"].startswith("-/")
    assert service["Restart"] == "on-failure"
    monkeypatch.setenv("J1MSKY_INSTANCE", str(tmp_path))
    conf = runpy.run_path(GUNICORN_CONF)  # the same graceful_timeout as j1msky serve
    grace = config_for_tests()["agents"]["shutdown_grace_seconds"]
    assert seconds(service["TimeoutStopSec"]) > max(conf["graceful_timeout"], grace, 10)
    assert service["KillMode"] == "mixed"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": "",
                       "SystemCallArchitectures": "native"}.items():
        assert service[key] == value, key
    assert service["ReadWritePaths"].split() == [instance]
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart exists: point it at this venv's j1msky.
    script = os.path.join(os.path.dirname(sys.executable), "j1msky")
    with open(UNIT, encoding="utf-8") as fh:
        text = fh.read().replace("/opt/j1msky/app/.venv/bin/j1msky", script)
    copy = tmp_path / "j1msky.service"
    copy.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                            capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "j1msky.service" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


# scripts/gunicorn.conf.py ----------------------------------------------------------------

def test_gunicorn_conf_sets_what_serve_sets(monkeypatch, tmp_path):
    captured = {}

    class Capture:
        def __init__(self, options):
            captured.update(options)

        def run(self):
            pass

    monkeypatch.setattr(embedded, "J1mskyServer", Capture)
    embedded.run("0.0.0.0", 8080, 8)
    monkeypatch.setenv("J1MSKY_INSTANCE", str(tmp_path))  # no config.json: the defaults
    conf = runpy.run_path(GUNICORN_CONF)
    assert conf["workers"] == 1 and conf["preload_app"] is False
    assert conf["bind"] == captured["bind"] and conf["threads"] == captured["threads"]
    for name in ("worker_class", "keepalive", "limit_request_line", "timeout", "graceful_timeout",
                 "accesslog", "errorlog", "loglevel", "logger_class", "access_log_format",
                 "control_socket_disable"):
        assert conf[name] == captured[name], name
    assert conf["ssl_context"] is embedded.tls_1_3_only


class Gunicorn:
    """gunicorn -c scripts/gunicorn.conf.py 'j1msky:create_app()' on a live server's instance."""

    def __init__(self, server, *args: str):
        self.server = server
        gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
        self.log = open(os.path.join(server.instance, "gunicorn.log"), "w+b")
        self.process = subprocess.Popen(
            [gunicorn, "-c", GUNICORN_CONF, "-b", f"127.0.0.1:{server.port}", *args,
             "j1msky:create_app()"],
            env=server.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                requests.get(self.server.url + "/api/health", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(f"gunicorn did not answer:\n{self.output()}")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.log.close()


def test_gunicorn_conf_runs_agents_and_stops_them_on_sigterm(live_server_factory):
    server = live_server_factory(config_for_tests(providers=SLOW_OPUS))
    auth = {"Authorization": f"Bearer {server.create_key('agents:read', 'agents:write')['key']}"}
    gunicorn = Gunicorn(server)
    try:
        gunicorn.wait_ready()
        quick = spawn(server.url, auth).json()["agent_id"]
        assert wait_status(server.url, auth, quick)["status"] == "completed"  # the pool runs
        slow = spawn(server.url, auth, model="opus").json()["agent_id"]
        assert wait_status(server.url, auth, slow, ("running",))["status"] == "running"
        started = time.monotonic()
        os.kill(gunicorn.process.pid, signal.SIGTERM)
        assert gunicorn.process.wait(30) == 0, gunicorn.output()
        assert time.monotonic() - started < 15  # the grace (2 s here), not the 30 s call
    finally:
        gunicorn.close()
    [(status, error)] = query(os.path.join(server.instance, "j1msky.sqlite3"),
                              "SELECT status, error FROM agents WHERE agent_id = ?", slow)
    assert (status, error) == ("failed", "interrupted by shutdown")


def test_gunicorn_conf_refuses_more_than_one_worker(live_server_factory):
    server = live_server_factory(config_for_tests())
    gunicorn = Gunicorn(server, "--workers", "2")
    try:
        assert gunicorn.process.wait(30) != 0
        assert "exactly one gunicorn worker" in gunicorn.output()
    finally:
        gunicorn.close()

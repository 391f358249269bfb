"""Test helpers: the test config, API keys, request signing."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import sqlite3
import time
from dataclasses import dataclass

from j1msky.db import connection_for, transaction
from j1msky.services import keys as key_service


def config_for_tests(**sections) -> dict:
    """A config for tests: simulated providers with no delay, fast retries."""
    config = {
        "environment": "live",
        "providers": {
            "anthropic": {"kind": "simulated", "hourly": 1000, "delay": 0},
            "kimi-coding": {"kind": "simulated", "hourly": 1000, "delay": 0},
        },
        "provider_calls": {"retries": 2, "backoff_base": 0.01, "backoff_max": 0.05,
                           "simulated_delay": 0},
        "agents": {"workers": 2, "shutdown_grace_seconds": 2},
        # A live event stream holds its caller until it ends: short ones keep the in-process
        # fuzzing (test_openapi) quick. Tests of streams set their own.
        "streams": {"max_seconds": 0.1},
        "legacy_v3": {"sunset": "2099-01-01"},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **value}
        else:
            config[name] = value
    return config


def upstream_config(url: str, **sections) -> dict:
    """Providers pointing at a FakeUpstream: anthropic (sonnet, opus) and openai (k2p5)."""
    return config_for_tests(providers={
        "anthropic": {"kind": "anthropic", "base_url": url, "api_key_env": "TEST_ANTHROPIC_KEY",
                      "hourly": 1000},
        "kimi-coding": {"kind": "openai", "base_url": url + "/v1", "api_key_env": "TEST_KIMI_KEY",
                        "hourly": 1000},
    }, **sections)


UPSTREAM_ENV = {"TEST_ANTHROPIC_KEY": "sk-ant-test-secret-0001", "TEST_KIMI_KEY": "sk-kimi-test-0002"}


@dataclass
class Key:
    key_id: str
    key: str
    api_secret: str | None

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}


class KeyMaker:
    def __init__(self, app):
        self.app = app

    def make(self, *scopes: str, signing: bool = False, require_signature: bool = False,
             max_concurrent: int | None = None) -> Key:
        conn = connection_for(self.app.config["DATABASE"])
        with transaction(conn):
            made = key_service.create_key(
                conn, env=self.app.extensions["j1msky_config"].get()["environment"],
                name="test", scopes=list(scopes), master=self.app.extensions["j1msky_master"],
                signing=signing, require_signature=require_signature,
                max_concurrent=max_concurrent)
        return Key(made["key_id"], made["key"], made["api_secret"])


def sign(key: Key, method: str, path: str, body: str = "", when: dt.datetime | None = None,
         secret: str | None = None) -> dict:
    """Headers of a signed request, as CONTRACT §3 describes."""
    timestamp = (when or dt.datetime.now(dt.timezone.utc)).isoformat()
    message = f"{timestamp}\n{method}\n{path}\n{body}"
    signature = hmac.new((secret or key.api_secret).encode(), message.encode(),
                         hashlib.sha256).hexdigest()
    return {**key.headers, "X-Timestamp": timestamp, "X-Signature": signature,
            "Content-Type": "application/json"}


def dumps(body) -> str:
    return json.dumps(body, separators=(",", ":"))


def configure(app, **sections) -> None:
    """Rewrite the app's config.json with config_for_tests(**sections) merged in."""
    app.extensions["j1msky_config"].update(lambda c: c.update(
        {k: ({**c.get(k, {}), **v} if isinstance(v, dict) else v) for k, v in sections.items()}))


def wait_for(client, key, agent_id: str, statuses=("completed", "failed", "cancelled"),
             timeout: float = 10) -> dict:
    """Poll GET /api/agent/{id} until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        agent = client.get(f"/api/agent/{agent_id}", headers=key.headers).json
        if agent["status"] in statuses or time.monotonic() > deadline:
            return agent
        time.sleep(0.02)


def agent_count(app) -> int:
    """Agents stored in the app's database (read on a connection of its own)."""
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        return conn.execute("SELECT count(*) FROM agents").fetchone()[0]
    finally:
        conn.close()


def billed_micros(config: dict, answered: list[dict]) -> int:
    """What a provider bills for the calls a FakeUpstream answered, at config's prices."""
    from j1msky.services import catalog
    model_of = {spec["upstream"]: name for name, spec in config["models"].items()}
    return sum(catalog.cost_micros(config, model_of[a["model"]], a["input_tokens"],
                                   a["output_tokens"]) for a in answered)


def wait_settled(database: str, timeout: float = 10) -> None:
    """Wait until no agent is active and no provider call is in flight."""
    deadline = time.monotonic() + timeout
    conn = sqlite3.connect(database)
    try:
        while conn.execute("SELECT (SELECT count(*) FROM agents WHERE status IN"
                           " ('spawning', 'running')) + (SELECT count(*) FROM calls_in_flight)"
                           ).fetchone()[0]:
            assert time.monotonic() < deadline, "agents or provider calls still in flight"
            time.sleep(0.05)
    finally:
        conn.close()

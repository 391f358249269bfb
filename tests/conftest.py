"""Fixtures: an app on a temp instance folder, its client and CLI runner, keys,
the fake upstream, and a live `j1msky serve` process."""
from __future__ import annotations

import json
import os

import pytest

from j1msky import create_app, db
from j1msky.config import defaults
from j1msky.services import clock
from j1msky.services.runner import Runner
from j1msky.services.webhooks import Dispatcher
from tests.fixtures_upstream import fake_upstream  # noqa: F401
from tests.helpers import UPSTREAM_ENV, KeyMaker, config_for_tests, upstream_config
from tests.live import live_server_factory  # noqa: F401
from tests.webhook_receiver import webhook_receiver  # noqa: F401


@pytest.fixture
def instance(tmp_path):
    """A temp instance folder holding the test config.json."""
    folder = tmp_path / "instance"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config_for_tests()))
    return folder


@pytest.fixture
def app(instance):
    app = create_app({"INSTANCE_PATH": str(instance), "TESTING": True})
    yield app
    db.forget(app.config["DATABASE"])
    clock.set_clock(None)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def cli_runner(app):
    return app.test_cli_runner()


@pytest.fixture
def keys(app):
    """Make API keys: keys.make('agents:read', signing=True) -> Key."""
    return KeyMaker(app)


@pytest.fixture
def admin(keys):
    return keys.make("agents:read", "agents:write", "billing:read", "admin:write")


@pytest.fixture
def example_config():
    return defaults()


@pytest.fixture(autouse=True)
def no_provider_keys(monkeypatch):
    """Tests never see the machine's real provider keys."""
    for name in ("ANTHROPIC_API_KEY", "KIMI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("J1MSKY_INSTANCE", raising=False)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def client_for(tmp_path):
    """client_for(instance_folder) -> a test client of an app on that folder."""
    apps = []

    def make(folder):
        app = create_app({"INSTANCE_PATH": str(folder), "TESTING": True})
        apps.append(app)
        return app.test_client()

    yield make
    for made in apps:
        db.forget(made.config["DATABASE"])


@pytest.fixture
def start_runner(app):
    """start_runner() -> the app's agent Runner, started; shut down after the test."""
    runners = []

    def start():
        runner = Runner(app)
        app.extensions["j1msky_runner"] = runner
        runner.start()
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        runner.shutdown()


@pytest.fixture
def upstream(instance, fake_upstream, monkeypatch):  # noqa: F811
    """Point the app's providers at the fake upstream (before `app` is built)."""
    (instance / "config.json").write_text(json.dumps(upstream_config(fake_upstream.url)))
    for name, value in UPSTREAM_ENV.items():
        monkeypatch.setenv(name, value)
    return fake_upstream



@pytest.fixture
def start_dispatcher(app):
    """start_dispatcher() -> the app's webhook Dispatcher, started; stopped after the test."""
    dispatchers = []

    def start():
        dispatcher = Dispatcher(app)
        dispatcher.start()
        dispatchers.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in dispatchers:
        dispatcher.stop()

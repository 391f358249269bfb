"""J1MSKY: a self-hosted agent orchestration API."""
from __future__ import annotations

import os

from flask import Flask

from .sdk import (  # noqa: F401 - the Python client: `from j1msky import Agency`
    Agency,
    AuthError,
    CircuitBreaker,
    CircuitOpenError,
    Conflict,
    Gone,
    J1mskyError,
    NetworkError,
    NotFound,
    RateLimitError,
    ServerError,
    ValidationError,
)

__version__ = "4.0.0"


def instance_folder() -> str:
    return os.environ.get("J1MSKY_INSTANCE") or os.path.abspath("instance")


class App(Flask):
    """Flask, for an app with no async views or hooks."""

    def ensure_sync(self, func):
        # Flask asks of every hook and view, on every request, whether it is a
        # coroutine function (a twentieth of a cheap request); none here is.
        return func


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app; nothing starts here (see start_background)."""
    from . import api, auth, dashboard, db, errors, ipguard, ratelimit
    from .api.common import JSONProvider
    from .config import ConfigStore
    from .services.crypto import DataKey
    from .services.keys import load_master_secret

    test_config = test_config or {}
    instance = test_config.get("INSTANCE_PATH") or instance_folder()
    os.makedirs(instance, exist_ok=True)
    app = App(__name__, instance_path=instance, instance_relative_config=True,
              static_folder=None)
    app.config.from_mapping(DATABASE=os.path.join(instance, "j1msky.sqlite3"),
                            CONFIG_PATH=os.path.join(instance, "config.json"))
    app.config.update(test_config)
    app.json = JSONProvider(app)  # request.get_json with bounded nesting
    app.json.sort_keys = False

    store = ConfigStore(app.config["CONFIG_PATH"])
    app.extensions["j1msky_config"] = store
    app.extensions["j1msky_master"] = load_master_secret(instance)
    app.extensions["j1msky_data_key"] = DataKey(instance)
    app.config["MAX_CONTENT_LENGTH"] = store.get()["server"]["max_body_bytes"]

    db.init_db(app)
    errors.init_app(app)
    ipguard.init_app(app)  # first: blocked and not-allowed addresses go no further
    ratelimit.init_app(app)  # before auth: the per-IP limit runs first
    auth.init_app(app)
    api.init_app(app)
    dashboard.init_app(app)  # the owner's console at /
    return app


def start_background(app: Flask) -> None:
    """Start the agent pool and the scheduler: once per process, from `j1msky serve`."""
    from . import scheduler
    from .services.runner import Runner
    from .services.webhooks import Dispatcher

    runner = Runner(app)
    app.extensions["j1msky_runner"] = runner
    runner.start()
    dispatcher = Dispatcher(app)
    app.extensions["j1msky_dispatcher"] = dispatcher
    dispatcher.start()
    app.extensions["j1msky_scheduler"] = scheduler.start(app)


def stop_background(app: Flask) -> None:
    """Stop the scheduler, then the pool (bounded wait for running agents)."""
    scheduler = app.extensions.pop("j1msky_scheduler", None)
    if scheduler is not None:
        scheduler.shutdown(wait=False)
    runner = app.extensions.pop("j1msky_runner", None)
    if runner is not None:
        runner.shutdown()
    dispatcher = app.extensions.pop("j1msky_dispatcher", None)
    if dispatcher is not None:
        dispatcher.stop()

"""The baseline for scripts/bench_api.py: a bare Flask app behind the same gunicorn setup.

Two JSON routes, no authentication, no database, no middleware: ``GET /agent`` answers
a dict shaped and sized like a J1MSKY agent object; ``POST /spawn`` parses a small JSON
body and answers 202 with a dict shaped like J1MSKY's spawn answer. It is served with the
gunicorn settings of ``j1msky serve`` (see j1msky/server.py): one worker of the same
worker class (FrontDoorWorker, a gthread subclass), N threads, the same keep-alive and
timeouts, and no access log. So the gap between the two is the cost of J1MSKY's own work
per request, an access log included if the service writes one by default.

FrontDoorWorker reads config.json ``server`` (request timeout, per-address cap) from
the app, as the service's app holds it: this app holds the same ConfigStore, of
$J1MSKY_INSTANCE/config.json (the defaults when there is none).

    /path/to/venv/bin/python scripts/bare_app.py --host 127.0.0.1 --port 8099 --threads 8
"""
from __future__ import annotations

import argparse
import os

from flask import Flask, request
from gunicorn.app.base import BaseApplication

from j1msky import instance_folder
from j1msky.config import ConfigStore
from j1msky.server import KEEPALIVE, LIMIT_REQUEST_LINE, WORKER_CLASS

app = Flask(__name__)
app.json.sort_keys = False  # as in j1msky.create_app
app.extensions["j1msky_config"] = ConfigStore(os.path.join(instance_folder(), "config.json"))

TASK = "Write a Python function that parses a CSV export and totals the amounts per customer."
RESULT = ("[simulated kimi-k2.5] Here is a function that reads the file with csv.DictReader, "
          "groups rows by customer id, and sums the amount column as Decimal to avoid float "
          "rounding. It skips blank lines, reports malformed rows with their line number, and "
          "returns a dict of customer id to total. Tests cover empty files and bad amounts.")


@app.get("/agent")
def agent():
    """A fresh dict per request, like a view that builds its answer."""
    return {
        "agent_id": "subagent_1764090000_123456", "model": "k2p5", "team": None,
        "status": "completed", "task": TASK, "priority": "normal", "timeout": 300.0,
        "created_at": "2025-11-25T17:00:00Z", "started_at": "2025-11-25T17:00:01Z",
        "completed_at": "2025-11-25T17:00:09Z", "result": RESULT, "error": None,
        "estimated_cost": 0.010313, "actual_cost": 0.000841,
        "usage": {"input_tokens": 31, "output_tokens": 329}, "fallback_from": None,
        "steps": None, "simulated": True, "created": "2025-11-25T17:00:00Z",
        "started": "2025-11-25T17:00:01Z", "completed": "2025-11-25T17:00:09Z",
        "cost": 0.000841,
    }


@app.post("/spawn")
def spawn():
    """Parse the JSON body, answer like POST /api/spawn (202 and a Location)."""
    body = request.get_json()
    agent_id = "subagent_1764090000_123456"
    return {"success": True, "agent_id": agent_id, "model": body.get("model", "k2p5"),
            "status": "spawning", "priority": body.get("priority", "normal"), "timeout": 300,
            "estimated_cost": 0.310313, "created_at": "2025-11-25T17:00:00Z"}, \
        202, {"Location": f"/api/agent/{agent_id}"}


class BareServer(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return app


def options(host: str, port: int, threads: int) -> dict:
    """The options of j1msky.server.run without an access log, and without its hooks
    (nothing to start or stop here)."""
    return {
        "bind": f"{host}:{port}", "workers": 1, "worker_class": WORKER_CLASS, "threads": threads,
        "keepalive": KEEPALIVE, "limit_request_line": LIMIT_REQUEST_LINE,
        "timeout": 60, "graceful_timeout": 30, "accesslog": None, "errorlog": "-",
        "loglevel": "info", "control_socket_disable": True,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    BareServer(options(args.host, args.port, args.threads)).run()


if __name__ == "__main__":
    main()

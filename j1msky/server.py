"""gunicorn, embedded: one worker process (the agent pool and scheduler live there), N threads."""
from __future__ import annotations

import logging
import ssl

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from .services.stream import end_streams_on_sigterm

log = logging.getLogger("j1msky")


class J1mskyServer(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        self.application = None
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)
        if self.cfg.workers != 1:
            raise SystemExit("j1msky serve runs exactly one worker")

    def load(self):
        from . import create_app, start_background
        app = create_app()
        start_background(app)
        self.application = app
        return app


def worker_exit(server, worker):
    """SIGTERM: stop taking agents, let running ones finish for a bounded time."""
    from . import stop_background
    app = getattr(server.app, "application", None)
    if app is not None:
        stop_background(app)


def tls_1_3_only(config, default_ssl_context_factory):
    """gunicorn's ssl_context hook: TLS 1.3 as the minimum."""
    context = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


# The worker reads each request before a thread takes it (see j1msky/worker.py); a
# connection with no request for KEEPALIVE seconds is closed.
WORKER_CLASS = "j1msky.worker.FrontDoorWorker"
KEEPALIVE = 5
# gunicorn's largest request line: GET /api/agents?filter= with an "in" of 100 agent ids,
# URL-encoded, takes about 3.9 KB; gunicorn's default of 4094 left no room.
LIMIT_REQUEST_LINE = 8190


class AccessLogger(Logger):
    """gunicorn's logger, building only the fields of ACCESS_LOG_FORMAT for an access line
    (gunicorn's own builds every header and environ entry: twice the cost)."""

    def atoms(self, resp, req, environ, request_time):
        sent = getattr(resp, "sent", None)
        return {"h": environ.get("REMOTE_ADDR", "-"),
                "r": f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}",
                "s": str(resp.status).split(None, 1)[0], "b": "-" if sent is None else str(sent),
                "M": request_time.seconds * 1000 + request_time.microseconds // 1000}


# No access line by default: under journald a line per request is most of what a Pi's
# journal would hold, and costs a tenth of a cheap request. config.json server.access_log
# turns it on (read at start). Errors and warnings are always logged.
LOGGER_CLASS = "j1msky.server.AccessLogger"
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


def run(host: str, port: int, threads: int, tls: tuple[str, str] | None = None,
        access_log: bool = False) -> None:
    options = {
        "bind": f"{host}:{port}", "workers": 1, "worker_class": WORKER_CLASS, "threads": threads,
        "keepalive": KEEPALIVE, "limit_request_line": LIMIT_REQUEST_LINE,
        "timeout": 60, "graceful_timeout": 30, "accesslog": "-" if access_log else None,
        "errorlog": "-", "loglevel": "info", "worker_exit": worker_exit,
        "control_socket_disable": True, "post_worker_init": end_streams_on_sigterm,
        "logger_class": LOGGER_CLASS, "access_log_format": ACCESS_LOG_FORMAT,
    }
    if tls:
        options.update(certfile=tls[0], keyfile=tls[1], ssl_context=tls_1_3_only)
    J1mskyServer(options).run()

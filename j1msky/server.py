"""gunicorn, embedded: one worker process (the agent pool and scheduler live there), N threads."""
from __future__ import annotations

import logging
import ssl

from gunicorn.app.base import BaseApplication

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


def run(host: str, port: int, threads: int, tls: tuple[str, str] | None = None) -> None:
    options = {
        "bind": f"{host}:{port}", "workers": 1, "worker_class": "gthread", "threads": threads,
        "timeout": 60, "graceful_timeout": 30, "accesslog": "-", "errorlog": "-",
        "loglevel": "info", "worker_exit": worker_exit, "control_socket_disable": True,
        "post_worker_init": end_streams_on_sigterm,
        "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
    }
    if tls:
        options.update(certfile=tls[0], keyfile=tls[1], ssl_context=tls_1_3_only)
    J1mskyServer(options).run()

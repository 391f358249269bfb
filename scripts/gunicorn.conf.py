"""gunicorn settings equal to what `j1msky serve` sets, for running gunicorn yourself.

    J1MSKY_INSTANCE=/opt/j1msky/instance \\
        gunicorn -c scripts/gunicorn.conf.py 'j1msky:create_app()'

The app spec is the factory call `j1msky:create_app()` (gunicorn calls it in the worker).
bind and threads come from config.json `server` in the instance folder, as for `j1msky
serve`; `-b HOST:PORT` and `--threads N` on the command line override them. HTTPS: add
`--certfile` and `--keyfile`; ssl_context below holds it to TLS 1.3, as serve does.

`j1msky serve` is still the simpler way: it reads the same settings and refuses the same
mistakes. Keep this file in step with j1msky/server.py (tests/e2e/test_backup.py checks).
"""
import os

from j1msky import instance_folder, start_background, stop_background
from j1msky.config import load_file
from j1msky.server import (
    ACCESS_LOG_FORMAT,
    KEEPALIVE,
    LIMIT_REQUEST_LINE,
    LOGGER_CLASS,
    WORKER_CLASS,
    tls_1_3_only,
)

_server = load_file(os.path.join(instance_folder(), "config.json"))["server"]

bind = f"{_server['host']}:{_server['port']}"

# Exactly one worker process. Waiting agents sit in an in-memory priority queue and run on
# a thread pool inside the worker, next to the webhook dispatcher and APScheduler's jobs
# (provider windows, retention). A second worker would start all of them again: every
# waiting agent queued and run twice, every periodic job doubled, and a cancel answered by
# one worker could not stop an agent running in the other. Concurrency comes from threads.
workers = 1
# gthread, except that the request is read before a thread takes it: idle and slow
# clients hold no thread, and are cut after config.json server.request_timeout.
worker_class = WORKER_CLASS
threads = _server["threads"]
keepalive = KEEPALIVE
limit_request_line = LIMIT_REQUEST_LINE

# Build the app in the worker, never in the master before fork: SQLite connections and
# threads do not survive fork(), and the background threads must live in the worker.
preload_app = False

timeout = 60
# On SIGTERM the worker stops taking agents and waits agents.shutdown_grace_seconds
# (default 10) for running ones; keep that below this, and systemd's TimeoutStopSec above.
graceful_timeout = 30
# A line per request only with config.json server.access_log (see j1msky/server.py).
accesslog = "-" if _server["access_log"] else None
errorlog = "-"
loglevel = "info"
logger_class = LOGGER_CLASS
access_log_format = ACCESS_LOG_FORMAT
# gunicornc's control socket can change the number of workers at run time (gunicorn >= 25.1).
control_socket_disable = True

ssl_context = tls_1_3_only  # used only with --certfile/--keyfile


def on_starting(server):
    """Refuse `-w N` on the command line as `j1msky serve --workers N` does."""
    if server.cfg.workers != 1:
        raise SystemExit("J1MSKY runs exactly one gunicorn worker: the agent pool and the"
                         " scheduler live in it. Use --threads for concurrency.")


def post_worker_init(worker):
    """Start the agent pool, webhook dispatcher and scheduler in the worker, once."""
    start_background(worker.wsgi)


def worker_exit(server, worker):
    """SIGTERM: stop taking agents, let running ones finish for a bounded time."""
    app = getattr(worker, "wsgi", None)  # None when the master reaps a worker it never booted
    if app is not None:
        stop_background(app)

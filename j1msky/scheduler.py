"""Periodic jobs (APScheduler), started once per process by `j1msky serve`."""
from __future__ import annotations

import datetime as dt
import logging

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from .auth import purge_signatures
from .config import current as current_config
from .db import checkpoint, get_db, transaction
from .services import agentdata, audit, clock, idempotency, limits, sessions

log = logging.getLogger(__name__)


def in_app(app: Flask, job):
    """Run a job inside an app context, logging instead of dying on errors."""
    def run():
        with app.app_context():
            try:
                job()
            except Exception:
                log.exception("scheduled job %s failed", job.__name__)
    run.__name__ = job.__name__
    return run


def purge_idempotency_keys() -> int:
    removed = idempotency.purge_expired(get_db())
    log.info("purged %d expired idempotency keys", removed)
    return removed


def purge_old_signatures() -> int:
    return purge_signatures(get_db(), current_config()["security"]["signature_window_seconds"])


def purge_console_sessions() -> int:
    """Console sessions past their lifetime or idle timeout (and expired login links)."""
    conn = get_db()
    with transaction(conn):
        return sessions.purge_expired(conn, current_config()["dashboard"])


def reset_provider_windows() -> None:
    limits.reset_windows(get_db())


def purge_old_events() -> int:
    """Events and finished webhook deliveries older than retention.events_days."""
    days = current_config()["retention"]["events_days"]
    cutoff = clock.iso(clock.now() - dt.timedelta(days=days))
    conn = get_db()
    with transaction(conn):
        events = conn.execute("DELETE FROM events WHERE created_at < ?", (cutoff,)).rowcount
        conn.execute("DELETE FROM webhook_deliveries WHERE state != 'pending'"
                     " AND created_at < ?", (cutoff,))
    log.info("purged %d events older than %d days", events, days)
    return events


def purge_audit_log() -> int:
    """Audit entries older than retention.audit_days."""
    config = current_config()
    removed = audit.purge(get_db(), config)
    log.info("purged %d audit entries older than %d days", removed,
             config["retention"]["audit_days"])
    return removed


# What `j1msky purge` and the daily job remove: name -> job returning how many rows went.
def erase_expired_agent_data() -> int:
    """Task and result of agents past their retention_days (cost records stay)."""
    conn = get_db()
    with transaction(conn):
        erased = agentdata.erase_expired(conn)
    if erased:
        checkpoint(conn)
    return erased


RETENTION = {
    "agent_data": erase_expired_agent_data,
    "events": purge_old_events,
    "audit_log": purge_audit_log,
    "idempotency_keys": purge_idempotency_keys,
    "signatures": purge_old_signatures,
    "console_sessions": purge_console_sessions,
}


def run_retention() -> dict[str, int | None]:
    """Run every retention job once (in an app context): the daily job and `j1msky purge`.

    A failing job is logged and reported as None; the others still run.
    """
    removed: dict[str, int | None] = {}
    for name, job in RETENTION.items():
        try:
            removed[name] = job()
        except Exception:
            log.exception("retention job %s failed", name)
            removed[name] = None
    return removed


JOBS = [
    (run_retention, {"trigger": "cron", "hour": 3, "minute": 17}),
    (reset_provider_windows, {"trigger": "cron", "minute": 0, "second": 0}),
    (purge_idempotency_keys, {"trigger": "cron", "minute": 5}),
    (purge_old_signatures, {"trigger": "interval", "minutes": 5}),
    (purge_console_sessions, {"trigger": "interval", "minutes": 10}),
]


def start(app: Flask) -> BackgroundScheduler:
    timezone = app.extensions["j1msky_config"].get()["timezone"]
    scheduler = BackgroundScheduler(timezone=timezone, daemon=True)
    for job, trigger in JOBS:
        scheduler.add_job(in_app(app, job), id=job.__name__, coalesce=True,
                          misfire_grace_time=300, **trigger)
    scheduler.start()
    return scheduler


"""Periodic jobs (APScheduler), started once per process by `j1msky serve`."""
from __future__ import annotations

import datetime as dt
import logging

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from .auth import purge_signatures
from .config import current as current_config
from .db import get_db, transaction
from .services import clock, idempotency, limits

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


def purge_idempotency_keys() -> None:
    removed = idempotency.purge_expired(get_db())
    log.info("purged %d expired idempotency keys", removed)


def purge_old_signatures() -> None:
    purge_signatures(get_db(), current_config()["security"]["signature_window_seconds"])


def reset_provider_windows() -> None:
    limits.reset_windows(get_db())


def purge_old_events() -> None:
    """Events and finished webhook deliveries older than retention.events_days."""
    days = current_config()["retention"]["events_days"]
    cutoff = clock.iso(clock.now() - dt.timedelta(days=days))
    conn = get_db()
    with transaction(conn):
        events = conn.execute("DELETE FROM events WHERE created_at < ?", (cutoff,)).rowcount
        conn.execute("DELETE FROM webhook_deliveries WHERE state != 'pending'"
                     " AND created_at < ?", (cutoff,))
    log.info("purged %d events older than %d days", events, days)


JOBS = [
    (purge_old_events, {"trigger": "cron", "hour": 3, "minute": 17}),
    (reset_provider_windows, {"trigger": "cron", "minute": 0, "second": 0}),
    (purge_idempotency_keys, {"trigger": "cron", "minute": 5}),
    (purge_old_signatures, {"trigger": "interval", "minutes": 5}),
]


def start(app: Flask) -> BackgroundScheduler:
    timezone = app.extensions["j1msky_config"].get()["timezone"]
    scheduler = BackgroundScheduler(timezone=timezone, daemon=True)
    for job, trigger in JOBS:
        scheduler.add_job(in_app(app, job), id=job.__name__, coalesce=True,
                          misfire_grace_time=300, **trigger)
    scheduler.start()
    return scheduler


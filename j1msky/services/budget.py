"""Money: today's spend in the configured time zone."""
from __future__ import annotations

import datetime as dt
import sqlite3
import zoneinfo

from . import clock


def day_bounds(config: dict, moment: dt.datetime | None = None) -> tuple[str, str]:
    """Start and end (stored form, UTC) of the budget day holding `moment`."""
    tz = zoneinfo.ZoneInfo(config["timezone"])
    local = (moment or clock.now()).astimezone(tz)
    start = dt.datetime.combine(local.date(), dt.time(), tzinfo=tz)
    end = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return clock.iso(start), clock.iso(end)


def today_spend(conn: sqlite3.Connection, config: dict) -> int:
    """Micro-dollars charged today by agents created today."""
    start, end = day_bounds(config)
    return conn.execute("SELECT coalesce(sum(actual_micros), 0) FROM agents"
                        " WHERE created_at >= ? AND created_at < ?", (start, end)).fetchone()[0]

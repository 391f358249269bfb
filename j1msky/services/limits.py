"""Provider hourly call counters: fixed clock-hour windows, kept in SQLite."""
from __future__ import annotations

import datetime as dt
import sqlite3

from ..db import transaction
from . import catalog, clock


def window_start(moment: dt.datetime | None = None) -> dt.datetime:
    return (moment or clock.now()).replace(minute=0, second=0, microsecond=0)


def window_end() -> dt.datetime:
    return window_start() + dt.timedelta(hours=1)


def seconds_to_window_end() -> int:
    return max(1, int((window_end() - clock.now()).total_seconds()) + 1)


def used(conn: sqlite3.Connection, provider: str) -> int:
    """Calls in the current window (a row from an older window counts as zero)."""
    row = conn.execute("SELECT calls FROM provider_usage WHERE provider = ? AND window_start = ?",
                       (provider, clock.iso(window_start()))).fetchone()
    return row[0] if row else 0


def try_count_call(conn: sqlite3.Connection, provider: str, hourly: int) -> bool:
    """Count one call if the provider is under its hourly limit; False when it is not."""
    current = clock.iso(window_start())
    with transaction(conn):
        conn.execute("INSERT OR IGNORE INTO provider_usage (provider, window_start, calls)"
                     " VALUES (?, ?, 0)", (provider, current))
        return conn.execute(
            "UPDATE provider_usage SET calls = CASE WHEN window_start = :w THEN calls + 1 ELSE 1"
            " END, window_start = :w WHERE provider = :p AND (window_start != :w OR calls < :limit)",
            {"w": current, "p": provider, "limit": hourly}).rowcount == 1


def reset_windows(conn: sqlite3.Connection) -> int:
    """Start a new window for every provider whose counter belongs to an older one."""
    current = clock.iso(window_start())
    return conn.execute("UPDATE provider_usage SET calls = 0, window_start = ?"
                        " WHERE window_start != ?", (current, current)).rowcount


def has_capacity(conn: sqlite3.Connection, config: dict, model: str) -> bool:
    """The model's provider may take another call this hour (the simulator always may)."""
    route = catalog.route(config, model)
    if route.simulated:
        return True
    return used(conn, route.provider_name) < config["providers"][route.provider_name]["hourly"]


def usage(conn: sqlite3.Connection, config: dict) -> dict:
    """Every configured provider's window: used, limit, remaining, reset_at."""
    reset_at = clock.iso_out(clock.iso(window_end()))
    out = {}
    for name, provider in config["providers"].items():
        current, limit = used(conn, name), provider["hourly"]
        out[name] = {"used": current, "limit": limit, "remaining": max(limit - current, 0),
                     "utilization_pct": round(current / limit * 100, 2) if limit else 100.0,
                     "reset_at": reset_at}
    return out

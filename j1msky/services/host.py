"""The machine J1MSKY runs on: temperature, load, memory, disk, uptime, database size."""
from __future__ import annotations

import math
import os
import shutil
import sqlite3
import time

import psutil

THERMAL_ZONE = "/sys/class/thermal/thermal_zone0/temp"  # millidegrees Celsius
UNITS = ("B", "K", "M", "G", "T", "P")


def cpu_temp() -> float | None:
    """°C of the board: a Raspberry Pi's cpu_thermal sensor, else the first sensor psutil
    reads, else thermal zone 0; None on a machine without one (a VM, a container)."""
    try:
        sensors = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
    except (OSError, RuntimeError):
        sensors = {}
    for name in ("cpu_thermal", *sensors):
        for reading in sensors.get(name, ()):
            if reading.current is not None and math.isfinite(reading.current):
                return round(reading.current, 1)
    try:
        with open(THERMAL_ZONE, encoding="ascii") as fh:
            return round(int(fh.read().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def human_bytes(size: int) -> str:
    """Like `df -h`: 45G, 3.2G, 512M."""
    value, unit = float(size), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.1f}{UNITS[unit]}" if unit and value < 10 else f"{value:.0f}{UNITS[unit]}"


def human_uptime(seconds: int) -> str:
    """The reference's form: hours and minutes, "24h 15m" (hours go past 24)."""
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def database_bytes(path: str) -> int:
    """The database file and its write-ahead log."""
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def vitals(conn: sqlite3.Connection, instance_path: str, database: str) -> dict:
    """What GET /system reports, plus the database's size."""
    uptime = max(0, int(time.time() - psutil.boot_time()))
    free = shutil.disk_usage(instance_path).free
    active = conn.execute("SELECT count(*) FROM agents WHERE status IN"
                          " ('spawning', 'running')").fetchone()[0]
    return {"cpu_temp": cpu_temp(), "load_average": round(psutil.getloadavg()[0], 2),
            "memory_usage": psutil.virtual_memory().percent, "uptime": human_uptime(uptime),
            "disk_free": human_bytes(free), "active_agents": active,
            "uptime_seconds": uptime, "disk_free_bytes": free,
            "process_rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
            "database_bytes": database_bytes(database)}

"""The one clock of the service, replaceable in tests."""
from __future__ import annotations

import datetime as dt
from typing import Callable

UTC = dt.timezone.utc


def _system_now() -> dt.datetime:
    return dt.datetime.now(UTC)


_now: Callable[[], dt.datetime] = _system_now


def now() -> dt.datetime:
    """Current time, aware, UTC."""
    return _now()


def set_clock(fn: Callable[[], dt.datetime] | None) -> None:
    """Replace the clock (tests); None restores the system clock."""
    global _now
    _now = fn or _system_now


def iso(moment: dt.datetime) -> str:
    """Storage form: fixed width, so string order is time order."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"  # strftime costs 5x as much


def iso_out(stored: str | None) -> str | None:
    """API form of a stored timestamp: second precision, Z."""
    return None if stored is None else stored[:19] + "Z"


def parse(text: str) -> dt.datetime:
    """Parse ISO 8601 (date or datetime, Z or offset, naive = UTC); ValueError if not."""
    moment = dt.datetime.fromisoformat(text.strip())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def now_iso() -> str:
    return iso(now())

"""Money: reservations at admission, charges as steps finish, alert levels, forecast.

Running totals live in budget_days and usage_daily and change in the same transaction
as the agent row they describe, so every figure agrees with Σ agents.actual_micros.
"""
from __future__ import annotations

import calendar
import datetime as dt
import sqlite3
import zoneinfo

from ..db import returning
from ..errors import APIError
from . import clock, events

LEVELS = ("ok", "notice", "warning", "critical")


def local_now(config: dict) -> dt.datetime:
    return clock.now().astimezone(zoneinfo.ZoneInfo(config["timezone"]))


def today(config: dict) -> str:
    return local_now(config).date().isoformat()


def seconds_to_day_end(config: dict) -> int:
    now = local_now(config)
    end = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=now.tzinfo)
    return max(1, int((end - now).total_seconds()) + 1)


def micros(dollars: float) -> int:
    return round(dollars * 1_000_000)


def day_totals(conn: sqlite3.Connection, day: str) -> tuple[int, int]:
    """(spent, reserved) micro-dollars of a budget day."""
    row = conn.execute("SELECT spent_micros, reserved_micros FROM budget_days WHERE day = ?",
                       (day,)).fetchone()
    return (row[0], row[1]) if row else (0, 0)


def remaining_micros(conn: sqlite3.Connection, config: dict) -> int:
    spent, reserved = day_totals(conn, today(config))
    return micros(config["budget"]["daily"]) - spent - reserved


def alert_level(config: dict, spent_micros: int) -> str:
    """ok < notice <= ... by today's utilisation and the configured thresholds."""
    pct = utilization_pct(config, spent_micros)
    thresholds = config["budget"]["alert_thresholds"]
    level = "ok"
    for name in LEVELS[1:]:
        if pct >= thresholds[name]:
            level = name
    return level


def utilization_pct(config: dict, spent_micros: int) -> float:
    daily = micros(config["budget"]["daily"])
    return round(spent_micros / daily * 100, 2) if daily else 100.0


def reserve(conn: sqlite3.Connection, config: dict, estimate: int) -> str:
    """Reserve an estimate against today's budget (caller holds the write lock); 429 if
    it does not fit. Returns the budget day. One statement checks and reserves."""
    day, budget = today(config), micros(config["budget"]["daily"])
    reserved = returning(
        conn, "INSERT INTO budget_days (day, reserved_micros) SELECT :day, :estimate"
              " WHERE :estimate <= :budget ON CONFLICT(day) DO UPDATE SET reserved_micros ="
              " reserved_micros + excluded.reserved_micros WHERE spent_micros < :budget AND"
              " spent_micros + reserved_micros + excluded.reserved_micros <= :budget"
              " RETURNING day",
        {"day": day, "estimate": estimate, "budget": budget})
    if reserved is None:
        spent, _ = day_totals(conn, day)
        raise APIError(429, "Daily budget exhausted" if spent >= budget else
                       "Daily budget would be exceeded by this agent's estimated cost",
                       retry_after=seconds_to_day_end(config))
    return day


def release(conn: sqlite3.Connection, day: str, estimate: int) -> None:
    """An agent finished: its reservation no longer holds budget."""
    conn.execute("UPDATE budget_days SET reserved_micros = reserved_micros - ? WHERE day = ?",
                 (estimate, day))


def charge(conn: sqlite3.Connection, config: dict, *, day: str, model: str, provider: str,
           key_id: str, cost: int, input_tokens: int, output_tokens: int,
           estimated: bool = False) -> None:
    """Record one paid call's usage and cost (`estimated`: its answer was lost, so the
    cost is its estimate); emit budget.alert when the level moves."""
    ((spent,),) = conn.execute(
        "INSERT INTO budget_days (day, spent_micros) VALUES (?, ?) ON CONFLICT(day) DO UPDATE"
        " SET spent_micros = spent_micros + excluded.spent_micros RETURNING spent_micros",
        (day, cost)).fetchall()
    before = spent - cost
    conn.execute(
        "INSERT INTO usage_daily (day, model, provider, key_id, calls, input_tokens,"
        " output_tokens, cost_micros, estimated_micros) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?)"
        " ON CONFLICT(day, model, provider, key_id) DO UPDATE SET calls = calls + 1,"
        " input_tokens = input_tokens + excluded.input_tokens,"
        " output_tokens = output_tokens + excluded.output_tokens,"
        " cost_micros = cost_micros + excluded.cost_micros,"
        " estimated_micros = estimated_micros + excluded.estimated_micros",
        (day, model, provider, key_id, input_tokens, output_tokens, cost,
         cost if estimated else 0))
    old, new = alert_level(config, before), alert_level(config, before + cost)
    if new != old and day == today(config):
        events.emit(conn, "budget.alert", {
            "level": new, "previous_level": old, "day": day,
            "today_spend": dollars(before + cost), "daily_budget": config["budget"]["daily"],
            "budget_utilization_pct": utilization_pct(config, before + cost)})


def dollars(value: int) -> float:
    return round(value / 1_000_000, 6)


def month_to_date(conn: sqlite3.Connection, config: dict) -> int:
    month = today(config)[:7]
    return conn.execute("SELECT coalesce(sum(spent_micros), 0) FROM budget_days"
                        " WHERE day >= ? AND day <= ?", (month + "-01", month + "-31")).fetchone()[0]


def forecast(conn: sqlite3.Connection, config: dict) -> dict:
    """Month-end projection: month-to-date / days elapsed (today counted) * days in month."""
    now = local_now(config)
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    projected = month_to_date(conn, config) / now.day * days_in_month
    ceiling = config["budget"]["monthly_ceiling"]
    return {"projected_spend": round(projected / 1_000_000, 2), "budget_ceiling": ceiling,
            "delta_to_budget": round(ceiling - projected / 1_000_000, 2)}


def today_spend(conn: sqlite3.Connection, config: dict) -> int:
    return day_totals(conn, today(config))[0]


def summary(conn: sqlite3.Connection, config: dict) -> dict:
    """The budget fields of /orchestrator/status and /orchestrator/recommend-model."""
    spent, reserved = day_totals(conn, today(config))
    daily = config["budget"]["daily"]
    return {"daily_budget": daily, "today_spend": dollars(spent),
            "today_reserved": dollars(reserved),
            "budget_remaining": dollars(max(micros(daily) - spent, 0)),
            "budget_utilization_pct": utilization_pct(config, spent),
            "budget_alert_level": alert_level(config, spent)}


def burn_rate(conn: sqlite3.Connection, config: dict) -> dict:
    """Today's spend per hour since local midnight, and when the daily budget runs out at
    that rate (None when it does not run out today, or nothing was spent yet)."""
    now = local_now(config)
    hours = max((now - now.replace(hour=0, minute=0, second=0, microsecond=0))
                .total_seconds() / 3600, 1 / 60)
    spent = today_spend(conn, config)
    per_hour = spent / hours
    left = micros(config["budget"]["daily"]) - spent
    runs_out_at = None
    # Compared in hours first: a large budget at a tiny rate is past any date's range.
    if per_hour > 0 and max(left, 0) / per_hour * 3600 < seconds_to_day_end(config):
        runs_out_at = (now + dt.timedelta(hours=max(left, 0) / per_hour)).strftime("%H:%M")
    return {"per_hour": dollars(round(per_hour)), "runs_out_at": runs_out_at}

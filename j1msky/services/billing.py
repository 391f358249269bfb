"""Billing: cost by day, model, provider and key over a range of budget days (usage_daily).

GET /api/billing/usage and the console's billing page both read it through here."""
from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3

from . import budget

COUNT_COLUMNS = ("day", "model", "provider", "key_id", "calls", "input_tokens",
                 "output_tokens")
CSV_COLUMNS = (*COUNT_COLUMNS, "cost", "estimated_cost")
CSV_DISPOSITION = "attachment; filename=j1msky-usage.csv"


def period(config: dict, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    """The range asked for; by default the month to date (in the budget's time zone)."""
    today = dt.date.fromisoformat(budget.today(config))
    start = start or today.replace(day=1)
    return start, end or max(today, start)


def usage_rows(conn: sqlite3.Connection, start: dt.date, end: dt.date) -> list[dict]:
    rows = conn.execute(
        "SELECT day, model, provider, key_id, calls, input_tokens, output_tokens, cost_micros,"
        " estimated_micros FROM usage_daily WHERE day >= ? AND day <= ?"
        " ORDER BY day, model, provider, key_id", (start.isoformat(), end.isoformat())).fetchall()
    return [dict(r) for r in rows]


def totals_by(rows: list[dict], field: str) -> dict:
    totals: dict[str, int] = {}
    for row in rows:
        totals[row[field]] = totals.get(row[field], 0) + row["cost_micros"]
    return {name: budget.dollars(value) for name, value in totals.items()}


def totals(rows: list[dict], start: dt.date, end: dt.date) -> dict:
    """The body of GET /billing/usage for these rows."""
    return {"period": f"{start} to {end}",
            "total_cost": budget.dollars(sum(r["cost_micros"] for r in rows)),
            "estimated_cost_total": budget.dollars(sum(r["estimated_micros"] for r in rows)),
            "total_calls": sum(r["calls"] for r in rows),
            "by_model": totals_by(rows, "model"), "by_day": totals_by(rows, "day"),
            "by_provider": totals_by(rows, "provider"), "by_key": totals_by(rows, "key_id")}


def as_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([*(row[c] for c in COUNT_COLUMNS), budget.dollars(row["cost_micros"]),
                         budget.dollars(row["estimated_micros"])])
    return out.getvalue()

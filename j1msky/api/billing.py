"""/billing/usage: cost by model, day, provider and key over a date range (JSON or CSV)."""
from __future__ import annotations

import csv
import datetime as dt
import io

from flask import Blueprint, Response, request

from ..auth import require_scope
from ..config import current as current_config
from ..db import get_db
from ..schemas import BillingQuery
from ..services import budget

bp = Blueprint("billing", __name__)
COUNT_COLUMNS = ("day", "model", "provider", "key_id", "calls", "input_tokens",
                 "output_tokens")
CSV_COLUMNS = (*COUNT_COLUMNS, "cost", "estimated_cost")


def usage_rows(start: str, end: str) -> list[dict]:
    rows = get_db().execute(
        "SELECT day, model, provider, key_id, calls, input_tokens, output_tokens, cost_micros,"
        " estimated_micros FROM usage_daily WHERE day >= ? AND day <= ?"
        " ORDER BY day, model, provider, key_id", (start, end)).fetchall()
    return [dict(r) for r in rows]


def totals_by(rows: list[dict], field: str) -> dict:
    totals: dict[str, int] = {}
    for row in rows:
        totals[row[field]] = totals.get(row[field], 0) + row["cost_micros"]
    return {name: budget.dollars(value) for name, value in totals.items()}


def as_csv(rows: list[dict]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([*(row[c] for c in COUNT_COLUMNS), budget.dollars(row["cost_micros"]),
                         budget.dollars(row["estimated_micros"])])
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=j1msky-usage.csv"})


@bp.get("/billing/usage")
@require_scope("billing:read")
def usage():
    """Cost over [start, end] (budget days; default month to date)."""
    query = BillingQuery().load(request.args.to_dict())
    today = dt.date.fromisoformat(budget.today(current_config()))
    start = query.get("start") or today.replace(day=1)
    end = query.get("end") or max(today, start)
    rows = usage_rows(start.isoformat(), end.isoformat())
    if query["format"] == "csv":
        return as_csv(rows)
    return {"period": f"{start} to {end}",
            "total_cost": budget.dollars(sum(r["cost_micros"] for r in rows)),
            "estimated_cost_total": budget.dollars(sum(r["estimated_micros"] for r in rows)),
            "total_calls": sum(r["calls"] for r in rows),
            "by_model": totals_by(rows, "model"), "by_day": totals_by(rows, "day"),
            "by_provider": totals_by(rows, "provider"), "by_key": totals_by(rows, "key_id")}

"""/billing: spend by day as a server-drawn SVG chart, by model, provider and key; CSV.

The figures are those of GET /api/billing/usage (services/billing.py)."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, render_template, request
from marshmallow import ValidationError

from ..config import current as current_config
from ..db import get_db
from ..errors import APIError
from ..schemas import BillingQuery
from ..services import billing, budget
from .common import field_errors, needs

bp = Blueprint("billing", __name__, url_prefix="/billing")
MAX_CHART_DAYS = 366
CHART_HEIGHT = 100
BAR_STEP = 10  # viewBox units per day; the SVG stretches to the page's width


def chosen_period(args) -> tuple[dt.date, dt.date]:
    """The start/end form's range (default month to date), or ValidationError."""
    query = BillingQuery().load({k: v for k, v in args.items() if k in ("start", "end") and v})
    return billing.period(current_config(), query.get("start"), query.get("end"))


def day_bars(rows: list[dict], start: dt.date, end: dt.date) -> list[dict]:
    """One bar per day of the range (empty days too): its reported and estimated parts."""
    spent: dict[str, list[int]] = {}
    for row in rows:
        day = spent.setdefault(row["day"], [0, 0])
        day[0] += row["cost_micros"]
        day[1] += row["estimated_micros"]
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    peak = max((cost for cost, _ in spent.values()), default=0) or 1
    bars = []
    for index, day in enumerate(days):
        cost, estimated = spent.get(day.isoformat(), (0, 0))
        height = CHART_HEIGHT * cost / peak
        estimated_height = CHART_HEIGHT * estimated / peak
        bars.append({"day": day.isoformat(), "cost": budget.dollars(cost),
                     "estimated": budget.dollars(estimated), "x": index * BAR_STEP + 1,
                     "y": CHART_HEIGHT - height, "height": height,
                     "reported_height": height - estimated_height})
    return bars


def key_labels(conn, key_ids) -> dict[str, str]:
    """key id -> "name (prefix…)" for the by-key table."""
    ids = list(key_ids)
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT id, name, prefix FROM api_keys WHERE id IN ({marks})", ids)
    return {r["id"]: f"{r['name']} ({r['prefix']}…)" for r in rows}


@bp.get("")
@needs("billing:read")
def index():
    """The chosen range's spend: chart, totals, and by model, provider and key."""
    try:
        start, end = chosen_period(request.args)
        if (end - start).days >= MAX_CHART_DAYS:
            raise ValidationError({"end": [f"choose at most {MAX_CHART_DAYS} days to chart"
                                           " (the CSV takes any range)"]})
    except ValidationError as exc:
        return render_template("billing.html", errors=field_errors(exc), args=request.args,
                               usage=None), 400
    conn = get_db()
    rows = billing.usage_rows(conn, start, end)
    usage = billing.totals(rows, start, end)
    return render_template(
        "billing.html", errors={}, args={"start": start, "end": end}, usage=usage,
        bars=day_bars(rows, start, end), chart_width=BAR_STEP * ((end - start).days + 1),
        chart_height=CHART_HEIGHT, keys=key_labels(conn, usage["by_key"]))


@bp.get("/usage.csv")
@needs("billing:read")
def csv():
    """The rows of the chosen range, as GET /api/billing/usage?format=csv gives them."""
    try:
        start, end = chosen_period(request.args)
    except ValidationError as exc:
        raise APIError(400, " ".join(field_errors(exc).values())) from None
    return Response(billing.as_csv(billing.usage_rows(get_db(), start, end)),
                    mimetype="text/csv", headers={"Content-Disposition": billing.CSV_DISPOSITION})

"""/billing/usage: cost by model, day, provider and key over a date range (JSON or CSV)."""
from __future__ import annotations

from flask import Blueprint, Response, request

from ..auth import require_scope
from ..config import current as current_config
from ..db import get_db
from ..schemas import BillingQuery
from ..services import billing

bp = Blueprint("billing", __name__)


@bp.get("/billing/usage")
@require_scope("billing:read")
def usage():
    """Cost over [start, end] (budget days; default month to date)."""
    query = BillingQuery().load(request.args.to_dict())
    start, end = billing.period(current_config(), query.get("start"), query.get("end"))
    rows = billing.usage_rows(get_db(), start, end)
    if query["format"] == "csv":
        return Response(billing.as_csv(rows), mimetype="text/csv",
                        headers={"Content-Disposition": billing.CSV_DISPOSITION})
    return billing.totals(rows, start, end)

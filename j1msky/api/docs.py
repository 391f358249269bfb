"""/openapi.json: the OpenAPI 3.1 document of this API.

Served without an API key: it describes the API, not anyone's data (the IP rules and
the per-IP rate limit still apply).
"""
from __future__ import annotations

from flask import Blueprint, current_app

from .. import openapi

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 document of this API (the same under /api and /api/v4)."""
    return openapi.document(current_app)

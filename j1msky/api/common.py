"""Small helpers shared by the views."""
from __future__ import annotations

import json

from flask import current_app, request

from ..errors import APIError


def json_body(allow_empty: bool = False) -> dict:
    """The request body as a JSON object, or 400."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return {}
        raise APIError(400, "Request body must be a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "Request body must be a JSON object")
    return body


def data_key():
    """The key that seals encrypt_output agents' task and result (made on first use)."""
    return current_app.extensions["j1msky_data_key"]

"""Small helpers shared by the views."""
from __future__ import annotations

from flask import current_app, request
from flask.json.provider import DefaultJSONProvider

from ..errors import APIError
from ..services import jsontext


def json_body(allow_empty: bool = False) -> dict:
    """The request body as a JSON object, or 400 (also when nested past jsontext.MAX_DEPTH)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return {}
        raise APIError(400, "Request body must be a JSON object")
    try:
        body = jsontext.loads(raw)
    except jsontext.TooDeep as exc:
        raise APIError(400, str(exc)) from None
    except ValueError:
        raise APIError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "Request body must be a JSON object")
    return body


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON with the same nesting bound, so request.get_json (the rate limiter
    reads spawn-batch bodies with it) refuses deep text with a ValueError, never recursing."""

    def loads(self, s, **kwargs):
        return jsontext.loads(s)


def data_key():
    """The key that seals encrypt_output agents' task and result (made on first use)."""
    return current_app.extensions["j1msky_data_key"]

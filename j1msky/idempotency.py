"""Idempotent writes: the view's work and its stored answer commit together."""
from __future__ import annotations

from flask import current_app, g, request

from .db import get_db, transaction
from .services import idempotency

REPLAYED_HEADERS = ("Content-Type", "Location")


def full_path() -> str:
    query = request.query_string.decode("latin-1")
    return request.path + ("?" + query if query else "")


def run(view, *args, **kwargs):
    """Call a write view under the request's Idempotency-Key, if it sent one."""
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return view(*args, **kwargs)
    header = request.headers.get("Idempotency-Key")
    if header is None:
        return view(*args, **kwargs)
    idem_key = idempotency.parse_header(header)
    key_id = g.key["id"]
    conn = get_db()
    fp = idempotency.fingerprint(request.method, full_path(), request.get_data(cache=True))
    stored = idempotency.claim(conn, key_id, idem_key, fp)
    if stored is not None:
        response = current_app.response_class(stored.body, status=stored.status,
                                              headers=stored.headers)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        with transaction(conn):
            response = current_app.make_response(call_view(view, *args, **kwargs))
            if keep(response.status_code):
                headers = {h: response.headers[h] for h in REPLAYED_HEADERS
                           if h in response.headers}
                idempotency.store(conn, key_id, idem_key, response.status_code,
                                  response.get_data(as_text=True), headers)
            else:
                raise Discard(response)
    except Discard as discarded:
        idempotency.release(conn, key_id, idem_key)
        return discarded.response
    except BaseException:
        idempotency.release(conn, key_id, idem_key)
        raise
    return response


def keep(status: int) -> bool:
    return status < 500 and status not in idempotency.NOT_STORED


def call_view(view, *args, **kwargs):
    """The view's response, with its errors turned into responses so they can be stored."""
    try:
        return view(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the app's handlers decide what it means
        return current_app.handle_user_exception(exc)


class Discard(Exception):
    """Roll back the view's work and answer without storing the idempotency key."""

    def __init__(self, response):
        super().__init__()
        self.response = response

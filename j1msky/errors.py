"""One error shape for every failure, and the request id on every response."""
from __future__ import annotations

import logging
import random
import re

from flask import Flask, g, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from .services.pagination import ListError

log = logging.getLogger(__name__)

SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class APIError(Exception):
    """An error the client should see: status, message and optional extras."""

    def __init__(self, status: int, message: str, *, details: dict | None = None,
                 retry_after: int | None = None, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        self.extra = extra


def error_response(status: int, message: str, *, details=None, retry_after=None,
                   headers=None, **extra):
    error = {"code": status, "message": message, "request_id": request_id()}
    if details:
        error["details"] = details
    if retry_after is not None:
        error["retry_after"] = int(retry_after)
        headers = {"Retry-After": str(int(retry_after)), **(headers or {})}
    error.update(extra)
    response = jsonify({"success": False, "error": error})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def request_id() -> str:
    """The client's X-Request-Id when sane, else a new one. An id names a request in logs
    and answers and guards nothing, so it comes from `random`: os.urandom is a system call
    that lets another request thread take the GIL in the middle of every request."""
    rid = g.get("request_id")
    if rid is None:
        incoming = request.headers.get("X-Request-Id", "")
        rid = g.request_id = incoming if SANE_REQUEST_ID.match(incoming) else \
            f"req_{random.getrandbits(96):024x}"
    return rid


def first_message(details: dict) -> str:
    """The first validation message, for the error's headline."""
    for field, value in details.items():
        if isinstance(value, dict):
            return first_message(value)
        message = str(value[0]) if isinstance(value, list) and value else str(value)
        if message == "Unknown field.":
            return f"Unknown field '{field}'"
        if message in GENERIC_MESSAGES:
            return f"{field}: {message}"
        return message
    return "Invalid request"


GENERIC_MESSAGES = {"Missing data for required field.", "Not a valid string.",
                    "Not a valid integer.", "Not a valid boolean.", "Not a valid list.",
                    "Field may not be null.", "Invalid input type.", "Not a valid mapping type."}


def handle_api_error(exc: APIError):
    return error_response(exc.status, exc.message, details=exc.details,
                          retry_after=exc.retry_after, headers=exc.headers, **exc.extra)


def handle_list_error(exc: ListError):
    return error_response(400, exc.message, details=exc.details)


def handle_validation_error(exc: ValidationError):
    details = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    return error_response(400, first_message(details), details=details)


MESSAGES = {404: "Not found", 405: "Method not allowed",
            413: "Request body too large", 429: "Rate limit exceeded"}


def handle_http_exception(exc: HTTPException):
    headers = {}
    if exc.code == 405 and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    return error_response(exc.code or 500, MESSAGES.get(exc.code, exc.name), headers=headers)


def handle_unexpected(exc: Exception):
    log.exception("unhandled error in request %s", request_id())
    return error_response(500, "Internal server error")


def add_request_id(response):
    response.headers["X-Request-Id"] = request_id()
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(APIError, handle_api_error)
    app.register_error_handler(ValidationError, handle_validation_error)
    app.register_error_handler(ListError, handle_list_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
    app.after_request(add_request_id)

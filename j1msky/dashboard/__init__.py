"""The owner's console: server-rendered pages at / on the same services as the API.

One parent blueprint carries what every page shares: the session (signin.py), CSRF and
Sec-Fetch-Site checks on writes, HTML error pages and the security headers. Each page is
a child blueprint in its own module."""
from __future__ import annotations

import hashlib
import hmac
import json

from flask import Blueprint, Flask, g, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from .. import auth
from ..errors import APIError
from ..services import events
from ..services.pagination import ListError
from . import agents, assets, billing, feed, keys, overview, security, settings, signin
from .common import SCOPE_PAGES, has_scope

bp = Blueprint("dashboard", __name__)
csrf = CSRFProtect()

CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none';"
       " form-action 'self'; base-uri 'none'")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SAME_SITE = ("same-origin", "none")  # "none": typed into the address bar, a bookmark


class ConsoleCookies(SecureCookieSessionInterface):
    """Flask's signed cookie (it holds the CSRF token and flash messages), marked Secure
    whenever the request came over HTTPS: plain HTTP on a LAN must keep working. The
    API never uses it, so its requests skip reading it (a tenth of a cheap request)."""

    def open_session(self, app, request):
        if request.path.startswith("/api/"):
            return None  # Flask's null session: nothing stored, no cookie set
        return super().open_session(app, request)

    def get_cookie_secure(self, app) -> bool:
        return request.is_secure


@bp.before_request
def guard_writes():
    """Refuse cross-site writes, then check the CSRF token of every form post."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in SAME_SITE:
        raise APIError(403, "Cross-site request refused")
    csrf.protect()


bp.before_request(signin.load_session)


@bp.before_request
def audit_action():
    """A console action is a use of its session's key: api.key.used at the verbose audit
    level, as the API records for its twin."""
    if request.method not in SAFE_METHODS and g.get("key") is not None:
        auth.audit_key_use()


@bp.after_request
def security_headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if request.endpoint != "dashboard.assets.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def error_page(status: int, message: str):
    if request.path.startswith("/live/"):
        return message, status
    if status == 401 and request.endpoint == "dashboard.signin.login":
        # An automatic block: the sign-in form still takes a valid key.
        return render_template("login.html", error=message), status
    return render_template("error.html", status=status, message=message), status


@bp.errorhandler(APIError)
def api_error(exc: APIError):
    return error_page(exc.status, exc.message)


@bp.errorhandler(ListError)
def list_error(exc: ListError):
    return error_page(400, exc.message)


@bp.errorhandler(CSRFError)
def csrf_error(exc: CSRFError):
    return error_page(400, "This form was not accepted (its security token is missing or"
                           " wrong). Reload the page and try again.")


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return error_page(exc.code or 500, exc.description or exc.name)


for page in (assets.bp, signin.bp, overview.bp, agents.bp, billing.bp, feed.bp, keys.bp,
             settings.bp, security.bp):
    bp.register_blueprint(page)


def json_text(value) -> str:
    """JSON for reading (audit details, event payloads): a plain string, so autoescaped."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def init_app(app: Flask) -> None:
    master = app.extensions["j1msky_master"]
    app.secret_key = hmac.new(master, b"j1msky console cookies", hashlib.sha256).digest()
    app.session_interface = ConsoleCookies()
    app.config.update(SESSION_COOKIE_NAME="j1msky_csrf", SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_HTTPONLY=True, WTF_CSRF_TIME_LIMIT=None,
                      WTF_CSRF_CHECK_DEFAULT=False)
    csrf.init_app(app)
    app.jinja_env.filters["json_text"] = json_text
    app.jinja_env.globals.update(
        asset=assets.asset_url, has_scope=has_scope, scope_pages=SCOPE_PAGES,
        event_types=events.TYPES,
        agent_event_types=[t for t in events.TYPES if t.startswith("agent.")])
    app.register_blueprint(bp)

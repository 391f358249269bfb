"""Sign-in by pasting an API key or by a `j1msky login-link` URL; sign-out; sessions."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from .. import auth, ipguard
from ..config import current as current_config
from ..db import get_db, transaction
from ..errors import APIError
from ..services import sessions
from .common import needs

bp = Blueprint("signin", __name__)
COOKIE = "j1msky_session"
PUBLIC = {"dashboard.signin.login", "dashboard.signin.link", "dashboard.assets.static"}
FAILED = "That key cannot sign in. Check it and try again."


def safe_next(target: str | None) -> str:
    """Only a path on this site: never //host, a scheme, or a backslash trick."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return "/"
    return target


def load_session():
    """Set g.key and g.console_session from the cookie, or send the browser to sign in."""
    if request.endpoint in PUBLIC:
        return None
    token = request.cookies.get(COOKIE)
    found = None
    if token:
        with transaction(get_db()) as conn:
            found = sessions.resume(conn, token, current_config()["dashboard"])
    if found is not None:
        g.console_session, g.key = found
        return None
    if request.path.startswith("/live/"):
        return "Signed out: reload the page to sign in again.", 401
    if token:
        flash("Your session has ended. Sign in again to continue.")
    response = redirect(url_for("dashboard.signin.login", next=request.full_path.rstrip("?")))
    if token:
        response.delete_cookie(COOKIE, path="/")
    return response


def carries_valid_credential() -> bool:
    """A live session cookie, or a sign-in form holding a usable key (ipguard lets these
    through an automatic block, so the owner's mistyped keys cannot lock the owner out)."""
    token = request.cookies.get(COOKIE)
    if token:
        with transaction(get_db()) as conn:
            if sessions.resume(conn, token, current_config()["dashboard"]) is not None:
                return True
    if request.method == "POST" and request.endpoint == "dashboard.signin.login":
        try:
            auth.check_key(request.form.get("key", "").strip())
        except APIError:
            return False
        return True
    return False


def signed_in(key_id: str):
    """Start a session for the key and send the browser on to `next`."""
    old = request.cookies.get(COOKIE)
    with transaction(get_db()) as conn:
        if old:  # a new id at every sign-in; the browser's previous one ends
            sessions.end(conn, sessions.digest(old))
        token = sessions.start(conn, key_id, current_config()["dashboard"],
                               ip=ipguard.client_ip(), user_agent=request.user_agent.string)
    response = redirect(safe_next(request.args.get("next")))
    response.set_cookie(COOKIE, token, path="/", httponly=True, samesite="Lax",
                        secure=request.is_secure)
    return response


def refused(template: str, **context):
    """A failed sign-in: one message whatever the reason; it counts toward auto-block."""
    ipguard.auth_failed()
    return render_template(template, error=FAILED, **context), 401


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in by pasting an API key."""
    if request.method == "GET":
        return render_template("login.html")
    try:
        key = auth.check_key(request.form.get("key", "").strip())
    except APIError:
        return refused("login.html")
    return signed_in(key["id"])


@bp.route("/login/link/<token>", methods=["GET", "POST"])
def link(token: str):
    """A login link: a button to press (a link preview must not use it up)."""
    if request.method == "GET":
        return render_template("login_link.html")
    with transaction(get_db()) as conn:
        key_id = sessions.redeem_link(conn, token)
        key = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if not sessions.key_usable(key):
        return refused("login_link.html")
    return signed_in(key_id)


@bp.post("/logout")
def logout():
    """Sign out: the session row is deleted."""
    with transaction(get_db()) as conn:
        sessions.end(conn, g.console_session["id_hash"])
    response = redirect(url_for("dashboard.signin.login"))
    response.delete_cookie(COOKIE, path="/")
    flash("Signed out.")
    return response


@bp.get("/settings/sessions")
@needs("admin:write")
def sessions_page():
    """Signed-in browsers, with revoke."""
    return render_template("sessions.html", sessions=sessions.list_sessions(get_db()))


@bp.post("/settings/sessions/<id_hash>/revoke")
@needs("admin:write")
def revoke_session(id_hash: str):
    """End another (or this) browser's session."""
    with transaction(get_db()) as conn:
        if not sessions.end(conn, id_hash):
            raise APIError(404, "No such session")
    flash("Session ended.")
    return redirect(url_for(".sessions_page"))

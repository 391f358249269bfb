"""The console's front door: sign-in, sessions, cookies, CSRF, headers, login links."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import sqlite3

import pytest

from j1msky.cli import cli
from j1msky.services import clock
from tests.dashboard.conftest import Browser, page_text
from tests.helpers import configure

GENERIC = "That key cannot sign in. Check it and try again."


def session_rows(app) -> list[tuple]:
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        return conn.execute("SELECT id_hash, key_id FROM console_sessions").fetchall()
    finally:
        conn.close()


def freeze(start: dt.datetime) -> list[dt.datetime]:
    now = [start]
    clock.set_clock(lambda: now[0])
    return now


def test_root_sends_a_signed_out_browser_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/"


def test_sign_in_sets_a_hardened_cookie_and_stores_only_its_hash(app, browser, admin):
    response = browser.sign_in(admin, next_path="/agents")
    assert response.status_code == 302 and response.headers["Location"] == "/agents"
    set_cookie = next(c for c in response.headers.getlist("Set-Cookie")
                      if c.startswith("j1msky_session="))
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/" in set_cookie
    assert "Secure" not in set_cookie  # plain HTTP on a LAN keeps working
    token = browser.cookie("j1msky_session").value
    assert session_rows(app) == [(hashlib.sha256(token.encode()).hexdigest(), admin.key_id)]
    assert browser.get("/agents").status_code == 200


def test_the_cookie_is_secure_when_the_request_came_over_https(app, admin):
    browser = Browser(app.test_client())
    browser.client.get("/login", base_url="https://localhost")
    response = browser.client.post("/login", base_url="https://localhost",
                                   headers={"Referer": "https://localhost/login"},
                                   data={"key": admin.key, "csrf_token": browser.csrf()})
    assert response.status_code == 302, page_text(response)
    cookies = response.headers.getlist("Set-Cookie")
    assert all("Secure" in c for c in cookies) and cookies


def test_each_sign_in_issues_a_new_id_and_ends_the_previous_one(app, browser, admin):
    browser.sign_in(admin)
    first = browser.cookie("j1msky_session").value
    browser.sign_in(admin)
    second = browser.cookie("j1msky_session").value
    assert first != second
    assert [row[0] for row in session_rows(app)] == [hashlib.sha256(second.encode()).hexdigest()]


@pytest.mark.parametrize("kind", ["garbage", "unknown", "revoked", "other environment"])
def test_a_bad_key_gets_one_generic_message_and_no_session(app, browser, keys, client, admin,
                                                           kind):
    if kind == "garbage":
        key = "not a key"
    elif kind == "unknown":
        key = "live_sk_" + "x" * 43
    elif kind == "revoked":
        victim = keys.make("agents:read")
        client.delete(f"/api/keys/{victim.key_id}", headers=admin.headers)
        key = victim.key
    else:
        key = "dev_sk_" + "y" * 43
    response = browser.post("/login", {"key": key})
    assert response.status_code == 401
    assert GENERIC in page_text(response)
    assert browser.cookie("j1msky_session") is None
    assert session_rows(app) == []


def blocked_addresses(app) -> list[str]:
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        return [r[0] for r in conn.execute("SELECT ip FROM blocked_ips")]
    finally:
        conn.close()


def test_failed_sign_ins_count_toward_the_auto_block(app, browser, admin, client):
    configure(app, security={"auth_failures_to_block": 3})
    signed_in = Browser(app.test_client())
    signed_in.sign_in(admin)
    for _ in range(3):
        assert browser.post("/login", {"key": "live_sk_" + "z" * 43}).status_code == 401
    assert blocked_addresses(app) == ["127.0.0.1"]
    refused = browser.post("/login", {"key": "live_sk_" + "z" * 43})
    assert refused.status_code == 401 and "blocked" in page_text(refused).lower()
    form = browser.get("/login")
    assert form.status_code == 401 and 'name="key"' in page_text(form)
    assert client.get("/api/health").status_code == 401
    # An automatic block never stops a valid credential: a session, or the right key.
    assert signed_in.get("/agents").status_code == 200
    assert browser.post("/login", {"key": admin.key}).status_code == 302
    assert browser.get("/").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/x", "/\\evil.example",
                                    "javascript:alert(1)", "evil.example", "/\\/evil.example"])
def test_next_only_leads_to_a_local_path(browser, admin, target):
    response = browser.post("/login?next=" + target, {"key": admin.key})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("end_it", ["revoke", "expire", "suspend"])
def test_a_key_that_stops_working_ends_its_sessions_at_once(app, owner, admin, end_it):
    conn = sqlite3.connect(app.config["DATABASE"])
    column = {"revoke": "revoked_at", "expire": "expires_at", "suspend": "suspended_until"}[end_it]
    moment = clock.iso(clock.now() + dt.timedelta(hours=1 if end_it == "suspend" else -1))
    conn.execute(f"UPDATE api_keys SET {column} = ? WHERE id = ?", (moment, admin.key_id))
    conn.commit()
    conn.close()
    response = owner.get("/agents?status=running")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/agents?status%3Drunning"
    assert session_rows(app) == []
    notice = owner.get(response.headers["Location"])
    assert "Your session has ended" in page_text(notice)


def test_revoking_through_the_api_signs_the_browser_out(app, owner, admin, keys, client):
    other = keys.make("admin:write")
    assert client.delete(f"/api/keys/{admin.key_id}", headers=other.headers).status_code == 200
    assert owner.get("/").status_code == 302


def test_idle_timeout_and_absolute_lifetime_come_from_config(app, browser, admin):
    configure(app, dashboard={"idle_timeout_minutes": 30, "session_lifetime_hours": 2})
    now = freeze(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    assert browser.sign_in(admin).status_code == 302
    assert browser.get("/").status_code == 200
    for _ in range(4):  # used every 25 minutes: the idle clock restarts each time
        now[0] += dt.timedelta(minutes=25)
        assert browser.get("/").status_code == 200
    now[0] += dt.timedelta(minutes=25)  # 2h05 after sign-in: past the absolute lifetime
    assert browser.get("/").status_code == 302
    browser.sign_in(admin)
    now[0] += dt.timedelta(minutes=31)
    assert browser.get("/").status_code == 302


def test_the_scheduled_job_purges_ended_sessions_and_links(app, browser, keys, admin,
                                                          cli_runner):
    from j1msky import scheduler
    configure(app, dashboard={"idle_timeout_minutes": 30, "session_lifetime_hours": 2})
    now = freeze(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    browser.sign_in(admin)  # idles out
    assert cli_runner.invoke(cli, ["login-link"]).exit_code == 0  # expires after 10 minutes
    now[0] += dt.timedelta(minutes=20)
    fresh = Browser(app.test_client())
    fresh.sign_in(admin)  # still live at the purge
    now[0] += dt.timedelta(minutes=15)
    assert len(session_rows(app)) == 2
    with app.app_context():
        assert scheduler.purge_console_sessions() == 1
    assert len(session_rows(app)) == 1 and fresh.get("/").status_code == 200
    conn = sqlite3.connect(app.config["DATABASE"])
    assert conn.execute("SELECT count(*) FROM console_login_links").fetchone()[0] == 0
    conn.close()
    assert (scheduler.purge_console_sessions, {"trigger": "interval", "minutes": 10}) \
        in scheduler.JOBS
    assert "console_sessions: 0 removed" in cli_runner.invoke(cli, ["purge"]).output


def test_a_tampered_cookie_goes_back_to_sign_in_with_a_notice_then_to_the_page(browser, admin):
    browser.client.set_cookie("j1msky_session", "forged-value")
    response = browser.get("/settings/keys")
    assert response.headers["Location"] == "/login?next=/settings/keys"
    assert "Your session has ended" in page_text(browser.get(response.headers["Location"]))
    back = browser.sign_in(admin, next_path="/settings/keys")
    assert back.headers["Location"] == "/settings/keys"


def test_sign_out_deletes_the_session_row(app, owner):
    response = owner.post("/logout")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert session_rows(app) == []
    assert owner.get("/").status_code == 302


def test_a_post_without_or_with_a_wrong_csrf_token_changes_nothing(app, owner, client, admin):
    before = len(client.get("/api/keys", headers=admin.headers).json["data"])
    for data in ({"name": "x", "scopes": "agents:read"},
                 {"name": "x", "scopes": "agents:read", "csrf_token": "wrong"}):
        response = owner.post("/settings/keys", data, csrf=False)
        assert response.status_code == 400
        assert "security token" in page_text(response)
    assert len(client.get("/api/keys", headers=admin.headers).json["data"]) == before


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_cross_site_post_is_refused(app, owner, client, admin, site):
    response = owner.post("/settings/keys", {"name": "x", "scopes": "agents:read"},
                          headers={"Sec-Fetch-Site": site})
    assert response.status_code == 403
    assert "Cross-site request refused" in page_text(response)
    assert len(client.get("/api/keys", headers=admin.headers).json["data"]) == 1


def test_tokens_do_not_expire_so_an_old_tab_still_works(app, browser, admin):
    configure(app, dashboard={"idle_timeout_minutes": 10_000, "session_lifetime_hours": 1000})
    now = freeze(clock.now())
    owner = browser
    owner.sign_in(admin)
    token = owner.csrf()
    now[0] += dt.timedelta(days=3)
    assert owner.post("/settings/keys", {"name": "late", "scopes": "agents:read",
                                         "csrf_token": token}).status_code == 200


CONSOLE_PAGES = ("/", "/agents", "/agents/new", "/billing", "/events", "/webhooks",
                 "/settings/keys", "/settings/sessions", "/settings/limits", "/settings/security",
                 "/settings/audit")


@pytest.mark.parametrize("path", ["/login", "/agents/nope", "/billing/usage.csv",
                                  *CONSOLE_PAGES])
def test_every_console_response_carries_the_security_headers(owner, path):
    response = owner.get(path)
    csp = response.headers["Content-Security-Policy"]
    for part in ("default-src 'self'", "frame-ancestors 'none'", "form-action 'self'",
                 "base-uri 'none'"):
        assert part in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"


def test_pages_hold_no_inline_script_or_style(owner):
    for path in CONSOLE_PAGES:
        html = page_text(owner.get(path))
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert "style=" not in html and "<style" not in html, path
        assert not re.search(r"\son[a-z]+=", html), path


def test_a_session_cookie_never_authenticates_the_api(owner):
    for path in ("/api/agents", "/api/keys", "/api/health"):
        response = owner.client.get(path)
        assert response.status_code == 401, path
        assert response.json["error"]["message"].startswith("Missing API key")


def test_static_files_have_fingerprinted_names_and_a_year_of_cache(owner):
    html = page_text(owner.get("/"))
    css = re.search(r'href="(/static/vendor/pico\.min\.[0-9a-f]{12}\.css)"', html).group(1)
    response = owner.client.get(css)
    assert response.status_code == 200 and response.data.startswith(b"@charset") or \
        b"pico" in response.data[:400].lower()
    assert "max-age=31536000" in response.headers["Cache-Control"]
    assert "immutable" in response.headers["Cache-Control"]
    assert owner.client.get("/static/vendor/pico.min.css").status_code == 404
    assert owner.client.get("/static/vendor/pico.min.000000000000.css").status_code == 404


def test_a_read_only_key_gets_a_403_page_on_admin_forms(app, browser, keys, client, admin):
    reader = keys.make("agents:read")
    browser.sign_in(reader)
    assert browser.get("/settings/keys").status_code == 403
    response = browser.post("/settings/keys", {"name": "x", "scopes": "admin:write"})
    assert response.status_code == 403
    assert "lacks the &#39;admin:write&#39; scope" in page_text(response)
    assert len(client.get("/api/keys", headers=admin.headers).json["data"]) == 2
    nav = page_text(browser.get("/agents"))
    assert "API keys" not in nav and "Spawn" not in nav


# -- login links ---------------------------------------------------------------------------

def link_from(cli_runner, *args) -> str:
    result = cli_runner.invoke(cli, args=["login-link", *args])
    assert result.exit_code == 0, result.output
    url = re.search(r"http://\S+", result.output).group(0)
    assert ":8080/login/link/" in url
    return url[url.index("/login/link/"):]


def test_a_login_link_signs_in_once(app, cli_runner, admin, keys):
    path = link_from(cli_runner)
    browser = Browser(app.test_client())
    page = browser.get(path)  # a link preview must not use it up
    assert page.status_code == 200 and "Sign in with this link" in page_text(page)
    response = browser.post(path)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert session_rows(app)[0][1] == admin.key_id
    again = Browser(app.test_client()).post(path)
    assert again.status_code == 401 and "cannot sign you in" in page_text(again)


def test_a_login_link_expires_after_ten_minutes(app, cli_runner, admin):
    now = freeze(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    path = link_from(cli_runner)
    now[0] += dt.timedelta(minutes=10, seconds=1)
    assert Browser(app.test_client()).post(path).status_code == 401
    assert session_rows(app) == []


def test_login_link_for_a_named_key_and_refusals(app, cli_runner, keys, admin, client):
    reader = keys.make("agents:read")
    browser = Browser(app.test_client())
    browser.post(link_from(cli_runner, "--key-id", reader.key_id))
    assert session_rows(app)[0][1] == reader.key_id
    client.delete(f"/api/keys/{reader.key_id}", headers=admin.headers)
    result = cli_runner.invoke(cli, args=["login-link", "--key-id", reader.key_id])
    assert result.exit_code == 1 and "cannot sign in" in result.output


def test_login_link_without_an_admin_key_says_how_to_make_one(cli_runner):
    result = cli_runner.invoke(cli, args=["login-link"])
    assert result.exit_code == 1 and "no active admin key" in result.output


def test_sessions_page_lists_and_revokes_other_browsers(app, owner, admin):
    other = Browser(app.test_client())
    other.sign_in(admin)
    page = page_text(owner.get("/settings/sessions"))
    assert page.count("Revoke") == 2 and "this browser" in page
    other_hash = hashlib.sha256(other.cookie("j1msky_session").value.encode()).hexdigest()
    response = owner.post(f"/settings/sessions/{other_hash}/revoke")
    assert response.status_code == 302
    assert other.get("/").status_code == 302
    assert owner.get("/").status_code == 200
    assert owner.post("/settings/sessions/nope/revoke").status_code == 404

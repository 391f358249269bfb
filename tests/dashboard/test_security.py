"""Settings → Security: the IP allow list editor, blocked addresses, the audit log."""
from __future__ import annotations

import html
import json
import re

import pytest
from markupsafe import escape

from tests.dashboard.conftest import page_text
from tests.dashboard.test_pages import XSS_TASK, audit_events
from tests.helpers import configure


def allow_form(allowed="", enforce=True, proxies="", log_violations=True) -> dict:
    form = {"allowed_ips": allowed, "trusted_proxies": proxies}
    if enforce:
        form["enforce"] = "1"
    if log_violations:
        form["log_violations"] = "1"
    return form


def config_text(app) -> str:
    with open(app.config["CONFIG_PATH"]) as fh:
        return fh.read()


def test_the_page_says_your_address(owner):
    text = page_text(owner.get("/settings/security"))
    assert 'Your address is <strong class="wrap" id="your-ip">127.0.0.1</strong>' in text
    address = page_text(owner.get("/settings/security", environ_base={"REMOTE_ADDR": "10.0.0.7"}))
    assert ">10.0.0.7</strong>" in address


def test_saving_the_allow_list_is_the_apis_put(app, owner, client, admin):
    response = owner.post("/settings/security/allow-list",
                          allow_form("127.0.0.1/32\n  10.0.0.0/8\n\n", proxies="192.168.1.1"))
    assert response.status_code == 302
    api = client.get("/api/security/ip-whitelist", headers=admin.headers).json
    assert api == {"allowed_ips": ["127.0.0.1/32", "10.0.0.0/8"], "enforce": True,
                   "log_violations": True, "trusted_proxies": ["192.168.1.1"]}
    assert json.loads(config_text(app))["security"]["allowed_ips"] == ["127.0.0.1/32", "10.0.0.0/8"]
    assert "config.change" in audit_events(app)
    text = page_text(owner.get("/settings/security"))
    assert "The allow list is saved." in text and "127.0.0.1/32\n10.0.0.0/8</textarea>" in text


def test_a_list_that_locks_you_out_is_refused_and_changes_nothing(app, owner):
    before = config_text(app)
    response = owner.post("/settings/security/allow-list", allow_form("10.0.0.0/8"))
    assert response.status_code == 409
    text = page_text(response)
    assert re.search(r'<small class="error" id="allowed_ips-error">Refusing to lock you out: your'
                     r' address 127.0.0.1 is not in allowed_ips', text)
    assert "10.0.0.0/8</textarea>" in text  # what was typed stays in the box
    assert config_text(app) == before
    # Not enforced, the same list is fine.
    assert owner.post("/settings/security/allow-list",
                      allow_form("10.0.0.0/8", enforce=False)).status_code == 302


@pytest.mark.parametrize("field, form, message", [
    ("allowed_ips", allow_form("not-an-ip"), "'not-an-ip' is not an IP address or CIDR network"),
    ("allowed_ips", allow_form("127.0.0.1/8"), "'127.0.0.1/8' has host bits set; did you mean"
                                               " '127.0.0.0/8'?"),
    ("trusted_proxies", allow_form(proxies="<script>"),
     "'<script>' is not an IP address or CIDR network"),
])
def test_bad_entries_are_shown_next_to_the_field(app, owner, field, form, message):
    before = config_text(app)
    response = owner.post("/settings/security/allow-list", form)
    assert response.status_code == 400
    assert f'<small class="error" id="{field}-error">{escape(message)}</small>' in page_text(response)
    assert config_text(app) == before


def test_block_and_unblock_an_address(app, owner, client, admin):
    response = owner.post("/settings/security/block", {"ip": "10.9.9.9", "reason": "<b>scan</b>",
                                                       "duration_hours": "2"})
    assert response.status_code == 302
    [block] = client.get("/api/security/blocked-ips", headers=admin.headers).json["data"]
    assert block["ip"] == "10.9.9.9" and block["reason"] == "<b>scan</b>"
    assert block["expires_at"] is not None and block["source"] == "manual"
    text = page_text(owner.get("/settings/security"))
    assert "Blocked 10.9.9.9." in text and "&lt;b&gt;scan&lt;/b&gt;" in text
    assert client.get("/api/health", environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 403
    assert owner.post("/settings/security/blocked/10.9.9.9/unblock").status_code == 302
    assert client.get("/api/security/blocked-ips", headers=admin.headers).json["data"] == []
    assert "Unblocked 10.9.9.9." in page_text(owner.get("/settings/security"))
    missing = owner.post("/settings/security/blocked/10.9.9.9/unblock")
    assert missing.status_code == 404 and "IP 10.9.9.9 is not blocked" in page_text(missing)


@pytest.mark.parametrize("form, field, message", [
    ({"ip": "127.0.0.1"}, "ip", "Refusing to block your own address"),
    ({"ip": "10.0.0.0/8"}, "ip", "'10.0.0.0/8' is a network; block a single IP address"),
    ({"ip": "10.1.1.1", "duration_hours": "soon"}, "duration_hours",
     "duration_hours must be a number of hours"),
    ({"ip": "10.1.1.1", "duration_hours": "0"}, "duration_hours",
     "duration_hours must be more than 0 and at most 8760"),
    ({"ip": "10.1.1.1", "reason": "x" * 201}, "reason", "reason must be 1 to 200 characters"),
])
def test_bad_blocks_are_refused_next_to_the_field(app, owner, client, admin, form, field,
                                                  message):
    response = owner.post("/settings/security/block", form)
    assert response.status_code in (400, 409)
    assert f'<small class="error" id="{field}-error">{escape(message)}</small>' in page_text(response)
    assert client.get("/api/security/blocked-ips", headers=admin.headers).json["data"] == []


def test_the_audit_log_filters_pages_and_escapes(app, owner, client, admin):
    for n in range(3):
        client.post("/api/spawn", headers=admin.headers,
                    json={"model": "k2p5", "task": XSS_TASK if n == 0 else f"task {n}"})
    owner.post("/settings/security/allow-list", allow_form("127.0.0.1/32", enforce=False))
    text = page_text(owner.get("/settings/audit"))
    assert "4 entries" in text and text.count("<code>agent.spawn</code>") == 3
    assert html.escape("<img src=x onerror=alert(1)>") in text and "<img src=x" not in text
    assert "<script>document" not in text
    only = page_text(owner.get("/settings/audit?event=config.change&severity=warning"))
    assert "1 entry" in only and "agent.spawn</code>" not in only
    assert '<dt>section</dt><dd class="text">security</dd>' in only
    first = page_text(owner.get("/settings/audit?limit=2"))
    assert first.count('<li>\n    <span class="row">') == 2
    next_link = html.unescape(re.search(r'href="(/settings/audit\?[^"]*cursor=[^"]+)"', first).group(1))
    second = page_text(owner.get(next_link))
    assert second.count('<li>\n    <span class="row">') == 2 and "First page" in second
    bad = owner.get("/settings/audit?severity=loud&sort=sideways")
    assert bad.status_code == 400


def test_security_pages_need_admin_write(app, browser, keys, owner):
    reader = keys.make("agents:read", "agents:write", "billing:read")
    browser.sign_in(reader)
    for path in ("/settings/security", "/settings/audit"):
        assert browser.get(path).status_code == 403
    before = config_text(app)
    for path, form in (("/settings/security/allow-list", allow_form("10.0.0.0/8", enforce=False)),
                       ("/settings/security/block", {"ip": "10.2.2.2"})):
        assert browser.post(path, form).status_code == 403
    assert config_text(app) == before


def test_console_actions_are_audited_like_their_api_twins(app, owner, client, admin):
    configure(app, audit={"log_level": "verbose"})
    client.post("/api/security/block-ip", headers=admin.headers, json={"ip": "10.5.5.5"})
    owner.post("/settings/security/block", {"ip": "10.6.6.6"})
    owner.post("/settings/security/blocked/10.6.6.6/unblock")
    owner.get("/settings/security")  # reading is not an action
    text = html.unescape(page_text(owner.get("/settings/audit?event=api.key.used")))
    for path in ("/api/security/block-ip", "/settings/security/block",
                 "/settings/security/blocked/10.6.6.6/unblock"):
        assert f'<dt>path</dt><dd class="text">{path}</dd>' in text
    assert '<dd class="text">/settings/security</dd>' not in text
    configure(app, audit={"log_level": "standard"})
    before = audit_events(app)
    owner.post("/settings/security/block", {"ip": "10.7.7.7"})
    assert audit_events(app) == before  # as POST /api/security/block-ip at this level

"""Console events feed and webhooks: the same services as /api/events and /api/webhooks."""
from __future__ import annotations

import html
import re
import time

import pytest
from markupsafe import escape

from tests.dashboard.conftest import page_text
from tests.dashboard.test_pages import XSS_TASK
from tests.helpers import configure

LOCAL_HOOKS = {"allowed_networks": ["127.0.0.0/8"], "retry_schedule_seconds": [0.1]}


def spawn(client, key, task="hello"):
    response = client.post("/api/spawn", headers=key.headers, json={"model": "k2p5", "task": task})
    assert response.status_code == 202, response.json
    return response.json["agent_id"]


# -- the feed ------------------------------------------------------------------------------

def test_the_feed_shows_events_newest_first_with_their_data_escaped(app, owner, client, admin):
    first = spawn(client, admin, XSS_TASK)
    second = spawn(client, admin)
    text = page_text(owner.get("/events"))
    assert text.index(second) < text.index(first)
    assert "<code>agent.spawned</code>" in text
    assert html.escape("<img src=x onerror=alert(1)>") in text
    assert "<img src=x" not in text and "<script>document" not in text
    live = page_text(owner.get("/live/feed"))
    assert "<html" not in live and second in live


def test_the_type_filter_applies_to_the_list_and_the_live_stream(app, owner, client, admin):
    agent_id = spawn(client, admin)
    assert client.delete(f"/api/agent/{agent_id}", headers=admin.headers).status_code == 200
    text = page_text(owner.get("/events?type=agent.cancelled"))
    assert "<code>agent.cancelled</code>" in text and "<code>agent.spawned</code>" not in text
    assert 'data-events="/live/events?type=agent.cancelled"' in text
    assert 'data-event-types="agent.cancelled"' in text
    assert 'data-live="/live/feed?type=agent.cancelled"' in text
    assert "No events of type budget.alert yet." in page_text(owner.get("/events?type=budget.alert"))
    bad = owner.get("/events?type=<b>nope</b>")
    assert bad.status_code == 400 and "unknown event type &#39;&lt;b&gt;nope" in page_text(bad)


def test_the_feed_pages_to_older_events(app, owner, client, keys):
    busy = keys.make("agents:write", max_concurrent=50)
    ids = [spawn(client, busy, f"task {n}") for n in range(32)]
    first = page_text(owner.get("/events"))
    assert ids[-1] in first and ids[1] not in first and "data-live" in first
    older = html.unescape(re.search(r'href="(/events\?cursor=[^"]+)"', first).group(1))
    second = page_text(owner.get(older))
    assert ids[1] in second and ids[0] in second and ids[-1] not in second
    assert "data-live" not in second and "Newest" in second  # only the newest page is live


def test_the_feed_needs_agents_read(browser, keys, owner):
    browser.sign_in(keys.make("billing:read"))
    assert browser.get("/events").status_code == 403
    assert browser.get("/live/feed").status_code == 403


# -- webhooks ------------------------------------------------------------------------------

def register_form(url, events=("agent.completed",), secret="") -> dict:
    return {"url": url, "events": list(events), "secret": secret}


def test_register_shows_the_secret_once(app, owner, client, admin, webhook_receiver):
    configure(app, webhooks=LOCAL_HOOKS)
    response = owner.post("/webhooks", register_form(webhook_receiver.url + "/hook",
                                                     ("agent.completed", "agent.failed")))
    assert response.status_code == 200
    text = page_text(response)
    secret = re.search(r'<code id="webhook-secret">(whsec_[^<]+)</code>', text).group(1)
    assert "shown only this once" in text and 'data-copy="webhook-secret"' in text
    [hook] = client.get("/api/webhooks", headers=admin.headers).json["data"]
    assert hook["url"] == webhook_receiver.url + "/hook"
    assert hook["events"] == ["agent.completed", "agent.failed"]
    for page in ("/webhooks", f"/webhooks/{hook['id']}"):
        shown = page_text(owner.get(page))
        assert webhook_receiver.url in shown and secret not in shown
    given = owner.post("/webhooks", register_form(webhook_receiver.url + "/b", secret="s3cret-long"))
    assert "the secret you gave" in page_text(given) and "s3cret-long" not in page_text(given)


@pytest.mark.parametrize("form, field, message", [
    (register_form("ftp://example.com/x"), "url", "url must be an absolute http or https URL"),
    (register_form("http://127.0.0.1:9/hook", events=()), "events",
     "events must name at least one event"),
    (register_form("http://127.0.0.1:9/hook", secret="short"), "secret",
     "Length must be between 8 and 200."),
])
def test_bad_registrations_are_shown_next_to_the_field(app, owner, client, admin, form, field,
                                                       message):
    configure(app, webhooks=LOCAL_HOOKS)
    response = owner.post("/webhooks", form)
    assert response.status_code == 400
    assert f'<small class="error" id="{field}-error">{escape(message)}' in page_text(response)
    assert client.get("/api/webhooks", headers=admin.headers).json["data"] == []


def test_a_refused_destination_is_the_apis_message(app, owner, client, admin):
    response = owner.post("/webhooks", register_form("http://127.0.0.1:9/<b>x</b>"))
    assert response.status_code == 400
    text = page_text(response)
    assert '<small class="error" id="url-error">Webhook URL refused: &#39;127.0.0.1&#39; resolves' in text
    assert 'value="http://127.0.0.1:9/&lt;b&gt;x&lt;/b&gt;"' in text
    assert client.get("/api/webhooks", headers=admin.headers).json["data"] == []


def test_send_a_test_and_read_the_deliveries_log(app, owner, admin, client, webhook_receiver,
                                                 start_dispatcher):
    configure(app, webhooks=LOCAL_HOOKS)
    start_dispatcher()
    webhook_receiver.set("/hook", status=500, fail_times=1)
    owner.post("/webhooks", register_form(webhook_receiver.url + "/hook"))
    [hook] = client.get("/api/webhooks", headers=admin.headers).json["data"]
    response = owner.post(f"/webhooks/{hook['id']}/test")
    assert response.status_code == 302
    webhook_receiver.wait_for(2, "/hook")
    deadline = time.monotonic() + 5
    while "delivered" not in (text := page_text(owner.get(f"/webhooks/{hook['id']}"))):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "<code>webhook.test</code>" in text and "2 attempts" in text
    assert re.search(r"</time> · <strong>500</strong> · \d+ ms", text)
    assert re.search(r"</time> · <strong>200</strong> · \d+ ms", text)


def test_delete_asks_first(app, owner, client, admin, webhook_receiver):
    configure(app, webhooks=LOCAL_HOOKS)
    owner.post("/webhooks", register_form(webhook_receiver.url + "/hook"))
    [hook] = client.get("/api/webhooks", headers=admin.headers).json["data"]
    confirm = owner.get(f"/webhooks/{hook['id']}/delete")
    assert "Delete this webhook?" in page_text(confirm)
    assert len(client.get("/api/webhooks", headers=admin.headers).json["data"]) == 1
    assert owner.post(f"/webhooks/{hook['id']}/delete").status_code == 302
    assert client.get("/api/webhooks", headers=admin.headers).json["data"] == []
    assert owner.get(f"/webhooks/{hook['id']}").status_code == 404
    assert owner.post(f"/webhooks/{hook['id']}/test").status_code == 404


def test_webhooks_need_admin_write(app, browser, keys, owner, client, admin, webhook_receiver):
    configure(app, webhooks=LOCAL_HOOKS)
    owner.post("/webhooks", register_form(webhook_receiver.url + "/hook"))
    [hook] = client.get("/api/webhooks", headers=admin.headers).json["data"]
    browser.sign_in(keys.make("agents:read", "agents:write", "billing:read"))
    assert "Webhooks</a>" not in page_text(browser.get("/events"))
    for path in ("/webhooks", f"/webhooks/{hook['id']}", f"/webhooks/{hook['id']}/delete"):
        assert browser.get(path).status_code == 403
    for path in (f"/webhooks/{hook['id']}/delete", f"/webhooks/{hook['id']}/test"):
        assert browser.post(path).status_code == 403
    assert browser.post("/webhooks", register_form(webhook_receiver.url + "/x")).status_code == 403
    assert len(client.get("/api/webhooks", headers=admin.headers).json["data"]) == 1

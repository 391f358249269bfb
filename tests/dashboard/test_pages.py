"""Console pages through the Flask test client: overview, agents, keys."""
from __future__ import annotations

import html
import re
import sqlite3

import pytest

from tests.dashboard.conftest import Browser, page_text
from tests.helpers import agent_count, configure, wait_for

XSS_TASK = '<img src=x onerror=alert(1)>\n<script>document.title="pwned"</script>'


def spawn_form(**fields) -> dict:
    return {"task": "Write a haiku", "model": "k2p5", "priority": "normal",
            "task_type": "general", "complexity": "medium", "action": "spawn", **fields}


def audit_events(app) -> list[str]:
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        return [r[0] for r in conn.execute("SELECT event FROM audit_log ORDER BY id")]
    finally:
        conn.close()


def spawned_id(response) -> str:
    assert response.status_code == 302, page_text(response)
    return response.headers["Location"].rsplit("/", 1)[1]


# -- overview ------------------------------------------------------------------------------

def test_overview_shows_spend_forecast_providers_vitals_agents_and_events(app, owner, client,
                                                                          admin, start_runner):
    start_runner()
    agent_id = client.post("/api/spawn", headers=admin.headers,
                           json={"model": "k2p5", "task": "hello"}).json["agent_id"]
    wait_for(client, admin, agent_id)
    status = client.get("/api/orchestrator/status", headers=admin.headers).json
    text = page_text(owner.get("/"))
    spend = status["today_spend"]
    assert f"${spend:.4f}" in text or f"${spend:.2f}" in text
    assert f"of ${status['daily_budget']:.2f}" in text
    assert "forecast of" in text and "Burn rate" in text
    assert "anthropic" in text and "kimi-coding" in text and "calls" in text
    for vital in ("CPU temperature", "Load", "Memory used", "Disk free", "Uptime", "Database"):
        assert vital in text
    assert re.search(r"completed</span> <strong>1</strong>", text)
    assert "agent.completed" in text and agent_id in text
    live = owner.get("/live/overview")
    assert live.status_code == 200 and "<html" not in page_text(live)
    assert "Today's spend" in page_text(live)


def test_the_budget_gauge_takes_the_alert_level_colour(app, owner):
    conn = sqlite3.connect(app.config["DATABASE"])
    from j1msky.services import budget
    day = budget.today(app.extensions["j1msky_config"].get())
    daily = app.extensions["j1msky_config"].get()["budget"]["daily"]
    conn.execute("INSERT INTO budget_days (day, spent_micros, reserved_micros) VALUES (?, ?, 0)",
                 (day, int(daily * 0.95 * 1_000_000)))
    conn.commit()
    conn.close()
    text = page_text(owner.get("/"))
    assert 'class="fill level-critical"' in text and "95.0% used" in text
    assert "At this rate the budget runs out at" in text or "lasts the day" in text


def test_a_huge_budget_at_a_tiny_rate_lasts_the_day(app, owner):
    configure(app, budget={"daily": 1_000_000_000, "monthly_ceiling": 1_000_000_000})
    conn = sqlite3.connect(app.config["DATABASE"])
    from j1msky.services import budget
    day = budget.today(app.extensions["j1msky_config"].get())
    conn.execute("INSERT INTO budget_days (day, spent_micros, reserved_micros) VALUES (?, 1, 0)",
                 (day,))
    conn.commit()
    conn.close()
    response = owner.get("/")  # the run-out moment would be past any date's range
    assert response.status_code == 200 and "At this rate the budget lasts the day." in \
        page_text(response)


def test_the_live_fragment_without_a_session_is_401_not_a_redirect(client):
    response = client.get("/live/overview")
    assert response.status_code == 401


def test_a_key_without_agents_read_cannot_see_the_overview(app, browser, keys):
    browser.sign_in(keys.make("billing:read"))
    assert browser.get("/").status_code == 403


# -- agents --------------------------------------------------------------------------------

def test_spawn_from_the_form_runs_and_audits_like_the_api(app, owner, start_runner, client,
                                                          admin):
    start_runner()
    agent_id = spawned_id(owner.post("/agents/new", spawn_form()))
    agent = wait_for(client, admin, agent_id)
    assert agent["status"] == "completed" and agent["model"] == "k2p5"
    assert "agent.spawn" in audit_events(app)
    page = page_text(owner.get(f"/agents/{agent_id}"))
    assert html.escape(agent["result"], quote=True) in page or agent["result"] in page
    assert "Run again" in page and "Erase data" in page


@pytest.mark.parametrize("fields, message", [
    ({"task": "   "}, "Task cannot be empty"),
    ({"model": "gpt-9"}, "Model must be one of: k2p5, sonnet, opus"),
    ({"priority": "urgent"}, "Priority must be one of: low, normal, high"),
    ({"timeout": "99999"}, "Timeout must be between 1 and"),
    ({"timeout": "soon"}, "Timeout must be a whole number of seconds"),
])
def test_bad_spawn_forms_show_the_apis_message_next_to_the_field(app, owner, fields, message):
    response = owner.post("/agents/new", spawn_form(**fields))
    assert response.status_code == 400
    assert message in html.unescape(page_text(response))
    assert 'aria-invalid="true"' in page_text(response)
    assert agent_count(app) == 0


def test_recommend_shows_model_reason_and_cost_before_spawning(app, owner):
    form = spawn_form(model="recommend", action="recommend", task_type="coding")
    page = page_text(owner.post("/agents/new", form))
    assert "Recommended: <strong>" in page and "about $" in page and "choice for" in page
    assert agent_count(app) == 0
    fragment = owner.post("/agents/recommend", form)
    assert fragment.status_code == 200 and "<html" not in page_text(fragment)
    assert "Recommended:" in page_text(fragment) and "choice for" in page_text(fragment)
    assert owner.post("/agents/recommend", spawn_form(task_type="nope")).status_code == 400
    agent_id = spawned_id(owner.post("/agents/new", {**form, "action": "spawn"}))
    assert agent_id.startswith("subagent_")


def test_budget_refusal_is_shown_on_the_form_and_nothing_is_stored(app, owner):
    configure(app, budget={"daily": 0.0})
    response = owner.post("/agents/new", spawn_form())
    assert response.status_code == 429
    assert "Daily budget" in page_text(response)
    assert agent_count(app) == 0


def test_spawn_a_team_and_see_its_steps(app, owner, start_runner, client, admin):
    start_runner()
    agent_id = spawned_id(owner.post("/agents/team", {"task": "Plan a garden",
                                                      "team": "team_research",
                                                      "priority": "normal"}))
    wait_for(client, admin, agent_id)
    page = page_text(owner.get(f"/agents/{agent_id}"))
    assert "Team steps" in page and page.count("<li><strong>") >= 2
    bad = owner.post("/agents/team", {"task": "x", "team": "team_nope"})
    assert bad.status_code == 400 and "Team must be one of" in page_text(bad)


def test_cancel_asks_first_then_cancels(app, owner, client, admin):
    agent_id = spawned_id(owner.post("/agents/new", spawn_form()))  # no runner: it waits
    confirm = owner.get(f"/agents/{agent_id}/cancel")
    assert "Cancel this agent?" in page_text(confirm)
    assert client.get(f"/api/agent/{agent_id}", headers=admin.headers).json["status"] == "spawning"
    response = owner.post(f"/agents/{agent_id}/cancel")
    assert response.status_code == 302
    assert client.get(f"/api/agent/{agent_id}", headers=admin.headers).json["status"] == "cancelled"
    again = owner.post(f"/agents/{agent_id}/cancel")
    assert again.status_code == 409 and "Agent already cancelled" in page_text(again)


def test_run_again_makes_a_new_agent_with_the_same_parameters(app, owner, client, admin):
    first = spawned_id(owner.post("/agents/new", spawn_form(priority="high", timeout="60")))
    owner.post(f"/agents/{first}/cancel")
    second = spawned_id(owner.post(f"/agents/{first}/again"))
    assert second != first
    a, b = (client.get(f"/api/agent/{i}", headers=admin.headers).json for i in (first, second))
    for field in ("task", "model", "priority", "timeout", "team", "privacy"):
        assert a[field] == b[field]


def test_erase_asks_first_refuses_while_running_and_keeps_the_cost(app, owner, client, admin):
    agent_id = spawned_id(owner.post("/agents/new", spawn_form()))
    refused = owner.post(f"/agents/{agent_id}/erase")
    assert refused.status_code == 409 and "cancel it before erasing" in page_text(refused)
    owner.post(f"/agents/{agent_id}/cancel")
    assert "Erase this agent" in page_text(owner.get(f"/agents/{agent_id}/erase"))
    assert owner.post(f"/agents/{agent_id}/erase").status_code == 302
    agent = client.get(f"/api/agent/{agent_id}", headers=admin.headers).json
    assert agent["task"] is None and agent["data_erased_at"]
    assert owner.post(f"/agents/{agent_id}/again").status_code == 409


def agent_list(response) -> str:
    return re.search(r'<ul class="agent-list">.*?</ul>', page_text(response), re.S).group(0)


def test_the_list_filters_sorts_and_pages_by_cursor(app, owner):
    ids = [spawned_id(owner.post("/agents/new", spawn_form(task=f"task {i}")))
           for i in range(3)]
    owner.post(f"/agents/{ids[0]}/cancel")
    page = agent_list(owner.get("/agents?status=cancelled"))
    assert ids[0] in page and ids[1] not in page
    response = owner.get("/agents?limit=2&sort=created_at")
    first = agent_list(response)
    assert ids[0] in first and ids[1] in first and ids[2] not in first
    next_link = html.unescape(re.search(r'href="(/agents\?[^"]*cursor=[^"]+)"',
                                        page_text(response)).group(1))
    second = agent_list(owner.get(next_link))
    assert ids[2] in second and ids[0] not in second
    bad = owner.get("/agents?sort=bogus")
    assert bad.status_code == 400 and "sort" in page_text(bad)


def test_untrusted_task_and_result_render_as_text_everywhere(app, owner, client, admin):
    agent_id = spawned_id(owner.post("/agents/new", spawn_form(task=XSS_TASK)))
    for path in ("/agents", f"/agents/{agent_id}", "/", f"/agents/{agent_id}/cancel",
                 f"/live/agents/{agent_id}"):
        text = page_text(owner.get(path))
        assert "<img src=x" not in text and "<script>document" not in text, path
    assert "&lt;img src=x onerror=alert(1)&gt;" in page_text(owner.get(f"/agents/{agent_id}"))


def test_a_read_only_key_sees_agents_but_no_actions(app, browser, keys, owner):
    agent_id = spawned_id(owner.post("/agents/new", spawn_form()))
    browser.sign_in(keys.make("agents:read"))
    page = page_text(browser.get(f"/agents/{agent_id}"))
    assert "Cancel…" not in page
    assert browser.post(f"/agents/{agent_id}/cancel").status_code == 403
    assert browser.get("/agents/new").status_code == 403
    assert browser.get("/agents/nope").status_code == 404


# -- API keys ------------------------------------------------------------------------------

def test_create_a_key_shows_it_once_and_it_works(app, owner, client):
    response = owner.post("/settings/keys", {"name": "phone", "scopes": ["agents:read",
                                                                          "billing:read"],
                                              "signing": "1"})
    text = page_text(response)
    key = re.search(r'<code id="new-key">([^<]+)</code>', text).group(1)
    assert "shown only this once" in text and "new-secret" in text
    assert client.get("/api/health", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    listing = page_text(owner.get("/settings/keys"))
    assert "phone" in listing and key not in listing and key[:12] in listing


@pytest.mark.parametrize("form, message", [
    ({"name": "", "scopes": "agents:read"}, "Length must be between 1 and 100."),
    ({"name": "x"}, "scopes"),
    ({"name": "x", "scopes": "root"}, "Must be one of"),
    ({"name": "x", "scopes": "agents:read", "max_concurrent_agents": "0"}, "Must be greater"),
    ({"name": "x", "scopes": "agents:read", "expires_in_days": "0"},
     "expires_in_days must be between 1 and 3650"),
])
def test_bad_key_forms_save_nothing(app, owner, client, admin, form, message):
    response = owner.post("/settings/keys", form)
    assert response.status_code == 400
    assert message in html.unescape(page_text(response))
    assert len(client.get("/api/keys", headers=admin.headers).json["data"]) == 1


def test_a_key_created_with_an_expiry_shows_it(app, owner, client, admin):
    owner.post("/settings/keys", {"name": "trial", "scopes": "agents:read",
                                  "expires_in_days": "30"})
    [trial] = [k for k in client.get("/api/keys", headers=admin.headers).json["data"]
               if k["name"] == "trial"]
    assert trial["expires_at"][:10] in page_text(owner.get("/settings/keys"))


def test_rotate_shows_the_new_key_once_and_the_old_keys_grace_end(app, owner, keys, client):
    old = keys.make("agents:read")
    text = page_text(owner.post(f"/settings/keys/{old.key_id}/rotate"))
    new_key = re.search(r'<code id="new-key">([^<]+)</code>', text).group(1)
    assert "keeps working until" in text
    for key in (old.key, new_key):
        assert client.get("/api/health", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_revoke_with_a_reason_and_unsuspend(app, owner, keys, client, admin):
    victim = keys.make("agents:read")
    assert "Revoke" in page_text(owner.get(f"/settings/keys/{victim.key_id}/revoke"))
    too_long = owner.post(f"/settings/keys/{victim.key_id}/revoke", {"reason": "x" * 201})
    assert too_long.status_code == 400
    assert client.get("/api/health", headers=victim.headers).status_code == 200
    assert owner.post(f"/settings/keys/{victim.key_id}/revoke",
                      {"reason": "lost <phone>"}).status_code == 302
    assert client.get("/api/health", headers=victim.headers).status_code == 401
    assert "lost &lt;phone&gt;" in page_text(owner.get("/settings/keys"))
    again = owner.post(f"/settings/keys/{victim.key_id}/revoke", {"reason": ""})
    assert again.status_code == 409
    conn = sqlite3.connect(app.config["DATABASE"])
    suspended = keys.make("agents:write")
    conn.execute("UPDATE api_keys SET suspended_until = '2999-01-01T00:00:00.000000Z',"
                 " suspended_reason = 'spike' WHERE id = ?", (suspended.key_id,))
    conn.commit()
    conn.close()
    assert "Unsuspend" in page_text(owner.get("/settings/keys"))
    assert owner.post(f"/settings/keys/{suspended.key_id}/unsuspend").status_code == 302
    key = client.get("/api/keys", headers=admin.headers).json["data"]
    assert next(k for k in key if k["key_id"] == suspended.key_id)["suspended_until"] is None


def test_revoking_a_key_in_the_console_signs_out_its_browsers(app, owner, keys):
    other_key = keys.make("agents:read")
    other = Browser(app.test_client())
    other.sign_in(other_key)
    assert other.get("/agents").status_code == 200
    owner.post(f"/settings/keys/{other_key.key_id}/revoke", {"reason": ""})
    assert other.get("/agents").status_code == 302


# -- the live view's events stream ---------------------------------------------------------

def test_the_console_stream_is_the_api_stream_behind_the_session(app, owner, client, admin):
    configure(app, streams={"max_seconds": 0.3, "heartbeat_seconds": 0.1})
    assert client.get("/live/events").status_code == 401  # no session
    assert owner.client.get("/api/events/stream").status_code == 401  # cookie is not a key
    response = owner.client.get("/live/events?type=agent.spawned")
    owner.post("/agents/new", spawn_form())
    assert response.mimetype == "text/event-stream"
    body = response.get_data(as_text=True)
    response.close()  # gives the stream's place back to the gate
    assert body.startswith("retry: ") and "event: agent.spawned" in body
    bad = owner.get("/live/events?type=nope")
    assert bad.status_code == 400 and "unknown event type" in page_text(bad)

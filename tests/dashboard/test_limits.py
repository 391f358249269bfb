"""Settings → Budget and limits: config.json's schema, atomic writes, hand edits."""
from __future__ import annotations

import json
import os
import time

import pytest

from tests.dashboard.conftest import page_text
from tests.dashboard.test_pages import audit_events


def config_path(app) -> str:
    return app.config["CONFIG_PATH"]


def form(app, **changes) -> dict:
    """The form as the page fills it in, with some fields changed."""
    config = app.extensions["j1msky_config"].get()
    values = {"budget.daily": config["budget"]["daily"],
              "budget.monthly_ceiling": config["budget"]["monthly_ceiling"],
              **{f"budget.alert_thresholds.{name}": value
                 for name, value in config["budget"]["alert_thresholds"].items()},
              **{f"providers.{name}.hourly": provider["hourly"]
                 for name, provider in config["providers"].items()}}
    return {name: str(value) for name, value in {**values, **changes}.items()}


def test_the_page_shows_the_values_in_force(app, owner):
    config = app.extensions["j1msky_config"].get()
    text = page_text(owner.get("/settings/limits"))
    assert f'name="budget.daily" inputmode="decimal" required value="{config["budget"]["daily"]}"' in text
    for name, provider in config["providers"].items():
        field = f"providers.{name}.hourly"
        assert f'name="{field}" inputmode="decimal" required value="{provider["hourly"]}"' in text


def test_saving_writes_config_json_and_audits_the_change(app, owner, client, admin):
    response = owner.post("/settings/limits", form(app, **{
        "budget.daily": "12.5", "budget.alert_thresholds.warning": "70",
        "providers.anthropic.hourly": "42"}))
    assert response.status_code == 302
    with open(config_path(app)) as fh:
        saved = json.load(fh)
    assert saved["budget"]["daily"] == 12.5
    assert saved["budget"]["alert_thresholds"]["warning"] == 70
    assert saved["providers"]["anthropic"]["hourly"] == 42
    assert [p for p in os.listdir(os.path.dirname(config_path(app))) if p.startswith(".config-")] == []
    status = client.get("/api/orchestrator/status", headers=admin.headers).json
    assert status["daily_budget"] == 12.5
    text = page_text(owner.get("/settings/limits"))
    assert "Saved." in text and 'value="12.5"' in text and 'value="42"' in text
    assert "config.change" in audit_events(app)


@pytest.mark.parametrize("field, value, message", [
    ("budget.daily", "-1", "Must be greater than or equal to 0."),
    ("budget.monthly_ceiling", "lots", "Not a valid number."),
    ("budget.alert_thresholds.critical", "150", "Must be greater than or equal to 0 and less"
                                                " than or equal to 100."),
    ("providers.kimi-coding.hourly", "1.5", "Not a valid integer."),
    ("providers.anthropic.hourly", "", "Not a valid integer."),
    ("budget.daily", "nan", "Special numeric values (nan or infinity) are not permitted."),
])
def test_out_of_range_values_show_the_schemas_message_and_change_nothing(
        app, owner, field, value, message):
    with open(config_path(app), "rb") as fh:
        before = fh.read()
    response = owner.post("/settings/limits", form(app, **{field: value}))
    assert response.status_code == 400
    text = page_text(response)
    assert f'<small class="error" id="{field}-error">{message}</small>' in text
    assert f'name="{field}" inputmode="decimal" required value="{value}" aria-invalid="true"' in text
    with open(config_path(app), "rb") as fh:
        assert fh.read() == before


def test_a_hand_edit_of_config_json_shows_up(app, owner):
    with open(config_path(app)) as fh:
        user = json.load(fh)
    user["budget"] = {**user.get("budget", {}), "daily": 77.25}
    with open(config_path(app), "w") as fh:
        json.dump(user, fh)
    time.sleep(1.1)  # the store looks at the file's mtime at most once a second
    assert 'name="budget.daily" inputmode="decimal" required value="77.25"' in \
        page_text(owner.get("/settings/limits"))


def test_a_broken_config_json_is_not_overwritten(app, owner):
    with open(config_path(app), "w") as fh:
        fh.write('{"budget": ')
    time.sleep(1.1)
    response = owner.post("/settings/limits", form(app))
    assert response.status_code == 409
    assert "config.json cannot be updated until it is fixed" in page_text(response)
    with open(config_path(app)) as fh:
        assert fh.read() == '{"budget": '


def test_limits_need_admin_write(app, browser, keys, owner):
    reader = keys.make("agents:read", "agents:write", "billing:read")
    browser.sign_in(reader)
    assert browser.get("/settings/limits").status_code == 403
    with open(config_path(app), "rb") as fh:
        before = fh.read()
    response = browser.post("/settings/limits", form(app, **{"budget.daily": "999"}))
    assert response.status_code == 403 and "admin:write" in page_text(response)
    with open(config_path(app), "rb") as fh:
        assert fh.read() == before

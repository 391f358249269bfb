"""config.json: validation naming the key, init, hot reload, last good config, atomic writes."""
from __future__ import annotations

import json
import logging
import os

import pytest
from click.testing import CliRunner

from j1msky.cli import cli
from j1msky.config import ConfigError, ConfigStore, load_file
from tests.helpers import config_for_tests

BAD_CONFIGS = [
    ("{not json", "config.json is not valid JSON"),
    ("[1, 2]", "config.json must hold a JSON object"),
    ('{"models": {"k2p5": {"provider": "kimi-coding", "upstream": "k", "input_per_1k": 0,'
     ' "output_per_1k": 0, "fallback": "gpt-9"}}}', "models.k2p5.fallback: unknown model 'gpt-9'"),
    ('{"teams": {"team_x": {"steps": [{"model": "gpt-9", "role": "r"}]}}}',
     "teams.team_x.steps.0.model: unknown model 'gpt-9'"),
    ('{"budget": {"daily": -5}}', "budget.daily:"),
    ('{"routing": {"task_models": {"coding": ["nope"]}}}', "routing.task_models.coding"),
    ('{"timezone": "Mars/Olympus"}', "timezone: unknown time zone 'Mars/Olympus'"),
    ('{"budgett": {}}', "budgett: Unknown field."),
    ('{"server": {"threads": "many"}}', "server.threads:"),
    ('{"environment": "prod"}', "environment:"),
    ('{"models": {"m": {"provider": "nobody", "upstream": "u", "input_per_1k": 1,'
     ' "output_per_1k": 1}}}', "models.m.provider: unknown provider 'nobody'"),
    ('{"rate_limits": {"spawn": "lots"}}', "rate_limits.spawn:"),
]


@pytest.mark.parametrize("text, message", BAD_CONFIGS)
def test_bad_config_is_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_file(str(path))
    assert message in str(err.value)


@pytest.mark.parametrize("text, message", BAD_CONFIGS[:4])
def test_serve_and_init_refuse_a_bad_config(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text)
    runner = CliRunner()
    env = {"J1MSKY_INSTANCE": str(tmp_path)}
    for command in (["serve", "--port", "1"], ["init"]):
        result = runner.invoke(cli, command, env=env)
        assert result.exit_code == 1
        assert message in result.output


def test_missing_config_means_the_example_defaults(tmp_path):
    config = load_file(str(tmp_path / "absent.json"))
    assert config["server"]["port"] == 8080
    assert set(config["teams"]) == {"team_coding", "team_creative", "team_research",
                                    "team_business"}


def test_init_is_safe_to_run_twice(tmp_path):
    runner = CliRunner()
    env = {"J1MSKY_INSTANCE": str(tmp_path)}
    first = runner.invoke(cli, ["init"], env=env)
    assert first.exit_code == 0
    assert "First admin key (all scopes), shown once: live_sk_" in first.output
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"budget": {"daily": 7}}))
    created = runner.invoke(cli, ["keys", "create", "--name", "a", "--scope", "agents:read"],
                            env=env)
    assert created.exit_code == 0, created.output
    second = runner.invoke(cli, ["init"], env=env)
    assert second.exit_code == 0 and "First admin key" not in second.output
    assert json.loads(config.read_text()) == {"budget": {"daily": 7}}
    listed = runner.invoke(cli, ["keys", "list"], env=env).output
    assert listed.count("key_") == 2  # the owner key of the first init, and "a"
    assert oct(os.stat(tmp_path / "master.key").st_mode & 0o777) == "0o600"


def write(path, config):
    path.write_text(json.dumps(config))
    stamp = os.stat(path).st_mtime_ns
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # a visible change on coarse clocks


def test_edits_apply_without_restart_and_a_broken_edit_keeps_the_last_good(tmp_path, caplog):
    path = tmp_path / "config.json"
    write(path, config_for_tests(budget={"daily": 10}))
    store = ConfigStore(str(path), check_interval=0)
    assert store.get()["budget"]["daily"] == 10
    write(path, config_for_tests(budget={"daily": 20}))
    assert store.get()["budget"]["daily"] == 20
    path.write_text("{ broken by hand")
    with caplog.at_level(logging.ERROR):
        assert store.get()["budget"]["daily"] == 20
    assert "keeping the last good config" in caplog.text
    write(path, config_for_tests(budget={"daily": 30}))
    assert store.get()["budget"]["daily"] == 30


def test_running_app_keeps_its_config_when_the_file_breaks(app, client, admin):
    path = app.config["CONFIG_PATH"]
    app.extensions["j1msky_config"].check_interval = 0
    with open(path, "w") as fh:
        fh.write('{"models": {}}')
    assert client.get("/api/health", headers=admin.headers).json["models_configured"] == 3


def test_update_writes_atomically_and_refuses_invalid_changes(tmp_path):
    path = tmp_path / "config.json"
    write(path, config_for_tests())
    store = ConfigStore(str(path), check_interval=0)
    store.update(lambda c: c["budget"].update(daily=99) if "budget" in c
                 else c.update(budget={"daily": 99}))
    assert json.loads(path.read_text())["budget"]["daily"] == 99
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        store.update(lambda c: c.update(budget={"daily": -1}))
    assert path.read_bytes() == before
    assert store.get()["budget"]["daily"] == 99
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]

"""The spawn request schema is built once per config in force, and follows config edits."""
from __future__ import annotations

from tests.helpers import configure


def spawn(client, key, body):
    return client.post("/api/spawn", json=body, headers=key.headers)


def test_spawn_validation_follows_config_edits_without_a_restart(app, client, admin):
    assert spawn(client, admin, {"model": "k2p5", "task": "t", "timeout": 900}).status_code == 202
    configure(app, agents={"max_timeout": 600, "default_timeout": 300})
    refused = spawn(client, admin, {"model": "k2p5", "task": "t", "timeout": 900})
    assert refused.status_code == 400
    assert refused.json["error"]["details"]["timeout"] == ["Timeout must be between 1 and 600"
                                                           " seconds"]
    models = {**app.extensions["j1msky_config"].get()["models"]}
    models["k2p5-copy"] = {**models["k2p5"], "fallback": None}
    configure(app, models=models)
    assert spawn(client, admin, {"model": "k2p5-copy", "task": "t"}).status_code == 202


def test_batch_items_are_validated_against_the_config_in_force(app, client, admin):
    configure(app, agents={"max_timeout": 600, "default_timeout": 300})
    response = client.post("/api/spawn-batch", headers=admin.headers, json={"agents": [
        {"model": "k2p5", "task": "fine"}, {"model": "k2p5", "task": "t", "timeout": 900}]})
    assert response.status_code == 400
    assert "1" in response.json["error"]["details"]["agents"]

"""Webhook deliveries in flight at once: the per-webhook bound, half of the sending
threads at most, one at a time while a receiver fails, claims that two dispatchers
never share, the claim's lease after a crash, and outcomes of deleted webhooks."""
from __future__ import annotations

import sqlite3
import time

import pytest

from j1msky.config import ConfigError, validate_config
from j1msky.db import get_db, transaction
from j1msky.services import webhooks
from tests.helpers import configure
from tests.webhook_receiver import verify

# A timeout long enough that no attempt here times out (or outlives its lease) under load.
HOOKS = {"allowed_networks": ["127.0.0.0/8"], "retry_schedule_seconds": [0.1, 0.1, 0.1],
         "timeout_seconds": 5}


def register(client, key, url) -> dict:
    response = client.post("/api/webhooks", headers=key.headers,
                           json={"url": url, "events": ["agent.completed"]})
    assert response.status_code == 201, response.json
    return response.json


def queue_tests(client, key, hook, count: int) -> None:
    for _ in range(count):
        assert client.post(f"/api/webhooks/{hook['id']}/test",
                           headers=key.headers).status_code == 202


def most_at_once(received: list[dict]) -> int:
    """The most of these requests the receiver held at the same moment."""
    edges = sorted([(d["received_at"], 1) for d in received]
                   + [(d["responded_at"] or float("inf"), -1) for d in received])
    held = most = 0
    for _, step in edges:  # at equal times an answer (-1) sorts before an arrival
        held += step
        most = max(most, held)
    return most


def logged(client, key, hook) -> list[dict]:
    return client.get(f"/api/webhooks/{hook['id']}/deliveries?limit=100",
                      headers=key.headers).json["data"]


def test_one_webhook_gets_deliveries_concurrently_up_to_its_bound(
        client, app, admin, webhook_receiver, start_dispatcher):
    configure(app, webhooks={**HOOKS, "workers": 8, "max_in_flight_per_webhook": 3})
    hook = register(client, admin, webhook_receiver.url + "/hook")
    webhook_receiver.expect_secret(None, hook["secret"])
    webhook_receiver.set(delay=0.2)
    queue_tests(client, admin, hook, 12)
    start_dispatcher()
    received = webhook_receiver.wait_for(12, timeout=10)
    assert most_at_once(received) == 3
    assert all(d["verified"] for d in received)
    assert len({d["headers"]["webhook-id"] for d in received}) == 12  # each sent once
    time.sleep(0.3)
    assert webhook_receiver.count() == 12
    assert all(d["state"] == "delivered" and d["attempts"] == 1
               for d in logged(client, admin, hook))


def test_a_hanging_webhook_holds_at_most_half_of_the_sending_threads(
        client, app, admin, webhook_receiver, start_dispatcher):
    configure(app, webhooks={**HOOKS, "workers": 4, "max_in_flight_per_webhook": 4})
    slow = register(client, admin, webhook_receiver.url + "/slow")
    fast = register(client, admin, webhook_receiver.url + "/fast")
    webhook_receiver.set("/slow", hang=True)
    queue_tests(client, admin, slow, 6)
    start_dispatcher()
    webhook_receiver.wait_for(2, path="/slow")
    started = time.monotonic()
    queue_tests(client, admin, fast, 3)
    webhook_receiver.wait_for(3, path="/fast", timeout=2)
    assert time.monotonic() - started < 0.5  # well inside the hanging ones' timeout
    assert webhook_receiver.count("/slow") == 2  # half of 4 workers, not its bound of 4
    webhook_receiver.set("/slow", hang=False)


def test_a_failing_webhook_gets_one_delivery_at_a_time_until_one_succeeds(
        client, app, admin, webhook_receiver, start_dispatcher):
    configure(app, webhooks={**HOOKS, "workers": 8, "max_in_flight_per_webhook": 3})
    hook = register(client, admin, webhook_receiver.url + "/hook")
    webhook_receiver.expect_secret(None, hook["secret"])
    webhook_receiver.set(status=500, fail_times=3, delay=0.5)  # overlaps even when loaded
    queue_tests(client, admin, hook, 8)
    start_dispatcher()
    received = webhook_receiver.wait_for(11, timeout=10)  # 8, and 3 retries
    first, probe, rest = received[:3], received[3], received[4:]
    assert [d["status"] for d in first] == [500] * 3 and most_at_once(first) == 3
    assert probe["received_at"] >= max(d["responded_at"] for d in first)  # alone
    assert min(d["received_at"] for d in rest) >= probe["responded_at"]
    assert most_at_once(rest) == 3  # it succeeded: the bound again
    assert all(d["verified"] for d in received)
    deadline = time.monotonic() + 5
    while any(d["state"] != "delivered" for d in logged(client, admin, hook)):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_two_dispatchers_never_send_one_delivery_twice(client, app, admin, webhook_receiver,
                                                       start_dispatcher):
    configure(app, webhooks={**HOOKS, "workers": 8, "max_in_flight_per_webhook": 4})
    hook = register(client, admin, webhook_receiver.url + "/hook")
    webhook_receiver.expect_secret(None, hook["secret"])
    webhook_receiver.set(delay=0.05)
    queue_tests(client, admin, hook, 40)
    start_dispatcher()
    start_dispatcher()  # like a second process on the same database
    received = webhook_receiver.wait_for(40, timeout=15)
    assert len({d["headers"]["webhook-id"] for d in received}) == 40
    assert all(verify(hook["secret"], d["body"], d["headers"]) is None for d in received)
    deadline = time.monotonic() + 5  # the wake-up is shared: one may wait for its poll
    while {d["state"] for d in logged(client, admin, hook)} != {"delivered"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert all(len(d["attempt_log"]) == 1 for d in logged(client, admin, hook))
    assert webhook_receiver.count() == 40


def test_a_claimed_delivery_is_sent_again_only_once_its_lease_ends(
        client, app, admin, webhook_receiver, start_dispatcher):
    """A dispatcher that claimed a delivery and died (kill -9) leaves it leased for twice
    the timeout and a second; then another sends it."""
    configure(app, webhooks={**HOOKS, "timeout_seconds": 0.5})  # lease: 2 s
    hook = register(client, admin, webhook_receiver.url + "/hook")
    queue_tests(client, admin, hook, 1)
    with app.app_context():
        conn = get_db()
        [(delivery_id,)] = conn.execute("SELECT id FROM webhook_deliveries").fetchall()
        with transaction(conn):
            [row] = webhooks.claim(conn, app.extensions["j1msky_config"].get(), [delivery_id])
    claimed = time.monotonic()
    assert row["id"] == delivery_id and row["url"] == webhook_receiver.url + "/hook"
    start_dispatcher()
    [delivery] = webhook_receiver.wait_for(1, timeout=5)
    assert delivery["received_at"] - claimed >= 1.8
    assert delivery["headers"]["webhook-id"] == f"evt_test_{delivery_id}"


def test_a_webhook_deleted_while_its_delivery_is_in_flight_does_not_stop_the_others(
        client, app, admin, webhook_receiver, start_dispatcher):
    configure(app, webhooks=HOOKS)
    doomed = register(client, admin, webhook_receiver.url + "/doomed")
    other = register(client, admin, webhook_receiver.url + "/other")
    webhook_receiver.set("/doomed", hang=True)
    queue_tests(client, admin, doomed, 1)
    start_dispatcher()
    webhook_receiver.wait_for(1, path="/doomed")
    assert client.delete(f"/api/webhooks/{doomed['id']}", headers=admin.headers
                         ).status_code == 200
    webhook_receiver.set("/doomed", hang=False)  # its answer comes for a row now gone
    time.sleep(0.2)
    queue_tests(client, admin, other, 2)
    webhook_receiver.wait_for(2, path="/other", timeout=3)
    deadline = time.monotonic() + 3
    while {d["state"] for d in logged(client, admin, other)} != {"delivered"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    conn = sqlite3.connect(app.config["DATABASE"])
    try:
        assert conn.execute("SELECT count(*) FROM webhook_attempts").fetchone()[0] == 2
    finally:
        conn.close()


@pytest.mark.parametrize("value", [0, 33, 2.5, "4", None])
def test_max_in_flight_per_webhook_is_validated(value):
    with pytest.raises(ConfigError, match="webhooks.max_in_flight_per_webhook"):
        validate_config({"webhooks": {"max_in_flight_per_webhook": value}})
    assert validate_config({"webhooks": {"max_in_flight_per_webhook": 1}})["webhooks"][
        "max_in_flight_per_webhook"] == 1

"""The webhook receiver used to test J1MSKY's deliveries (tests/webhook_receiver.py)."""
from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime, timezone

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tests.webhook_receiver import (
    WebhookReceiver,
    library_webhook,
    secret_key,
    sign,
    signed_headers,
    webhook_receiver,  # noqa: F401
)

WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
PLAIN = "plain-secret:not base64!"
BODY = json.dumps({"type": "agent.completed", "data": {"id": "ag_1"}}).encode()


def post(url: str, body: bytes = BODY, headers: dict | None = None,
         timeout: float = 5, **kw) -> requests.Response:
    return requests.post(url, data=body, headers=headers or {}, timeout=timeout,
                         allow_redirects=False, **kw)


# signing -----------------------------------------------------------------------
def test_sign_matches_the_standard_webhooks_test_vector():
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330, '{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("secret", [WHSEC, PLAIN])
def test_sign_agrees_with_the_library(secret):
    when = datetime.fromtimestamp(1700000000, tz=timezone.utc)
    assert sign(secret, "msg_1", 1700000000, BODY) == \
        library_webhook(secret).sign("msg_1", when, BODY.decode())


def test_secret_key_reads_secrets_as_the_contract_says():
    assert secret_key(WHSEC) == b"0123456789abcdef0123456789abcdef"
    assert secret_key("whsec_" + base64.b64encode(b"k1").decode().rstrip("=")) == b"k1"
    assert secret_key(PLAIN) == PLAIN.encode()
    # The library alone would base64-decode a plain *string* secret into another key.
    assert Webhook(PLAIN)._whsecret != PLAIN.encode()
    assert library_webhook(PLAIN)._whsecret == PLAIN.encode()


# verification ------------------------------------------------------------------
@pytest.mark.parametrize("secret", [WHSEC, PLAIN])
def test_a_correctly_signed_delivery_verifies(webhook_receiver, secret):  # noqa: F811
    webhook_receiver.expect_secret("/hook", secret)
    headers = {**signed_headers(secret, BODY, msg_id="msg_abc"), "X-Extra": "Yes"}
    assert post(webhook_receiver.url + "/hook", headers=headers).status_code == 200
    [d] = webhook_receiver.deliveries("/hook")
    assert d["verified"] is True and d["error"] is None
    assert d["body"] == BODY and d["json"]["type"] == "agent.completed"
    assert d["headers"]["webhook-id"] == "msg_abc" and d["headers"]["x-extra"] == "Yes"
    assert d["status"] == 200 and d["received_at"] <= d["responded_at"]


def test_rotated_signatures_one_of_which_matches_verify(webhook_receiver):  # noqa: F811
    webhook_receiver.expect_secret("/hook", WHSEC)
    headers = signed_headers(WHSEC, BODY)
    other = sign("other", headers["webhook-id"], headers["webhook-timestamp"], BODY)
    headers["webhook-signature"] = f"{other} {headers['webhook-signature']}"
    post(webhook_receiver.url + "/hook", headers=headers)
    assert webhook_receiver.deliveries()[0]["verified"] is True


def test_tampered_body_does_not_verify(webhook_receiver):  # noqa: F811
    webhook_receiver.expect_secret("/hook", WHSEC)
    headers = signed_headers(WHSEC, BODY)
    assert post(webhook_receiver.url + "/hook", BODY + b" ", headers).status_code == 200
    [d] = webhook_receiver.deliveries()
    assert d["verified"] is False and "No matching signature" in d["error"]


def test_wrong_secret_does_not_verify(webhook_receiver):  # noqa: F811
    # A plain secret must not verify as if it were base64, nor the other way round.
    webhook_receiver.expect_secret("/a", PLAIN)
    webhook_receiver.expect_secret("/b", WHSEC)
    post(webhook_receiver.url + "/a", headers=signed_headers(base64.b64decode(PLAIN + "=="),
                                                             BODY))
    post(webhook_receiver.url + "/b", headers=signed_headers(WHSEC.encode(), BODY))
    assert [d["verified"] for d in webhook_receiver.deliveries()] == [False, False]


@pytest.mark.parametrize("skew,reason", [(-301, "too old"), (301, "too new")])
def test_timestamp_outside_five_minutes_does_not_verify(webhook_receiver, skew,  # noqa: F811
                                                        reason):
    webhook_receiver.expect_secret(None, WHSEC)
    headers = signed_headers(WHSEC, BODY, timestamp=time.time() + skew)
    post(webhook_receiver.url + "/hook", headers=headers)
    [d] = webhook_receiver.deliveries()
    assert d["verified"] is False and reason in d["error"]


def test_missing_malformed_or_unexpected_deliveries_are_recorded(webhook_receiver):  # noqa: F811
    url = webhook_receiver.url + "/hook"
    post(url, headers=signed_headers(WHSEC, BODY))  # no secret registered yet
    webhook_receiver.expect_secret(None, WHSEC)
    post(url)  # no headers
    post(url, headers={**signed_headers(WHSEC, BODY), "webhook-signature": "garbage"})
    post(url, b"\xff\xfe", signed_headers(WHSEC, b"\xff\xfe"))  # not UTF-8, not JSON
    got = webhook_receiver.deliveries()
    assert [d["verified"] for d in got] == [False] * 4
    assert "no secret" in got[0]["error"] and "Missing required headers" in got[1]["error"]
    assert got[3]["json"] is None and got[3]["body"] == b"\xff\xfe"
    assert all(d["status"] == 200 for d in got)  # verification is recorded, not enforced


def test_per_path_secret_overrides_the_default(webhook_receiver):  # noqa: F811
    webhook_receiver.expect_secret(None, WHSEC)
    webhook_receiver.expect_secret("/second", PLAIN)
    post(webhook_receiver.url + "/hook", headers=signed_headers(WHSEC, BODY))
    post(webhook_receiver.url + "/second", headers=signed_headers(PLAIN, BODY))
    post(webhook_receiver.url + "/second", headers=signed_headers(WHSEC, BODY))
    assert webhook_receiver.count() == 3 and webhook_receiver.count("/second") == 2
    assert [d["path"] for d in webhook_receiver.deliveries(verified_only=True)] == \
        ["/hook", "/second"]


def test_strict_mode_answers_400_to_unverifiable_deliveries():
    with WebhookReceiver(secret=PLAIN, strict=True) as receiver:
        url = receiver.url + "/hook"
        assert post(url, headers=signed_headers(PLAIN, BODY)).status_code == 200
        assert post(url, headers=signed_headers(WHSEC, BODY)).status_code == 400
        receiver.set("/lenient", strict=False)
        assert post(receiver.url + "/lenient").status_code == 200
        assert [d["status"] for d in receiver.deliveries()] == [200, 400, 200]


# knobs -------------------------------------------------------------------------
def test_status_for_the_next_fail_times_then_200(webhook_receiver):  # noqa: F811
    webhook_receiver.set("/hook", status=500, fail_times=2)
    url = webhook_receiver.url
    assert [post(url + "/hook").status_code for _ in range(3)] == [500, 500, 200]
    assert post(url + "/other").status_code == 200  # other paths keep the defaults
    assert [d["status"] for d in webhook_receiver.deliveries("/hook")] == [500, 500, 200]


def test_status_without_fail_times_is_permanent_and_set_none_covers_all(
        webhook_receiver):  # noqa: F811
    webhook_receiver.set("/hook", status=500)
    webhook_receiver.set(status=410)  # every path, dropping the /hook knobs
    url = webhook_receiver.url
    assert [post(url + p).status_code for p in ("/hook", "/x", "/hook")] == [410] * 3
    webhook_receiver.reset()
    assert post(url + "/hook").status_code == 200 and webhook_receiver.count() == 1


def test_redirect_is_answered_not_followed(webhook_receiver):  # noqa: F811
    target = webhook_receiver.url + "/elsewhere"
    webhook_receiver.set("/hook", redirect_to=target)
    webhook_receiver.set("/found", redirect_to=target, status=302, fail_times=1)
    r = post(webhook_receiver.url + "/hook")
    assert r.status_code == 307 and r.headers["location"] == target
    assert post(webhook_receiver.url + "/found").status_code == 302
    assert post(webhook_receiver.url + "/found").status_code == 200
    assert webhook_receiver.count("/elsewhere") == 0
    assert webhook_receiver.deliveries("/hook")[0]["status"] == 307


def test_delay_slows_the_answer(webhook_receiver):  # noqa: F811
    webhook_receiver.set(delay=0.3)
    started = time.monotonic()
    assert post(webhook_receiver.url + "/hook").status_code == 200
    assert time.monotonic() - started >= 0.3


def _post_in_thread(url: str, results: list) -> threading.Thread:
    def run():
        try:
            results.append(post(url, timeout=5).status_code)
        except requests.RequestException as exc:
            results.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("release", ["set", "release", "reset"])
def test_hang_holds_the_request_until_released(webhook_receiver, release):  # noqa: F811
    webhook_receiver.set("/hook", hang=True)
    results: list = []
    thread = _post_in_thread(webhook_receiver.url + "/hook", results)
    [d] = webhook_receiver.wait_for(1, "/hook", timeout=2)  # recorded while hanging
    time.sleep(0.1)
    assert results == [] and d["status"] is None
    if release == "set":
        webhook_receiver.set("/hook", hang=False)
    else:
        getattr(webhook_receiver, release)()
    thread.join(2)
    assert results == [200]


def test_stop_does_not_wait_for_hung_requests():
    receiver = WebhookReceiver().start()
    receiver.set(hang=True)
    results: list = []
    thread = _post_in_thread(receiver.url + "/hook", results)
    receiver.wait_for(1, timeout=2)
    started = time.monotonic()
    receiver.stop()
    assert time.monotonic() - started < 1
    thread.join(2)
    assert len(results) == 1 and isinstance(results[0], requests.ConnectionError)
    assert receiver.deliveries()[0]["status"] is None


def test_unknown_knob_is_refused(webhook_receiver):  # noqa: F811
    with pytest.raises(TypeError, match="unknown knobs"):
        webhook_receiver.set(stauts=500)


# waiting -----------------------------------------------------------------------
def test_wait_for_blocks_until_deliveries_arrive(webhook_receiver):  # noqa: F811
    url = webhook_receiver.url

    def later():
        time.sleep(0.1)
        post(url + "/hook")
        post(url + "/second")
        post(url + "/hook")
    threading.Thread(target=later, daemon=True).start()
    got = webhook_receiver.wait_for(2, "/hook", timeout=3)
    assert len(got) == 2 and {d["path"] for d in got} == {"/hook"}
    assert len(webhook_receiver.wait_for(3, timeout=3)) == 3


def test_wait_for_times_out_with_what_it_got(webhook_receiver):  # noqa: F811
    post(webhook_receiver.url + "/hook")
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"expected 2 deliveries to /hook .* got 1"):
        webhook_receiver.wait_for(2, "/hook", timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 1
    with pytest.raises(AssertionError, match=r"\(verified\).* got 0"):
        webhook_receiver.wait_for(1, timeout=0.05, verified_only=True)

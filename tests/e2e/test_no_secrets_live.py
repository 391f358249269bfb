"""Keys, secrets and signatures never reach the log output or the audit table, even with
verbose auditing of request and response bodies."""
from __future__ import annotations

import sqlite3

import requests

from tests.helpers import Key, config_for_tests, dumps, sign

VERBOSE = {"enabled": True, "log_level": "verbose", "include_request_body": True,
           "include_response_body": True}


def test_no_secret_in_logs_or_audit(live_server_factory):
    server = live_server_factory(config_for_tests(
        audit=VERBOSE, webhooks={"allowed_networks": ["127.0.0.0/8"]},
        server={"access_log": True}))  # the access lines too
    admin = server.create_key("agents:read", "agents:write", "admin:write", "billing:read")
    server.start()
    auth = {"Authorization": f"Bearer {admin['key']}"}
    secrets = [admin["key"]]

    made = requests.post(server.url + "/api/keys", headers=auth, timeout=5, json={
        "name": "signer", "scopes": ["agents:read", "agents:write"], "signing": True,
        "require_signature": True}).json()
    secrets += [made["key"], made["api_secret"]]
    signer = Key(made["key_id"], made["key"], made["api_secret"])
    body = dumps({"model": "k2p5", "task": "signed work"})
    headers = sign(signer, "POST", "/api/spawn", body)
    secrets.append(headers["X-Signature"])
    assert requests.post(server.url + "/api/spawn", data=body, headers=headers,
                         timeout=5).status_code == 202
    headers = sign(signer, "GET", "/api/agents?limit=5")
    secrets.append(headers["X-Signature"])
    assert requests.get(server.url + "/api/agents?limit=5", headers=headers,
                        timeout=5).status_code == 200
    hook = requests.post(server.url + "/api/webhooks", headers=auth, timeout=5, json={
        "url": "http://127.0.0.1:9/hook", "events": ["agent.completed"],
        "secret": "whsec_c2VjcmV0LXdlYmhvb2sta2V5LTEyMw=="}).json()
    secrets.append("whsec_c2VjcmV0LXdlYmhvb2sta2V5LTEyMw==")
    generated = requests.post(server.url + "/api/webhooks", headers=auth, timeout=5, json={
        "url": "http://127.0.0.1:9/other", "events": ["agent.failed"]}).json()
    secrets.append(generated["secret"])
    rotated = requests.post(f"{server.url}/api/keys/{made['key_id']}/rotate", headers=auth,
                            timeout=5).json()
    secrets += [rotated["key"], rotated["api_secret"]]
    requests.delete(f"{server.url}/api/keys/{made['key_id']}", headers=auth, timeout=5,
                    json={"reason": "test"})
    requests.get(server.url + "/api/agents", timeout=5,
                 headers={"Authorization": f"Bearer {made['key']}x"})  # a failed attempt
    assert hook["id"]
    server.stop()

    conn = sqlite3.connect(server.instance + "/j1msky.sqlite3")
    audit = "\n".join(str(tuple(r)) for r in conn.execute("SELECT * FROM audit_log"))
    count = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    conn.close()
    log = server.log()
    assert count >= 8 and "api.key.used" in audit and "agent.spawn" in audit
    for secret in secrets:
        assert secret not in log, f"a secret in the log: {secret[:12]}..."
        assert secret not in audit, f"a secret in the audit table: {secret[:12]}..."
        assert secret[-16:] not in log + audit

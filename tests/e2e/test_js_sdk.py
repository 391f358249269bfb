"""The JavaScript SDK (sdk/js) against a real `j1msky serve`: `node --test` on sdk/js/test/."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from j1msky.config import defaults
from tests.helpers import config_for_tests

REPO = Path(__file__).resolve().parents[2]
SDK_TESTS = REPO / "sdk" / "js" / "test"

# rate_limits.spawn counts per key, with one value for every key: the JS tests spawn about
# 32 agents with the main key, and the limited key spawns until its own counter answers 429.
# opus runs on a slow simulated provider so that a cancel always finds it still waiting or
# running (the other models answer at once).
SPAWN_LIMIT = 45
SLOW_SECONDS = 5


def sdk_config() -> dict:
    models = defaults()["models"]  # the section is replaced whole, so start from the defaults
    models["opus"] = {**models["opus"], "provider": "slow"}
    return config_for_tests(
        providers={"slow": {"kind": "simulated", "hourly": 1000, "delay": SLOW_SECONDS}},
        models=models,
        agents={"workers": 4, "shutdown_grace_seconds": 1, "max_concurrent_per_key": 100},
        # short streams: the stream tests cross the server's closes and resume
        streams={"max_seconds": 1, "heartbeat_seconds": 0.5, "retry_seconds": 0.1},
        rate_limits={"spawn": f"{SPAWN_LIMIT}/hour", "agent": "100000/hour",
                     "agents": "100000/hour", "per_ip": "100000/minute"},
        security={"auth_failures_to_block": 1000},
        webhooks={"allowed_networks": ["127.0.0.1/32"]},
    )


def js_test_files() -> list[str]:
    """`node --test sdk/js/test/` as explicit files: Node 21+ reads arguments as globs, not
    directories, so naming the files works on every Node from 18 on (helpers start with _)."""
    return sorted(str(path.relative_to(REPO)) for path in SDK_TESTS.iterdir()
                  if path.suffix in (".js", ".cjs", ".mjs") and not path.name.startswith("_"))


def test_js_sdk_suite(live_server_factory):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript SDK tests need Node.js >= 18")
    server = live_server_factory(sdk_config())
    admin = server.create_key("agents:read", "agents:write", "billing:read", "admin:write")
    signing = server.create_key("agents:read", "agents:write",
                                extra=("--signing", "--require-signature"))
    limited = server.create_key("agents:write")
    server.start()

    env = {**os.environ,
           "J1MSKY_URL": server.url,
           "J1MSKY_KEY": admin["key"],
           "J1MSKY_SIGNING_KEY": signing["key"],
           "J1MSKY_SIGNING_SECRET": signing["api_secret"],
           "J1MSKY_LIMITED_KEY": limited["key"],
           "NO_PROXY": "127.0.0.1,localhost"}
    result = subprocess.run([node, "--test", *js_test_files()], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"node --test failed ({result.returncode}):\n{output}\n" \
                                   f"--- server log ---\n{server.log()[-5000:]}"
    assert "# fail 0" in result.stdout, output
    assert "# skipped 0" in result.stdout or "# skip 0" in result.stdout, \
        f"JS tests were skipped although the server is up:\n{output}"

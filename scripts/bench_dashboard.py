"""Benchmark of the owner's console at / on 127.0.0.1, with 100 000 stored agents.

What it does, in one run:

1. Makes a temporary instance folder with harness.config() (limits raised), runs
   ``j1msky init`` and ``j1msky keys create`` (all scopes), and seeds N finished agents
   with their running totals (bench_api.seed: the same rows and totals as bench_api.py),
   an event and an audit entry for each, and one webhook.
2. Starts ``j1msky serve --threads 8`` and signs in to the console with the key, as a
   browser does (GET /login for the CSRF token, POST the key, keep the cookies).
3. Measures, with one sequential keep-alive client, each console page's server time
   (round trip on loopback) p50/p99, next to the API calls that read the same data in
   the same run (GET /api/orchestrator/status and GET /api/agents) as the baseline.
4. Counts the bytes of a first load of the overview (the HTML and every stylesheet,
   script and icon it names; uncompressed) and of a second load (only the HTML: assets
   are served with Cache-Control immutable, a year).
5. Reads the serve worker's RSS after browsing every page.
6. Stops the server and removes the folder, even on error.

It prints figures and "target met"/"target MISSED"; it asserts nothing.

    /path/to/venv/bin/python scripts/bench_dashboard.py [--agents 100000] [--requests 200]
        [--keep]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time

import harness
import requests
from bench_api import seed
from harness import Server, free_port, j1msky_command, setup_instance

TARGET_PAGE_P50_MS = 30.0
TARGET_FIRST_LOAD_KB = 150.0
TARGET_RSS_MB = 80.0
ASSET = re.compile(r'<(?:link[^>]*href|script[^>]*src)="(/static/[^"]+)"')


def timed(session: requests.Session, url: str, count: int) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, status) of `count` sequential GETs."""
    times, status = [], 0
    for _ in range(count):
        began = time.perf_counter()
        response = session.get(url, timeout=60)
        times.append((time.perf_counter() - began) * 1000)
        status = response.status_code
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], status


def sign_in(session: requests.Session, base: str, key: str) -> None:
    page = session.get(base + "/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = session.post(base + "/login", data={"key": key, "csrf_token": token},
                            allow_redirects=False, timeout=10)
    if response.status_code != 302:
        raise RuntimeError(f"sign-in failed: {response.status_code}")


def first_load_bytes(base: str, cookies) -> tuple[int, int, list[str]]:
    """(bytes of a first load, bytes of a second load, assets) of the overview."""
    session = requests.Session()
    session.cookies.update(cookies)
    html = session.get(base + "/", timeout=10, headers={"Accept-Encoding": "identity"})
    assets = ASSET.findall(html.text)
    total = len(html.content)
    for path in assets:
        response = session.get(base + path, timeout=10, headers={"Accept-Encoding": "identity"})
        if "immutable" not in response.headers.get("Cache-Control", ""):
            raise RuntimeError(f"{path} is not cached for good")
        total += len(response.content)
    return total, len(html.content), assets


def seed_feed(db_path: str, ids: list[str], key_id: str) -> None:
    """An agent.completed event and an agent.spawn audit entry per agent (the feed and
    the audit log at the same size as the agents table)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO events (type, created_at, data) SELECT 'agent.completed',"
            " completed_at, json_object('agent_id', agent_id, 'model', model) FROM agents"
            " WHERE agent_id = ?", ((i,) for i in ids))
        conn.executemany(
            "INSERT INTO audit_log (timestamp, event, severity, api_key_id, ip_address,"
            " resource_type, resource_id, details) SELECT created_at, 'agent.spawn', 'info', ?,"
            " '127.0.0.1', 'agent', agent_id, json_object('model', model) FROM agents"
            " WHERE agent_id = ?", ((key_id, i) for i in ids))
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


def verdict(ok: bool) -> str:
    return "target met" if ok else "target MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="GETs per page")
    parser.add_argument("--keep", action="store_true", help="keep the instance folder")
    args = parser.parse_args()

    instance = tempfile.mkdtemp(prefix="j1msky-bench-dashboard-")
    stops: list[tuple[str, object]] = []
    try:
        settings = harness.config(webhooks={"allowed_networks": ["127.0.0.0/8"]})
        env, key = setup_instance(instance, settings, "bench", (
            "agents:read", "agents:write", "billing:read", "admin:write"))
        from j1msky.config import load_file
        config = load_file(os.path.join(instance, "config.json"))
        began = time.perf_counter()
        ids = seed(os.path.join(instance, "j1msky.sqlite3"), args.agents, key["key_id"],
                   config, set())
        seed_feed(os.path.join(instance, "j1msky.sqlite3"), ids, key["key_id"])
        print(f"seeded {args.agents} agents, events and audit entries in"
              f" {time.perf_counter() - began:.1f}s")

        port = free_port()
        server = Server("serve", [*j1msky_command(), "serve", "--host", "127.0.0.1",
                                  "--port", str(port), "--threads", "8"],
                        env, os.path.join(instance, "serve.log"), port)
        stops.append(("serve", server))
        server.start("/login")  # answers without a key: the log stays free of 401s
        base = f"http://127.0.0.1:{port}"

        browser = requests.Session()
        sign_in(browser, base, key["key"])
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {key['key']}"
        agent = ids[len(ids) // 2]
        hook = api.post(base + "/api/webhooks", timeout=10, data=json.dumps(
            {"url": "http://127.0.0.1:9/hook", "events": ["agent.failed"]}),
            headers={"Content-Type": "application/json"}).json()["id"]
        pages = {
            "GET / (overview)": "/",
            "GET /live/overview (its refresh)": "/live/overview",
            "GET /agents": "/agents",
            "GET /agents?status=failed&model=opus&sort=-cost":
                "/agents?status=failed&model=opus&sort=-cost",
            "GET /agents?team=team_research&created_after=…":
                "/agents?team=team_research&created_after=2000-01-01",
            "GET /agents/<id>": f"/agents/{agent}",
            "GET /live/agents/<id>": f"/live/agents/{agent}",
            "GET /agents/new": "/agents/new",
            "GET /billing (month to date)": "/billing",
            "GET /billing?start=…&end=… (the last 366 days)":
                f"/billing?start={dt.date.today() - dt.timedelta(days=365)}&end={dt.date.today()}",
            "GET /billing/usage.csv": "/billing/usage.csv",
            "GET /events": "/events",
            "GET /events?type=agent.completed": "/events?type=agent.completed",
            "GET /live/feed (its refresh)": "/live/feed",
            "GET /webhooks": "/webhooks",
            "GET /webhooks/<id> (deliveries)": f"/webhooks/{hook}",
            "GET /settings/keys": "/settings/keys",
            "GET /settings/sessions": "/settings/sessions",
            "GET /settings/limits": "/settings/limits",
            "GET /settings/security": "/settings/security",
            "GET /settings/audit": "/settings/audit",
            "GET /settings/audit?event=agent.spawn&severity=info":
                "/settings/audit?event=agent.spawn&severity=info",
        }
        baseline = {"GET /api/orchestrator/status": "/api/orchestrator/status",
                    "GET /api/agents (baseline)": "/api/agents?sort=-created_at&limit=20"}
        for session, table in ((browser, pages), (api, baseline)):  # warm the caches
            for path in table.values():
                session.get(base + path, timeout=60)

        print(f"\nserver time per page, {args.requests} sequential GETs each,"
              f" {args.agents} agents stored:")
        api_p50, _, _ = timed(api, base + baseline["GET /api/agents (baseline)"], args.requests)
        worst = 0.0
        for name, path in {**pages, **baseline}.items():
            session = api if path.startswith("/api/") else browser
            p50, p99, status = timed(session, base + path, args.requests)
            if session is browser:
                worst = max(worst, p50)
            print(f"  {name:52} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  ({p50 / api_p50:4.1f}x"
                  f" the API list)  [{status}]")
        print(f"  slowest console page p50 {worst:.2f} ms (target <= {TARGET_PAGE_P50_MS:g} ms):"
              f" {verdict(worst <= TARGET_PAGE_P50_MS)}")

        first, second, assets = first_load_bytes(base, browser.cookies)
        print(f"\nfirst load of the overview: {first / 1024:.1f} KB uncompressed (HTML +"
              f" {len(assets)} assets; target <= {TARGET_FIRST_LOAD_KB:g} KB):"
              f" {verdict(first / 1024 <= TARGET_FIRST_LOAD_KB)}")
        print(f"  a second load: {second / 1024:.1f} KB (the assets are cached immutable)")

        rss = server.worker_rss_mb()
        print(f"\nserve worker RSS after browsing every page: {rss:.1f} MB"
              f" (target <= {TARGET_RSS_MB:g} MB): {verdict(rss is not None and rss <= TARGET_RSS_MB)}")
        problems = harness.log_problems(server.log_path)
        print(f"server log: {problems or 'no tracebacks, no 4xx/5xx'}")
    finally:
        harness.clean_up(stops, instance, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The console in a real browser: Debian's chromium driven by Selenium, against a real
`j1msky serve`. Every page is also photographed at 360x740 and 1280x800 into
build/screenshots/ (git-ignored); the best are committed under docs/screenshots/."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import shutil
import sqlite3
import time
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from j1msky.config import load_file
from j1msky.services import budget
from tests.helpers import config_for_tests
from tests.live import LiveServer, free_port
from tests.local_server import LocalServer

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ready  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
INSTALL = "install Debian's browser for these tests: apt-get install -y chromium chromium-driver"
SHOTS = os.path.join(os.path.dirname(__file__), "..", "..", "build", "screenshots")
PHONE, LAPTOP = (360, 740), (1280, 800)
XSS = '<img src=x onerror=alert(1)>\n<script>document.title="pwned";alert(2)</script>'

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the browser tests: {INSTALL}")
    pytest.skip(INSTALL, allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One live server for the module: slow simulated anthropic models (sonnet, opus) so
    an agent can be watched and cancelled; k2p5 answers at once."""
    instance = tmp_path_factory.mktemp("console")
    config = config_for_tests(providers={
        "anthropic": {"kind": "simulated", "hourly": 1000, "delay": 2.5},
        "kimi-coding": {"kind": "simulated", "hourly": 1000, "delay": 0}},
        server={"threads": 8}, security={"auth_failures_to_block": 1000},
        streams={"max_seconds": 120, "heartbeat_seconds": 2},
        webhooks={"allowed_networks": ["127.0.0.0/8"], "retry_schedule_seconds": [0.5]})
    (instance / "config.json").write_text(json.dumps(config))
    live = LiveServer(instance)
    live.cli("init")
    live.start()
    yield live
    live.kill()


@pytest.fixture(scope="module")
def owner_key(server):
    return server.create_key("agents:read", "agents:write", "billing:read", "admin:write")


def new_driver(size=LAPTOP, downloads: str | None = None):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={size[0]},{size[1]}", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if downloads:
        options.add_experimental_option("prefs", {"download.default_directory": downloads,
                                                  "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    if downloads:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": downloads})
    resize(driver, size)
    return driver


def resize(driver, size) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": size[1], "deviceScaleFactor": 1,
        "mobile": size == PHONE})


@pytest.fixture
def browser():
    drivers = []

    def make(size=LAPTOP, downloads=None):
        driver = new_driver(size, downloads)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.quit()


def sign_in(driver, server, key: str, next_path: str = "/"):
    driver.get(f"{server.url}/login?next={next_path}")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    # The URL changes when the next page's navigation commits, before its document is
    # in: elements found then can belong to the page being replaced.
    WebDriverWait(driver, 10).until(
        lambda d: "/login" not in d.current_url
        and d.execute_script("return document.readyState") == "complete")


def wait(driver, timeout: float = 15) -> WebDriverWait:
    """A wait that shrugs off elements the live view replaced under it."""
    return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException])


def wait_text(driver, text: str, timeout: float = 15):
    wait(driver, timeout).until(lambda d: text in d.find_element(By.TAG_NAME, "body").text)


def agent_status(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, ".agent").get_attribute("data-status")


def problems(driver) -> list[str]:
    """Console errors and CSP violations logged since the last call."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]]


def no_dialog(driver) -> bool:
    try:
        _ = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def shoot(driver, name: str) -> None:
    """Photograph the page at phone and laptop sizes, checking there is no sideways scroll."""
    os.makedirs(SHOTS, exist_ok=True)
    for label, size in (("phone", PHONE), ("laptop", LAPTOP)):
        resize(driver, size)
        driver.set_window_size(size[0], max(size[1], page_height(driver)))
        resize(driver, size)
        time.sleep(0.2)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {size}"
        driver.save_screenshot(os.path.join(SHOTS, f"{name}-{label}.png"))
    resize(driver, LAPTOP)


def page_height(driver) -> int:
    return driver.execute_script("return document.documentElement.scrollHeight")


# Every page a signed-in owner can open, with the name of its screenshot.
PAGES = (("/", "overview"), ("/agents", "agents"), ("/agents/new", "spawn"),
         ("/billing", "billing"), ("/events", "events"), ("/webhooks", "webhooks"),
         ("/settings/keys", "keys"), ("/settings/sessions", "sessions"),
         ("/settings/limits", "limits"), ("/settings/security", "security"),
         ("/settings/audit", "audit"))


def api(server, key: dict, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, server.url + path, timeout=10,
                            headers={"Authorization": f"Bearer {key['key']}"}, **kw)


# -- tests ---------------------------------------------------------------------------------

def test_sign_in_with_a_cli_key_and_the_cookie_flags(server, owner_key, browser):
    driver = browser(PHONE)
    driver.get(server.url + "/")
    assert "/login?next=/" in driver.current_url
    shoot(driver, "sign-in")
    sign_in(driver, server, owner_key["key"])
    wait_text(driver, "Today's spend")
    wait(driver).until(lambda d: re.fullmatch(
        r"updated \d+ s ago", d.find_element(By.CSS_SELECTOR, ".live-status").text))
    [cookie] = [c for c in driver.get_cookies() if c["name"] == "j1msky_session"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/" and cookie["secure"] is False
    assert driver.execute_script("return document.cookie").find("j1msky_session") == -1
    assert problems(driver) == []


def test_sign_in_with_a_login_link(server, owner_key, browser):
    out = server.cli("login-link").stdout
    path = re.search(r"/login/link/\S+", out).group(0)
    driver = browser(PHONE)
    driver.get(server.url + path)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_text(driver, "Today's spend")
    driver.delete_all_cookies()
    driver.get(server.url + path)  # used up
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_text(driver, "cannot sign you in")


def test_spawn_watch_it_complete_then_every_page_is_clean(server, owner_key, browser):
    driver = browser()
    sign_in(driver, server, owner_key["key"], "/agents/new")
    driver.find_element(By.ID, "task").send_keys("Write a limerick\nabout a Raspberry Pi")
    Select(driver.find_element(By.ID, "model")).select_by_visible_text("sonnet")
    driver.find_element(By.CSS_SELECTOR, "button[value=spawn]").click()
    wait_text(driver, "Working…", 10)
    url = driver.current_url
    driver.execute_script("window.notReloaded = true")
    wait(driver, 20).until(lambda d: agent_status(d) == "completed")
    assert driver.execute_script("return window.notReloaded") is True  # no reload happened
    assert driver.current_url == url
    assert "finished" in driver.find_element(By.CSS_SELECTOR, ".live-status").text
    shoot(driver, "agent")
    for path, name in PAGES:
        driver.get(server.url + path)
        time.sleep(0.3)
        shoot(driver, name)
        assert problems(driver) == [], path


def test_recommend_then_cancel_after_confirming(server, owner_key, browser):
    driver = browser(PHONE)
    sign_in(driver, server, owner_key["key"], "/agents/new")
    driver.find_element(By.ID, "task").send_keys("Review this code")
    Select(driver.find_element(By.ID, "task_type")).select_by_visible_text("coding")
    driver.find_element(By.CSS_SELECTOR, "button[value=recommend]").click()
    WebDriverWait(driver, 10).until(ready.text_to_be_present_in_element(
        (By.ID, "recommendation"), "Recommended:"))
    assert driver.current_url.endswith("/agents/new")  # htmx swapped only the box
    Select(driver.find_element(By.ID, "model")).select_by_visible_text("opus")
    driver.find_element(By.CSS_SELECTOR, "button[value=spawn]").click()
    wait_text(driver, "Cancel…")
    driver.find_element(By.LINK_TEXT, "Cancel…").click()
    wait_text(driver, "Cancel this agent?")
    shoot(driver, "cancel")
    driver.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait_text(driver, "Cancelled")
    wait(driver).until(lambda d: agent_status(d) == "cancelled")
    assert problems(driver) == []


def test_create_a_key_and_see_it_exactly_once(server, owner_key, browser):
    driver = browser(PHONE)
    sign_in(driver, server, owner_key["key"], "/settings/keys")
    driver.find_element(By.ID, "name").send_keys("phone")
    driver.find_element(By.CSS_SELECTOR, "input[value='agents:read']").click()
    driver.find_element(By.CSS_SELECTOR, "form[action$='/settings/keys'] button[type=submit]").click()
    wait_text(driver, "shown only this once")
    key = driver.find_element(By.ID, "new-key").text
    assert key.startswith("live_sk_")
    assert driver.find_element(By.CSS_SELECTOR, "button.copy").is_displayed()
    shoot(driver, "key-created")
    assert structure_faults(driver) == []
    assert requests.get(server.url + "/api/health", timeout=5,
                        headers={"Authorization": f"Bearer {key}"}).status_code == 200
    driver.get(server.url + "/settings/keys")
    assert key not in driver.page_source and key[:12] in driver.page_source
    driver.back()  # the page that showed it is not kept (no-store)
    assert key not in driver.page_source or "Confirm Form Resubmission" in driver.page_source


def test_revoking_a_key_sends_its_other_browser_back_to_sign_in(server, owner_key, browser):
    victim = server.create_key("agents:read")
    watcher = browser()
    sign_in(watcher, server, victim["key"])
    wait_text(watcher, "Today's spend")
    admin = browser()
    sign_in(admin, server, owner_key["key"], f"/settings/keys/{victim['key_id']}/revoke")
    admin.find_element(By.ID, "reason").send_keys("lost phone")
    admin.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait_text(admin, "Revoked")
    WebDriverWait(watcher, 15).until(lambda d: "/login" in d.current_url)
    wait_text(watcher, "Your session has ended")


def test_untrusted_text_never_runs_anywhere(server, owner_key, browser):
    requests.post(server.url + "/api/spawn", timeout=5, json={"model": "k2p5", "task": XSS},
                  headers={"Authorization": f"Bearer {owner_key['key']}"}).raise_for_status()
    driver = browser()
    sign_in(driver, server, owner_key["key"], "/agents")
    for path in ("/", "/agents"):
        driver.get(server.url + path)
        time.sleep(0.5)
        assert no_dialog(driver) and "pwned" not in driver.title
    driver.find_element(By.PARTIAL_LINK_TEXT, "onerror").click()
    time.sleep(1)
    assert no_dialog(driver) and "pwned" not in driver.title
    assert "<img src=x onerror=alert(1)>" in driver.find_element(By.CSS_SELECTOR, ".box").text
    assert driver.find_elements(By.CSS_SELECTOR, "main img") == []
    assert problems(driver) == []


class Attacker(LocalServer):
    """Another site (127.0.0.2) with a form that posts to the console on load."""

    NAME = "attacker"

    class HANDLER(BaseHTTPRequestHandler):
        def do_GET(self):
            target = self.server.owner.target
            body = (f'<form id="f" method="post" action="{target}/settings/keys">'
                    '<input name="name" value="evil"><input name="scopes" value="admin:write">'
                    '</form><script>document.getElementById("f").submit()</script>').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass


def test_a_cross_site_form_post_is_refused(server, owner_key, browser):
    driver = browser()
    sign_in(driver, server, owner_key["key"])
    attacker = Attacker("127.0.0.2", free_port())
    attacker.target = server.url
    with attacker:
        driver.get(attacker.url + "/")
        WebDriverWait(driver, 10).until(lambda d: d.current_url.startswith(server.url))
        time.sleep(0.5)
    assert "evil" not in requests.get(server.url + "/api/keys", timeout=5, headers={
        "Authorization": f"Bearer {owner_key['key']}"}).text
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "Cross-site request refused" in body or "Sign in" in body


def test_the_overview_follows_a_change_without_reloading(server, owner_key, browser):
    driver = browser(PHONE)
    sign_in(driver, server, owner_key["key"])
    wait(driver).until(lambda d: "updated" in d.find_element(By.CSS_SELECTOR, ".live-status").text)
    driver.execute_script("window.notReloaded = true")
    agent_id = requests.post(
        server.url + "/api/spawn", timeout=5, json={"model": "k2p5", "task": "tick"},
        headers={"Authorization": f"Bearer {owner_key['key']}"}).json()["agent_id"]
    # The issue asks for 2 s; the wait allows more so a loaded CI machine does not flake.
    wait(driver, 5).until(lambda d: agent_id in d.find_element(By.CLASS_NAME, "events").text)
    assert driver.execute_script("return window.notReloaded") is True


def test_edit_the_ip_allow_list_with_the_lock_out_refused(server, owner_key, browser):
    driver = browser(PHONE)
    sign_in(driver, server, owner_key["key"], "/settings/security")
    assert driver.find_element(By.ID, "your-ip").text == "127.0.0.1"
    before = api(server, owner_key, "GET", "/api/security/ip-whitelist").json()
    box = driver.find_element(By.ID, "allowed_ips")
    box.clear()
    box.send_keys("10.0.0.0/8")
    enforce = driver.find_element(By.NAME, "enforce")
    if not enforce.is_selected():
        enforce.click()
    driver.find_element(By.CSS_SELECTOR, "form[action$='/allow-list'] button[type=submit]").click()
    wait_text(driver, "Refusing to lock you out: your address 127.0.0.1 is not in allowed_ips")
    # The refusal is a 409 page, which the browser logs; nothing else may be.
    assert [m for m in problems(driver) if "status of 409 (CONFLICT)" not in m] == []
    shoot(driver, "security-refused")
    assert api(server, owner_key, "GET", "/api/security/ip-whitelist").json() == before
    box = driver.find_element(By.ID, "allowed_ips")
    box.clear()
    box.send_keys("127.0.0.1/32\n10.0.0.0/8")
    driver.find_element(By.CSS_SELECTOR, "form[action$='/allow-list'] button[type=submit]").click()
    wait_text(driver, "The allow list is saved.")
    saved = api(server, owner_key, "GET", "/api/security/ip-whitelist").json()
    assert saved["allowed_ips"] == ["127.0.0.1/32", "10.0.0.0/8"] and saved["enforce"] is True
    api(server, owner_key, "PUT", "/api/security/ip-whitelist",
        json={"allowed_ips": [], "enforce": False}).raise_for_status()
    assert problems(driver) == []


def spend_on_earlier_days(server, key_id: str) -> None:
    """Calls charged on earlier days of this month by the ledger's own function (some at
    an estimate), so the chart has bars to draw."""
    config = load_file(os.path.join(server.instance, "config.json"))
    today = dt.date.fromisoformat(budget.today(config))
    conn = sqlite3.connect(os.path.join(server.instance, "j1msky.sqlite3"), timeout=10)
    with conn:
        for back in range(1, today.day):
            for model, provider in (("opus", "anthropic"), ("k2p5", "kimi-coding")):
                budget.charge(conn, config, day=(today - dt.timedelta(days=back)).isoformat(),
                              model=model, provider=provider, key_id=key_id,
                              cost=budget.micros(0.4 + (back * 7 % 5) / 4),
                              input_tokens=900, output_tokens=300, estimated=back % 6 == 0)
    conn.close()


def test_download_the_billing_csv(server, owner_key, browser, tmp_path):
    agent_id = api(server, owner_key, "POST", "/api/spawn",
                   json={"model": "k2p5", "task": "bill me"}).json()["agent_id"]
    deadline = time.monotonic() + 15
    while api(server, owner_key, "GET", f"/api/agent/{agent_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    spend_on_earlier_days(server, owner_key["key_id"])
    driver = browser(downloads=str(tmp_path))
    sign_in(driver, server, owner_key["key"], "/billing")
    wait_text(driver, "By model")
    shoot(driver, "billing")
    driver.find_element(By.LINK_TEXT, "Download CSV").click()
    target = tmp_path / "j1msky-usage.csv"
    WebDriverWait(driver, 15).until(lambda d: target.exists())
    expected = api(server, owner_key, "GET", "/api/billing/usage?format=csv").text
    assert target.read_bytes() == expected.encode()
    assert "day,model,provider,key_id" in expected and ",k2p5,kimi-coding," in expected
    assert problems(driver) == []


def test_register_a_webhook_test_it_and_delete_it(server, owner_key, browser, webhook_receiver):
    driver = browser(PHONE)
    sign_in(driver, server, owner_key["key"], "/webhooks")
    driver.find_element(By.ID, "url").send_keys(webhook_receiver.url + "/hook")
    driver.find_element(By.CSS_SELECTOR, "input[value='agent.completed']").click()
    driver.find_element(By.CSS_SELECTOR, "form[action$='/webhooks'] button[type=submit]").click()
    wait_text(driver, "shown only this once")
    secret = driver.find_element(By.ID, "webhook-secret").text
    assert secret.startswith("whsec_")
    assert driver.find_element(By.CSS_SELECTOR, "button.copy").is_displayed()
    shoot(driver, "webhook-created")
    assert structure_faults(driver) == []
    driver.find_element(By.LINK_TEXT, "Done").click()
    assert secret not in driver.page_source
    driver.find_element(By.CSS_SELECTOR, "form[action$='/test'] button").click()
    wait_text(driver, "Test delivery queued")
    webhook_receiver.wait_for(1, "/hook")
    deadline = time.monotonic() + 10
    while "delivered" not in driver.find_element(By.TAG_NAME, "main").text:
        assert time.monotonic() < deadline
        time.sleep(0.3)
        driver.refresh()
    shoot(driver, "webhook")
    driver.find_element(By.LINK_TEXT, "Delete…").click()
    wait_text(driver, "Delete this webhook?")
    driver.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait_text(driver, "Deleted the webhook")
    assert api(server, owner_key, "GET", "/api/webhooks").json()["data"] == []
    assert problems(driver) == []


def test_the_event_feed_follows_new_events_of_its_type(server, owner_key, browser):
    driver = browser(PHONE)
    sign_in(driver, server, owner_key["key"], "/events?type=agent.completed")
    wait(driver).until(lambda d: "updated" in d.find_element(By.CSS_SELECTOR, ".live-status").text)
    driver.execute_script("window.notReloaded = true")
    agent_id = api(server, owner_key, "POST", "/api/spawn",
                   json={"model": "k2p5", "task": XSS}).json()["agent_id"]
    wait(driver, 10).until(lambda d: agent_id in d.find_element(By.ID, "event-feed").text)
    assert driver.execute_script("return window.notReloaded") is True
    feed = driver.find_element(By.ID, "event-feed").text
    assert "agent.completed" in feed and "agent.spawned" not in feed
    assert no_dialog(driver) and "pwned" not in driver.title
    assert problems(driver) == []


# -- phone first: touch targets, themes, labels and landmarks, the keyboard ---------------

@pytest.fixture
def every_page(server, owner_key):
    """PAGES plus the pages that show one thing, with something on every list. What it
    adds it takes away again, so the other tests find the server as they left it."""
    agent_id = api(server, owner_key, "POST", "/api/spawn",
                   json={"model": "k2p5", "task": XSS}).json()["agent_id"]
    hook = api(server, owner_key, "POST", "/api/webhooks", json={
        "url": "http://127.0.0.1:9/hook", "events": ["agent.completed"]}).json()
    api(server, owner_key, "POST", f"/api/webhooks/{hook['id']}/test").raise_for_status()
    api(server, owner_key, "POST", "/api/security/block-ip", json={
        "ip": "198.51.100.7", "reason": "probing", "duration_hours": 1}).raise_for_status()
    spare = server.create_key("agents:read")
    deadline = time.monotonic() + 15
    while api(server, owner_key, "GET", f"/api/agent/{agent_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    yield PAGES + ((f"/agents/{agent_id}", "agent"), (f"/agents/{agent_id}/erase", "erase"),
                   (f"/webhooks/{hook['id']}", "webhook"),
                   (f"/webhooks/{hook['id']}/delete", "webhook-delete"),
                   (f"/settings/keys/{spare['key_id']}/revoke", "revoke"),
                   ("/agents/agt_nosuchagent", "not-found"))
    api(server, owner_key, "DELETE", f"/api/webhooks/{hook['id']}").raise_for_status()
    api(server, owner_key, "DELETE", "/api/security/blocked-ips/198.51.100.7").raise_for_status()
    api(server, owner_key, "DELETE", f"/api/keys/{spare['key_id']}", json={}).raise_for_status()


def signed_out_pages(server) -> tuple:
    link = re.search(r"/login/link/\S+", server.cli("login-link").stdout).group(0)
    return (("/login", "sign-in"), (link, "login-link"))


def visit_all(driver, server, owner_key, pages):
    """Open the signed-out pages, sign in, then open every page; yield each path once loaded
    (copy buttons shown by app.js)."""
    driver.delete_all_cookies()
    for path, _ in signed_out_pages(server):
        driver.get(server.url + path)
        yield path
    sign_in(driver, server, owner_key["key"])
    for path, _ in pages:
        driver.get(server.url + path)
        wait(driver).until(lambda d: d.execute_script("return document.readyState") == "complete")
        yield path


# WCAG 2.5.5 asks 44x44 px of every target, except a link inside a sentence, whose height
# is the line's (the "inline" exception): an <a> left display:inline whose parent also holds
# words of its own. A checkbox's target is its label, which wraps it. Two targets may not
# overlap, or a tap on one lands on the other. Closed <details> are opened first so the
# filter forms are measured too.
TOUCH_TARGETS_JS = r"""
document.querySelectorAll('details').forEach(d => { d.open = true; });
const words = /[\p{L}\p{N}]/u;
const inSentence = el => el.tagName === 'A' && getComputedStyle(el).display === 'inline' &&
  [...el.parentElement.childNodes].some(n => n.nodeType === Node.TEXT_NODE && words.test(n.textContent));
const small = [], inline = [], seen = [];
for (const el of document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary')) {
  if (!el.checkVisibility()) continue;
  const target = el.matches('[type=checkbox], [type=radio]') && el.labels.length ? el.labels[0] : el;
  const name = `${target.tagName.toLowerCase()} "${(target.textContent || target.name).trim().slice(0, 40)}"`;
  if (inSentence(el)) { inline.push(name); continue; }
  const box = target.getBoundingClientRect();
  if (box.width < 44 || box.height < 44)
    small.push(`${name} ${Math.round(box.width)}x${Math.round(box.height)}`);
  for (const [other, was] of seen) {
    const overlap = Math.min(box.bottom, was.bottom) - Math.max(box.top, was.top);
    if (overlap > 0.5 && Math.min(box.right, was.right) - Math.max(box.left, was.left) > 0.5)
      small.push(`${name} overlaps ${other} by ${Math.round(overlap)}px`);
  }
  seen.push([name, box]);
}
return {small, inline};
"""


def test_every_touch_target_is_44_px_on_a_phone(server, owner_key, browser, every_page):
    driver = browser(PHONE)
    small, inline = {}, {}
    for path in visit_all(driver, server, owner_key, every_page):
        found = driver.execute_script(TOUCH_TARGETS_JS)
        small.update({path: found["small"]} if found["small"] else {})
        inline.update({path: found["inline"]} if found["inline"] else {})
    print("exempt, inside a sentence:", inline)
    assert small == {}, json.dumps(small, indent=1)


STRUCTURE_JS = r"""
const named = el => el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') ||
  [...el.labels].some(label => label.textContent.trim());
return {
  unlabelled: [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(el => !named(el)).map(el => el.name || el.id || el.outerHTML.slice(0, 60)),
  orphanLabels: [...document.querySelectorAll('label')].filter(label => !label.control)
    .map(label => label.textContent.trim()),
  main: document.querySelectorAll('main').length,
  navs: document.querySelectorAll('nav').length,
  banner: document.querySelectorAll('body > header').length,
  headings: [...document.querySelectorAll('h1, h2, h3, h4, h5, h6')].map(h => Number(h.tagName[1])),
};
"""


def structure_faults(driver) -> list[str]:
    """Unlabelled fields, labels for nothing, missing landmarks, headings not from h1 down."""
    page = driver.execute_script(STRUCTURE_JS)
    levels = page["headings"]
    found = [f"no label: {name}" for name in page["unlabelled"]]
    found += [f"label for nothing: {text}" for text in page["orphanLabels"]]
    found += [f"{page['main']} <main>"] if page["main"] != 1 else []
    found += ["no <nav>"] if not page["navs"] else []
    found += ["no <header> banner"] if page["banner"] != 1 else []
    if levels[:1] != [1] or levels.count(1) != 1 or any(
            after > before + 1 for before, after in itertools.pairwise(levels)):
        found.append(f"headings {levels}")
    return found


def test_every_field_is_labelled_and_every_page_has_its_landmarks(
        server, owner_key, browser, every_page):
    driver = browser(PHONE)
    faults = {}
    for path in visit_all(driver, server, owner_key, every_page):
        found = structure_faults(driver)
        faults.update({path: found} if found else {})
    assert faults == {}, json.dumps(faults, indent=1)


def theme(driver, scheme: str) -> None:
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": scheme}]})


# Every run of visible text, and every coloured shape of a chart or gauge, with its colour
# and the colour it sits on (the backgrounds of its ancestors, blended), as sRGB 0-255.
COLOURS_JS = r"""
const rgba = css => {
  const m = css.match(/^rgba?\(([^)]*)\)$/);
  if (!m) throw new Error('unexpected colour ' + css);
  const [r, g, b, a = 1] = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
  return [r, g, b, a];
};
const over = (top, under) => top.slice(0, 3).map((c, i) => c * top[3] + under[i] * (1 - top[3]));
const backdrop = el => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const colour = rgba(getComputedStyle(e).backgroundColor);
    if (colour[3] > 0) layers.unshift(colour);
    if (colour[3] === 1) break;
  }
  if (!layers.length || layers[0][3] !== 1) throw new Error('no opaque backdrop for ' + el.tagName);
  return layers.reduce((under, top) => over(top, under), [0, 0, 0]);
};
const words = /[\p{L}\p{N}$%]/u;
const texts = [...document.querySelectorAll('main *, header *, footer *')].filter(el =>
  !el.closest('svg, option, .skip') && el.checkVisibility() &&
  [...el.childNodes].some(n => n.nodeType === Node.TEXT_NODE && words.test(n.textContent)));
const shapes = [...document.querySelectorAll('svg rect:not(.track), .swatch')];
const paint = el => getComputedStyle(el)[el.tagName === 'rect' ? 'fill' : 'backgroundColor'];
const body = getComputedStyle(document.body);
return {
  body: {colour: rgba(body.color), background: backdrop(document.body)},
  texts: texts.map(el => {
    const style = getComputedStyle(el), background = backdrop(el);
    return {what: el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') + ' "' +
                  el.textContent.trim().slice(0, 30) + '"',
            colour: over(rgba(style.color), background), background,
            large: parseFloat(style.fontSize) >= 24 ||
                   (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700)};
  }),
  shapes: shapes.map(el => ({what: el.getAttribute('class'),
                             colour: rgba(paint(el)),
                             background: backdrop(el.closest('svg') || el.parentElement)})),
};
"""


def luminance(rgb) -> float:
    """WCAG 2 relative luminance of an sRGB colour given as 0-255 channels."""
    linear = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4
              for c in rgb[:3]]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one, other) -> float:
    light, dark = sorted((luminance(one), luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def colour_faults(page: dict) -> list[str]:
    """Text under WCAG's 4.5:1 (3:1 when large), chart and gauge shapes under 3:1 (1.4.11)."""
    faults = []
    for text in page["texts"]:
        ratio = contrast(text["colour"], text["background"])
        if ratio < (3 if text["large"] else 4.5):
            faults.append(f"{text['what']} {ratio:.2f}")
    for shape in page["shapes"]:
        if shape["colour"][3] != 1:
            faults.append(f"{shape['what']} is translucent")
        elif (ratio := contrast(shape["colour"], shape["background"])) < 3:
            faults.append(f"{shape['what']} {ratio:.2f}")
    return faults


def test_light_and_dark_themes_follow_the_system_and_stay_readable(
        server, owner_key, browser, every_page):
    driver = browser(PHONE)
    spend_on_earlier_days(server, owner_key["key_id"])  # bars on the billing chart
    faults, bodies = {}, {}
    for scheme in ("light", "dark"):
        theme(driver, scheme)
        for path in visit_all(driver, server, owner_key, every_page):
            page = driver.execute_script(COLOURS_JS)
            bodies.setdefault(scheme, page["body"])
            found = colour_faults(page)
            faults.update({f"{scheme} {path}": found} if found else {})
            name = dict(every_page).get(path)
            if scheme == "dark" and name in ("overview", "billing", "agent", "keys"):
                shoot(driver, f"{name}-dark")
                resize(driver, PHONE)
    light, dark = bodies["light"], bodies["dark"]
    assert light["background"] != dark["background"] and light["colour"] != dark["colour"]
    assert luminance(light["background"]) > luminance(light["colour"])  # dark text on light
    assert luminance(dark["background"]) < luminance(dark["colour"])  # light text on dark
    for body in (light, dark):
        assert contrast(body["colour"], body["background"]) >= 4.5
    assert faults == {}, json.dumps(faults, indent=1)


FOCUSED_JS = r"""
const el = document.activeElement, style = getComputedStyle(el);
return {name: el.id || el.textContent.trim().slice(0, 30) || el.name,
        tag: el.tagName.toLowerCase(), inMain: !!el.closest('main'), inNav: !!el.closest('nav.site'),
        href: el.getAttribute('href'), keyboardFocus: el.matches(':focus-visible'),
        ring: (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0) ||
              style.boxShadow !== 'none',
        onScreen: el.getBoundingClientRect().left >= 0};
"""


def press(driver, *keys) -> dict:
    ActionChains(driver).send_keys(*keys).perform()
    return driver.execute_script(FOCUSED_JS)


def tab_until(driver, name: str, limit: int = 40) -> list[dict]:
    """Press Tab until the element called name has focus; every stop along the way."""
    stops = [press(driver, Keys.TAB)]
    while stops[-1]["name"] != name:
        assert len(stops) < limit, [stop["name"] for stop in stops]
        stops.append(press(driver, Keys.TAB))
    return stops


def test_sign_in_and_spawn_from_the_keyboard(server, owner_key, browser):
    driver = browser(PHONE)
    driver.get(server.url + "/login")
    stops = tab_until(driver, "key")
    assert [stop["name"] for stop in stops] == ["Skip to content", "J1MSKY", "key"]
    assert stops[0]["onScreen"]  # the skip link shows itself when it has focus
    ActionChains(driver).send_keys(owner_key["key"], Keys.ENTER).perform()
    wait_text(driver, "Today's spend")

    driver.get(server.url + "/agents/new")
    stops = tab_until(driver, "Spawn")
    names = [stop["name"] for stop in stops]
    nav = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "nav.site a")]
    assert [server.url + stop["href"] for stop in stops if stop["inNav"] and stop["href"]] == nav
    assert names[names.index("Sign out"):] == [
        "Sign out", "task", "model", "priority", "task_type", "complexity",
        "Timeout and privacy", "Show the recommendation", "Spawn"]
    unmarked = [stop["name"] for stop in stops if not (stop["keyboardFocus"] and stop["ring"])]
    assert unmarked == []  # every stop shows where the focus is

    driver.get(server.url + "/agents/new")  # Skip to content jumps over the nav
    press(driver, Keys.TAB)
    press(driver, Keys.ENTER)
    assert press(driver, Keys.TAB)["name"] == "task"
    ActionChains(driver).send_keys("Write a haiku about the keyboard").perform()
    tab_until(driver, "Spawn")
    press(driver, Keys.ENTER)
    wait(driver).until(lambda d: "/agents/" in d.current_url and "/new" not in d.current_url)
    assert "Write a haiku about the keyboard" in driver.find_element(By.CSS_SELECTOR, ".box").text
    assert problems(driver) == []

"""Console billing page: chart, breakdowns and CSV agree with GET /api/billing/usage."""
from __future__ import annotations

import datetime as dt
import html
import re

import pytest

from j1msky.db import connection_for, transaction
from j1msky.services import budget
from tests.dashboard.conftest import page_text

XSS_NAME = "<b>boss</b>"


def charge(app, day: str, model: str, provider: str, key_id: str, dollars: float,
           estimated: bool = False) -> None:
    """One paid call, charged by the ledger's own function."""
    conn = connection_for(app.config["DATABASE"])
    with transaction(conn):
        budget.charge(conn, app.extensions["j1msky_config"].get(), day=day, model=model,
                      provider=provider, key_id=key_id, cost=budget.micros(dollars),
                      input_tokens=100, output_tokens=200, estimated=estimated)


@pytest.fixture
def spent(app, admin, keys):
    """Spend on three days of March 2026 by two keys, part of it estimated."""
    other = keys.make("agents:write")
    conn = connection_for(app.config["DATABASE"])
    with transaction(conn):
        conn.execute("UPDATE api_keys SET name = ? WHERE id = ?", (XSS_NAME, other.key_id))
    charge(app, "2026-03-02", "opus", "anthropic", admin.key_id, 1.5)
    charge(app, "2026-03-02", "k2p5", "kimi-coding", other.key_id, 0.25)
    charge(app, "2026-03-05", "opus", "anthropic", other.key_id, 0.75, estimated=True)
    charge(app, "2026-04-01", "k2p5", "kimi-coding", admin.key_id, 9.0)
    return other


def test_the_page_shows_the_apis_figures_for_the_chosen_range(app, owner, client, admin, spent):
    query = "start=2026-03-01&end=2026-03-31"
    api = client.get(f"/api/billing/usage?{query}", headers=admin.headers).json
    response = owner.get(f"/billing?{query}")
    assert response.status_code == 200
    text = page_text(response)
    assert api["total_cost"] == 2.5 and api["estimated_cost_total"] == 0.75
    assert "$2.50" in text and "2026-03-01 to 2026-03-31" in text
    assert "Of which <strong>$0.7500</strong> is estimated" in text
    for name, cost in (("opus", 2.25), ("k2p5", 0.25), ("anthropic", 2.25),
                       ("kimi-coding", 0.25)):
        shown = f"${cost:.2f}" if cost >= 1 else f"${cost:.4f}"  # the money() macro
        assert f'>{name}</th><td class="num">{shown}<' in text, name
    assert "test (" in text and html.escape(XSS_NAME) in text and XSS_NAME not in text
    assert "$9.00" not in text  # April is outside the range


def test_the_chart_has_a_bar_a_day_scaled_to_the_peak(app, owner, spent):
    text = page_text(owner.get("/billing?start=2026-03-01&end=2026-03-31"))
    svg = text[text.index("<svg viewBox"):text.index("</svg>")]
    assert 'viewBox="0 0 310 100"' in svg  # 31 days, 10 units each
    # 2 March is the peak (1.75): a full-height bar, all reported.
    assert "<title>2026-03-02: $1.75</title>" in svg
    assert re.search(r'class="reported" x="11" y="0.0" width="8" height="100.0"', svg)
    # 5 March: 0.75 of 1.75, all of it estimated.
    assert "<title>2026-03-05: $0.7500 ($0.7500 estimated)</title>" in svg
    assert re.search(r'class="estimated" x="41" y="57.14\d*" width="8" height="42.85', svg)
    assert svg.count("<rect") == 3


def test_the_default_range_is_the_month_to_date(app, owner, client, admin):
    today = dt.date.fromisoformat(budget.today(app.extensions["j1msky_config"].get()))
    charge(app, today.isoformat(), "opus", "anthropic", admin.key_id, 0.5)
    text = page_text(owner.get("/billing"))
    assert f"{today.replace(day=1)} to {today}" in text and "$0.5000" in text
    assert f'value="{today.replace(day=1)}"' in text


def test_the_csv_download_is_the_apis_csv(app, owner, client, admin, spent):
    query = "start=2026-03-01&end=2026-03-31"
    page = page_text(owner.get(f"/billing?{query}"))
    link = html.unescape(re.search(r'href="(/billing/usage\.csv[^"]*)"', page).group(1))
    response = owner.get(link)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == "attachment; filename=j1msky-usage.csv"
    api = client.get(f"/api/billing/usage?{query}&format=csv", headers=admin.headers)
    assert response.data == api.data
    assert response.data.decode().count("\n") == 4  # header and three rows


@pytest.mark.parametrize("query, field, message", [
    ("start=2026-13-01", "start", "start must be a date (YYYY-MM-DD)"),
    ("start=2026-03-10&end=2026-03-01", "end", "end must not be before start"),
    ("start=2024-01-01&end=2026-01-01", "end", "choose at most 366 days to chart"),
])
def test_a_bad_range_is_shown_next_to_the_field(owner, spent, query, field, message):
    response = owner.get(f"/billing?{query}")
    assert response.status_code == 400
    text = page_text(response)
    assert f'<small class="error" id="{field}-error">{message}' in text
    assert "Download CSV" not in text


def test_a_bad_csv_range_is_400(owner):
    response = owner.get("/billing/usage.csv?start=nope")
    assert response.status_code == 400
    assert "start must be a date" in page_text(response)


def test_billing_needs_billing_read(browser, keys, owner):
    reader = keys.make("agents:read", "agents:write", "admin:write")
    assert browser.sign_in(reader).status_code == 302
    for path in ("/billing", "/billing/usage.csv"):
        response = browser.get(path)
        assert response.status_code == 403 and "billing:read" in page_text(response)
    assert 'href="/billing"' not in page_text(browser.get("/"))

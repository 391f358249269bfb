"""Console fixtures: a browser-like test client that signs in with a key."""
from __future__ import annotations

import re

import pytest

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A test client that keeps cookies, reads CSRF tokens from pages and posts forms
    the way a same-origin browser does (Sec-Fetch-Site: same-origin)."""

    def __init__(self, client):
        self.client = client
        self.token = None

    def get(self, path, **kw):
        response = self.client.get(path, **kw)
        found = CSRF.search(response.get_data(as_text=True))
        if found:
            self.token = found.group(1)
        return response

    def csrf(self) -> str:
        if self.token is None:
            self.get("/login")
        return self.token

    def post(self, path, data=None, headers=None, csrf=True, **kw):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf())
        headers = {"Sec-Fetch-Site": "same-origin", **(headers or {})}
        return self.client.post(path, data=data, headers=headers, **kw)

    def sign_in(self, key, next_path=None):
        path = "/login" + (f"?next={next_path}" if next_path else "")
        return self.post(path, {"key": key.key})

    def cookie(self, name):
        return self.client.get_cookie(name)


@pytest.fixture
def browser(app):
    return Browser(app.test_client())


@pytest.fixture
def owner(browser, admin):
    """A browser signed in with an all-scopes key."""
    assert browser.sign_in(admin).status_code == 302
    return browser


def page_text(response) -> str:
    return response.get_data(as_text=True)

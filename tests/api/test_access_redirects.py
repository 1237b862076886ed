"""After sign-in the browser goes only to a page of this app: every hostile `next` (other hosts in any spelling,
schemes, control characters, backslashes, percent-encoded forms) lands on /settings, through the real form."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask

HOSTILE = [
    "//evil.example", "//evil.example/settings", "///evil.example", "////evil.example",
    "/\\evil.example", "\\\\evil.example", "\\/evil.example", "/\\/evil.example",
    "https://evil.example", "http://evil.example/settings", "HTTPS://evil.example", "javascript:alert(1)",
    "JavaScript:alert(1)", "data:text/html,<script>alert(1)</script>", "evil.example", "settings",
    "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example", " //evil.example",
    "/\x00/evil.example", "/\x0b/evil.example", "/ /evil.example",
    "/%2F%2Fevil.example", "/%2f%2fevil.example", "%2F%2Fevil.example", "/%5Cevil.example", "/%5cevil.example",
    "/%252F%252Fevil.example", "/%09/evil.example", "/%0d%0a/evil.example", "/%00", "%2Fsettings",
    "https:evil.example", "https:/evil.example", "//settings@evil.example:80",
    "/.//evil.example", "//%65vil.example", "/%2e%2e//evil.example",
    "/settings#//evil.example", "/\u3002evil.example", "/\uff0f\uff0fevil.example", "/\uff0f/evil.example",
    "/no-such-page", "/settings/../../evil", "/auth/sign-out", "/" + "a" * 3000,
]
ALLOWED = ["/settings", "/admin/providers", "/settings?tab=keys"]


def sign_in_with_next(app: Flask, user: Any, target: str) -> str:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"10.99.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
    html = client.get("/auth/sign-in").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    resp = client.post("/auth/sign-in?next=" + quote(target, safe=""),
                       data={"email": user.email, "password": user.password, "csrf_token": match.group(1)})
    assert resp.status_code == 302
    return str(resp.headers["Location"])


@pytest.fixture(scope="module")
def member(make_user: Any) -> Any:
    return make_user()


@pytest.mark.parametrize("target", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_next_after_sign_in_goes_to_settings(app: Flask, member: Any, target: str) -> None:
    assert sign_in_with_next(app, member, target) == "/settings"


@pytest.mark.parametrize("target", ALLOWED)
def test_a_page_of_this_app_is_kept_as_next(app: Flask, member: Any, target: str) -> None:
    assert sign_in_with_next(app, member, target) == target

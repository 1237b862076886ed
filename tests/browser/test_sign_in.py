"""Sign in through the real page in headless Chromium."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import screenshot, sign_in


def test_sign_in_and_see_how_requests_are_served(page: Any, live_app: Any, make_user: Any) -> None:
    url, _ = live_app
    user = make_user()
    sign_in(page, url, user.email, user.password)
    assert page.locator("h1").first.inner_text()
    assert user.email in page.content()
    screenshot(page, "settings-after-sign-in")


def test_wrong_password_shows_message_beside_form(page: Any, live_app: Any, make_user: Any) -> None:
    url, _ = live_app
    user = make_user()
    page.goto(url + "/auth/sign-in")
    page.fill("#email", user.email)
    page.fill("#password", "definitely wrong")
    page.click("button[type=submit]")
    assert page.locator("#form-error").inner_text() == "Wrong email or password."

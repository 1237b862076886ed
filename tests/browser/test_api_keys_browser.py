"""The settings page's "API keys" section in headless Chromium, at desktop width and at 390 px: an error beside its
field, a key created and shown once with a working copy button, the key used with the openai SDK against the same
live app, the usage filter by key, and revoking after a confirmation refuses the key on its next request."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.browser.conftest import ARTIFACTS, screenshot, sign_in
from tests.e2e.conftest import Gateway, gateway  # noqa: F401  (gateway is a fixture)
from webapp.repos import credits as credits_repo

pytestmark = pytest.mark.browser
SECRET_RE = re.compile(r"^sb_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}$")


@pytest.fixture(params=[(1200, 900), (390, 844)], ids=["desktop", "390px"])
def keys_page(request: pytest.FixtureRequest, browser: Any, gateway: Gateway, make_user: Any,  # noqa: F811
              db: Any) -> Iterator[tuple[Any, Any, str]]:
    width, height = request.param
    user = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, 100_000_000, "browser test grant", None)
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.dialogs = dialogs
    sign_in(page, gateway.url, user.email, user.password)
    page.evaluate("window.__sameDocument = true")
    yield page, user, "desktop" if width > 600 else "390"
    assert page.evaluate("window.__sameDocument === true"), "an htmx action reloaded the whole page"
    context.close()


def _no_horizontal_scroll(page: Any) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow}px"


def test_create_copy_use_filter_and_revoke_a_key(keys_page: tuple[Any, Any, str], gateway: Gateway) -> None:  # noqa: F811
    page, _user, size = keys_page
    page.locator("#api-keys").scroll_into_view_if_needed()
    assert page.locator("#api-keys-none").is_visible()

    # A cap above what makes sense is refused beside its field; the name typed stays.
    page.fill("#api-keys-name", "nightly job")
    page.fill("#api-keys-cap", "-5")
    page.click("#api-keys-submit")
    page.wait_for_selector("#api-keys-cap-error")
    assert page.get_attribute("#api-keys-cap", "aria-invalid") == "true"
    assert page.input_value("#api-keys-name") == "nightly job"

    # Created: the secret is shown once, with a warning and a copy button that copies it.
    page.fill("#api-keys-cap", "5")
    page.click("#api-keys-submit")
    page.wait_for_selector("#api-key-secret")
    secret = page.inner_text("#api-key-secret").strip()
    assert SECRET_RE.fullmatch(secret)
    assert "cannot show it again" in page.inner_text("#api-key-created")
    page.click("#api-key-copy")
    page.wait_for_selector("#api-key-copied:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    assert page.locator("#api-keys-list tbody tr").count() == 1
    assert "nightly job" in page.inner_text("#api-keys-list")
    _no_horizontal_scroll(page)
    screenshot(page, f"settings-api-keys-{size}")
    page.locator("#api-keys").screenshot(path=str(ARTIFACTS / f"settings-api-keys-section-{size}.png"))

    # The key works with the openai SDK, as this user.
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0, timeout=30)
    reply = client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    gateway.flush_logs()

    # The usage section filters by key (and the secret is gone from the page once it is re-rendered).
    page.click("#usage button:has-text('Refresh')")
    page.wait_for_selector("#usage-api-key")
    page.select_option("#usage-api-key", label="API key “nightly job”")
    page.wait_for_selector("#recent tbody tr")
    assert page.locator("#recent tbody tr").count() == 1
    _no_horizontal_scroll(page)

    # Revoke, after a confirmation: the key is refused on its very next request.
    key_row = page.locator("#api-keys-list tbody tr").first
    key_row.locator("button:has-text('Revoke')").click()
    page.wait_for_selector("#api-keys-none")
    assert any("Revoke the key “nightly job”" in d for d in page.dialogs)
    assert secret not in page.content()
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "api_key_revoked"
    screenshot(page, f"settings-api-keys-revoked-{size}")

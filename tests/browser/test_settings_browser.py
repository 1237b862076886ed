"""The settings page in headless Chromium, served by the same live app as the e2e gateway (shared database), so
the usage chart shows requests that really went through /v1 to the fake upstream providers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.api.test_user_api import GOOD_KEY, SettingsProviders, settings_providers_fixture  # noqa: F401  (fixture)
from tests.browser.conftest import screenshot, sign_in
from tests.e2e.conftest import Gateway, gateway  # noqa: F401  (gateway is a fixture)
from webapp.repos import credits as credits_repo

pytestmark = pytest.mark.browser


@pytest.fixture()
def member_with_usage(gateway: Gateway, make_user: Any, db: Any) -> Any:  # noqa: F811
    """A member who has made real requests through the gateway: two on e2e-oa, one on e2e-an."""
    user = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, 100_000_000, "browser test grant", None)
    client = gateway.client(user.token)
    for model in ("echo-1", "echo-1", "e2e-an/echo-1"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "say something nice"}])
    gateway.flush_logs()
    return user


@pytest.fixture()
def settings_page(page: Any, gateway: Gateway, member_with_usage: Any) -> Iterator[Any]:  # noqa: F811
    """Signed in on /settings; confirmation dialogs are accepted; a marker proves the page never reloads."""
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    sign_in(page, gateway.url, member_with_usage.email, member_with_usage.password)
    page.evaluate("window.__sameDocument = true")
    page.dialogs = dialogs
    yield page
    if page.url.endswith("/settings"):  # tests that navigate away on purpose end elsewhere
        assert page.evaluate("window.__sameDocument === true"), "an htmx action reloaded the whole page"


def first_two_in_order(page: Any) -> list[str]:
    return [str(v) for v in page.locator("#order input[name=order]").evaluate_all("els => els.map(e => e.value)")[:2]]


def test_settings_journey_byok_key_order_override_usage_quote(settings_page: Any,
                                                              settings_providers: SettingsProviders,
                                                              ) -> None:
    page, slug = settings_page, settings_providers.ok

    # The usage chart is drawn from the requests made above, with numbers on hover (SVG <title>).
    bars = page.locator("#chart-requests rect.bar")
    assert bars.count() >= 2
    titles = page.locator("#chart-requests rect.bar title").all_text_contents()
    assert any(re.search(r"e2e-oa: 2 requests", t) for t in titles), titles
    assert any("e2e-an: 1 requests" in t for t in titles), titles
    assert page.locator("#recent tbody tr").count() == 3

    # Switch to BYOK, after a confirmation.
    page.click("#mode-submit")
    page.wait_for_selector("#mode-current:has-text('Bring your own key')")
    assert any("bring-your-own-key" in d for d in page.dialogs)
    assert page.locator("#mode-no-keys").is_visible()

    # Add a key: it is tested, shown masked, and the mode section learns there is a key now.
    page.fill(f"#key-{slug}-api_key", GOOD_KEY)
    page.click(f"#key-{slug}-submit")
    page.wait_for_selector(f"#key-{slug}-stored .masked")
    assert page.inner_text(f"#key-{slug}-stored .masked") == "••••" + GOOD_KEY[-4:]
    assert "The key works" in page.inner_text(f"#key-{slug}-outcome")
    page.wait_for_selector("#mode-no-keys", state="detached")
    assert GOOD_KEY not in page.content()
    assert page.input_value(f"#key-{slug}-api_key") == ""

    # Reorder providers.
    first, second = first_two_in_order(page)
    page.click(f"#move-down-{first}")
    expect(page.locator("#order input[name=order]").first).to_have_value(second)
    assert first_two_in_order(page) == [second, first]

    # Add a task override.
    page.fill("#ov-0-task", "summarize")
    page.select_option("#ov-0-provider", slug)  # BYOK mode: a provider the user has a key for
    page.fill("#ov-0-model", "echo-2")
    page.click("#overrides-submit")
    page.wait_for_selector("#overrides-outcome")
    assert page.input_value("#ov-0-task") == "summarize" and page.input_value("#ov-1-task") == ""

    # Get a quote: my key is a route at no credits, member routes show their cost.
    page.fill("#quote-prompt", "How much would this prompt cost on each route?")
    page.click("#quote-submit")
    page.wait_for_selector("#quote-results")
    routes = page.locator("#quote-results tbody tr").all_inner_texts()
    assert any(r.startswith("My key") and slug.upper() in r for r in routes), routes
    assert any(r.startswith("Member") and "E2E-OA" in r for r in routes), routes
    screenshot(page, "settings")


def test_validation_error_sits_beside_the_field_and_leaving_warns(settings_page: Any) -> None:
    page = settings_page
    page.click("#profile-username")
    page.keyboard.type("not valid!")
    page.click("#profile-submit")
    page.wait_for_selector("#profile-username-error")
    assert page.get_attribute("#profile-username", "aria-invalid") == "true"
    assert "profile-username-error" in (page.get_attribute("#profile-username", "aria-describedby") or "")
    assert page.input_value("#profile-username") == "not valid!"
    # The rejected change is still unsaved: leaving the page asks first.
    kinds: list[str] = []
    page.on("dialog", lambda d: kinds.append(d.type))
    page.goto(page.url.replace("/settings", "/healthz"))
    assert "beforeunload" in kinds


def test_saved_form_leaves_without_warning(settings_page: Any) -> None:
    page = settings_page
    page.click("#profile-first_name")
    page.keyboard.type("Ada")
    page.click("#profile-submit")
    page.wait_for_selector("#profile-outcome")
    kinds: list[str] = []
    page.on("dialog", lambda d: kinds.append(d.type))
    page.goto(page.url.replace("/settings", "/healthz"))
    assert kinds == []


def test_keyboard_only_reorder_keeps_focus_on_the_moved_provider(settings_page: Any) -> None:
    page = settings_page
    first, second = first_two_in_order(page)
    page.focus(f"#move-down-{first}")
    page.keyboard.press("Enter")
    expect(page.locator("#order input[name=order]").first).to_have_value(second)
    assert page.evaluate("document.activeElement.id") == f"move-down-{first}"
    page.keyboard.press("Shift+Tab")  # to the same provider's "up" button
    page.keyboard.press("Space")
    expect(page.locator("#order input[name=order]").first).to_have_value(first)


def test_keyboard_only_profile_save_with_enter(settings_page: Any) -> None:
    page = settings_page
    page.focus("#profile-first_name")
    page.keyboard.type("Grace")
    page.keyboard.press("Enter")
    page.wait_for_selector("#profile-outcome")
    assert page.input_value("#profile-first_name") == "Grace"


def test_removing_a_key_asks_first(settings_page: Any, settings_providers: SettingsProviders) -> None:
    page, slug = settings_page, settings_providers.down
    page.fill(f"#key-{slug}-api_key", GOOD_KEY)
    page.click(f"#key-{slug}-submit")
    page.wait_for_selector(f"#key-{slug}-remove")
    page.click(f"#key-{slug}-remove")
    page.wait_for_selector(f"#key-{slug}-stored:has-text('No key stored.')")
    assert any(d.startswith("Remove your") for d in page.dialogs)


def test_phone_width_page_fits_without_sideways_scrolling(browser: Any, gateway: Gateway,  # noqa: F811
                                                          member_with_usage: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    try:
        page = context.new_page()
        sign_in(page, gateway.url, member_with_usage.email, member_with_usage.password)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.locator("#chart-requests svg").bounding_box()["width"] <= 390
        screenshot(page, "settings-phone")
    finally:
        context.close()

"""The routing section of the settings page in a real browser (Debian's headless Chromium), on a phone (390 px) and
on a desktop: an override to a model nobody offers is refused beside its row with what is offered; the dearer
fallbacks setting saves; after an admin disables a model and a provider, the page warns about each override and
priority that no longer resolves — and nothing scrolls sideways. Screenshots go to artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Gateway

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}


@pytest.fixture()
def catalog_restored(admin_conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    yield admin_conn
    admin_conn.execute("update public.llm_providers set enabled = true where slug in ('ollama', 'lmstudio')")
    admin_conn.execute("update public.llm_model_rates set enabled = true where model = 'smollm2'")


def _page(browser: Any, gw: Gateway, user: Any, size: str) -> Any:
    context = browser.new_context(viewport=SIZES[size])
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(gw.url + "/auth/sign-in")
    page.fill("#email", user.email)
    page.fill("#password", user.password)
    page.click("button[type=submit]")
    page.wait_for_url("**/settings")
    return page


def _no_sideways_scroll(page: Any) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"the page scrolls sideways: {width} > {inner}"


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_routing_section_refuses_warns_and_fits(browser: Any, gw: Gateway, make_user: Any, size: str,
                                                catalog_restored: psycopg.Connection) -> None:
    user = make_user()
    page = _page(browser, gw, user, size)
    try:
        page.locator("#routing").scroll_into_view_if_needed()
        # An override to a provider nobody serves members with: refused beside the row, with what is offered.
        page.fill("#ov-0-task", "summarize")
        page.select_option("#ov-0-provider", "openai")
        page.fill("#ov-0-model", "gpt-4o")
        page.click("#overrides-submit")
        error = page.locator("#ov-0-error")
        expect(error).to_contain_text("openai is not offered to you in member mode")
        expect(error).to_contain_text("ollama (llama3.2, smollm2)")
        _no_sideways_scroll(page)
        # Offered ones save.
        page.select_option("#ov-0-provider", "ollama")
        page.fill("#ov-0-model", "smollm2")
        page.click("#overrides-submit")
        expect(page.locator("#overrides-outcome")).to_contain_text("Saved.")
        # Dearer fallbacks: off by default, saved when ticked.
        dearer = page.locator("#routing-dearer")
        expect(dearer).not_to_be_checked()
        dearer.check()
        page.click("#routing-options-submit")
        expect(page.locator("#routing-options-outcome")).to_contain_text("Saved.")
        expect(page.locator("#routing-dearer")).to_be_checked()
        # An admin switches the model off and LM Studio (in the order) off: the page warns about each.
        page.click("#move-up-lmstudio")  # saves the whole order as the user's priorities
        expect(page.locator("#order .outcome")).to_contain_text("Order saved.")
        catalog_restored.execute("update public.llm_model_rates set enabled = false where model = 'smollm2'")
        catalog_restored.execute("update public.llm_providers set enabled = false where slug = 'lmstudio'")
        page.reload()
        expect(page.locator("#overrides-warnings")).to_contain_text("'summarize' (ollama/smollm2) no longer resolves")
        expect(page.locator("#order-warnings")).to_contain_text("'lmstudio' in your provider order is disabled")
        expect(page.locator("#overrides-warnings")).to_be_visible()
        _no_sideways_scroll(page)
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#routing").screenshot(path=str(ARTIFACTS / f"routing-warnings-{size}.png"))
    finally:
        page.context.close()

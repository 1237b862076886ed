"""The providers panel in headless Chromium, on a desktop and on a phone (390 px): add a provider (an error beside
the field first), fetch its models from a real loopback upstream (progress shown, a second click dropped), add the
checked ones, bulk-edit a rate, retire it; the page never scrolls sideways. A member's settings page shows the
notice a retirement left. Screenshots: artifacts/admin-providers-{desktop,phone}-*.png, settings-retired-notice.png."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.support.admin import insert_log
from tests.support.upstreams import FakeUpstream, start_openai_upstream

VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = start_openai_upstream(models=["brw-alpha", "brw-beta", "brw-gamma-with-a-rather-long-model-name-v2"])
    yield up
    up.stop()


@pytest.fixture(params=list(VIEWPORTS))
def admin_page(request: Any, browser: Any, live_app: Any, make_user: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORTS[request.param], device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(10_000)
    admin = make_user(admin=True)
    sign_in(page, live_app[0], admin.email, admin.password)
    page.viewport_name = request.param
    yield page
    context.close()


def no_sideways_scroll(page: Any) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url} scrolls sideways at {inner} px: {width}"


def test_add_fetch_bulk_edit_retire(admin_page: Any, live_app: Any, upstream: FakeUpstream) -> None:
    page, base, name = admin_page, live_app[0], admin_page.viewport_name
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(base + "/admin/providers")
    no_sideways_scroll(page)
    screenshot(page, f"admin-providers-{name}-list")

    # Add a provider: a bad slug first, its error beside the field; then the right one.
    page.get_by_text("Add provider", exact=True).first.click()
    page.locator("#new-name").fill("Browser AI")
    page.locator("#new-slug").fill("Not A Slug")
    page.locator("#new-base_url").fill(upstream.base_url)
    page.locator("#new-extra_headers").fill("X-Title: Switchboard browser")
    page.locator("#add-provider input[name=needs_key]").uncheck()  # a keyless engine on loopback
    page.locator("#add-provider button[type=submit]").click()
    expect(page.locator("#new-slug-error")).to_contain_text("lowercase letters")
    expect(page.locator("#new-name")).to_have_value("Browser AI")  # what was typed is kept
    screenshot(page, f"admin-providers-{name}-add-error")
    slug = f"brw-{uuid.uuid4().hex[:6]}"
    page.locator("#new-slug").fill(slug)
    page.locator("#add-provider input[name=needs_key]").uncheck()
    page.locator("#add-provider button[type=submit]").click()
    expect(page.locator("#flash")).to_contain_text("provider added")
    body = page.locator(f"tbody[data-slug='{slug}']")
    expect(body).to_be_visible()
    pid = str(body.get_attribute("id")).removeprefix("provider-")
    no_sideways_scroll(page)

    # Fetch models: progress while the upstream is asked, the button disabled, a second click dropped.
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/models/fetch") else None)
    pattern = f"**/admin/providers/{pid}/models/fetch"
    held: list[Any] = []
    page.route(pattern, lambda route: held.append(route))
    fetch = page.get_by_test_id(f"fetch-{slug}")
    fetch.scroll_into_view_if_needed()
    fetch.click()
    expect(page.locator(f"#fetch-busy-{pid}")).to_be_visible()
    expect(fetch).to_be_disabled()
    screenshot(page, f"admin-providers-{name}-fetching")
    fetch.click(force=True)
    page.wait_for_timeout(300)
    assert len(sent) == 1, sent
    for route in held:
        route.continue_()
    page.unroute(pattern)
    checklist = page.locator(f"#fetched-{pid}")
    expect(checklist.locator("input[name=models]")).to_have_count(3)
    expect(page.locator(f"#fetch-busy-{pid}")).to_be_hidden()
    checklist.locator("input[value='brw-alpha']").check()
    checklist.locator("input[value='brw-gamma-with-a-rather-long-model-name-v2']").check()
    checklist.locator(f"#add-input_rate-{pid}").fill("1500")
    checklist.locator(f"#add-output_rate-{pid}").fill("6000")
    checklist.locator(f"#add-cached_input_rate-{pid}").fill("750")
    screenshot(page, f"admin-providers-{name}-checklist")
    checklist.get_by_role("button", name="Add checked models").click()
    expect(page.locator("#flash")).to_contain_text("2 model(s) added")
    rows = page.locator(f"#provider-{pid} table.rates-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("1,500 µcr/1K (1.5 credits/M tokens)")
    expect(rows.first).to_contain_text("750 µcr/1K (0.75 credits/M tokens)")
    no_sideways_scroll(page)

    # Bulk edit: the output rate of the selected model.
    page.locator(f"#provider-{pid} tr[data-model='brw-alpha'] input[name=rate_ids]").check()
    page.locator(f"#bulk-field-{pid}").select_option("output_rate")
    page.locator(f"#bulk-value-{pid}").fill("9000")
    page.locator(f"#bulk-{pid}").get_by_role("button", name="Apply to selected").click()
    expect(page.locator("#flash")).to_contain_text("selected models updated")
    expect(page.locator(f"#provider-{pid} tr[data-model='brw-alpha']")).to_contain_text("9,000 µcr/1K (9 credits/M")
    expect(page.locator(f"#provider-{pid} tr[data-model='brw-gamma-with-a-rather-long-model-name-v2']")) \
        .to_contain_text("6,000 µcr/1K")
    page.locator(f"#provider-{pid}").scroll_into_view_if_needed()
    screenshot(page, f"admin-providers-{name}-models")
    no_sideways_scroll(page)

    # Retire: no history, so it is deleted.
    page.get_by_test_id(f"retire-{slug}").click()
    expect(page.locator("#flash")).to_contain_text("retired, deleted (it had no history)")
    expect(page.locator(f"tbody[data-slug='{slug}']")).to_have_count(0)
    screenshot(page, f"admin-providers-{name}-retired")
    no_sideways_scroll(page)


def test_a_member_sees_why_a_provider_left_their_routing(browser: Any, live_app: Any, make_user: Any,
                                                          admin_conn: psycopg.Connection) -> None:
    """Retired with history from the panel; the member's settings page says what was removed, on a phone."""
    slug = f"brn-{uuid.uuid4().hex[:6]}"
    pid = admin_conn.execute(
        """insert into public.llm_providers (slug, name, api_style, base_url, default_model, needs_key)
           values (%s, 'Notice AI', 'openai', 'http://127.0.0.1:9/v1', 'm', false) returning id::text""",
        [slug]).fetchone()[0]  # type: ignore[index]
    member, admin = make_user(), make_user(admin=True)
    admin_conn.execute("""update public.user_preferences set default_provider = %s,
                              task_overrides = jsonb_build_object('translate',
                                  jsonb_build_object('provider', %s::text, 'model', 'm'))
                          where user_id = %s""", [slug, slug, member.id])
    insert_log(admin_conn, member.id, slug)
    context = browser.new_context(viewport=VIEWPORTS["phone"], device_scale_factor=1)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("dialog", lambda dialog: dialog.accept())
        sign_in(page, live_app[0], admin.email, admin.password)
        page.goto(live_app[0] + "/admin/providers")
        page.locator(f"#provider-{pid} summary").click()
        page.get_by_test_id(f"retire-{slug}").click()
        expect(page.locator("#flash")).to_contain_text("archived")
        expect(page.locator("#retired-providers")).to_contain_text("Notice AI")
        screenshot(page, "admin-providers-phone-archived")
        page.context.clear_cookies()
        sign_in(page, live_app[0], member.email, member.password)
        notice = page.locator("#notices .notice")
        expect(notice).to_contain_text("Provider Notice AI was retired by an admin; your default provider was "
                                       "cleared; your task override translate was removed.")
        no_sideways_scroll(page)
        screenshot(page, "settings-retired-notice")
        notice.get_by_role("button", name="Dismiss").first.click()
        expect(page.locator("#notices .notice")).to_have_count(0)
        page.reload()
        expect(page.locator("#notices .notice")).to_have_count(0)
    finally:
        context.close()

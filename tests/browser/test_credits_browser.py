"""Credits a user can follow, in Chromium (desktop and 390 px): a new member with 0 credits is told why requests
fail and switches to BYOK right there; the ledger pages with htmx ("Show older entries") until it sums to the
balance; a charge links to its receipt; the admin settings form changes the sign-up grant, which the next web
sign-up receives. Screenshots under artifacts/credits-*.png."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, screenshot, sign_in
from webapp.db import Database
from webapp.repos import credits as credits_repo
from webapp.services import credits as credits_service

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
DEFAULTS = ("update public.site_settings set signup_grant = 0, currency_code = 'USD', currency_symbol = '$',"
            " credit_value = 1000000, low_balance_threshold = 1000000, updated_by = null where id")


@pytest.fixture(params=["desktop", "phone"])
def viewport(request: Any) -> dict[str, int]:
    return PHONE if request.param == "phone" else DESKTOP


@pytest.fixture()
def tab(browser: Any, viewport: dict[str, int]) -> Iterator[Any]:
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.label = "phone" if viewport is PHONE else "desktop"
    yield page
    context.close()


def charge(db: Database, user_id: str, actual: int) -> str:
    rid = str(uuid.uuid4())
    credits_service.reserve_flex(db, user_id, rid, 1, 10_000, None)
    credits_service.settle_logged(db, rid, actual, {
        "request_id": rid, "user_id": user_id, "mode": "member", "status": 200, "provider": "openai",
        "model": "gpt-4o-mini", "key_source": "admin_db", "tokens_in": 2, "tokens_out": 1, "usage_source": "measured",
        "multiplier": "1.0", "fallback_path": ["openai"], "stream": False, "latency_ms": 3})
    return rid


def fits(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_a_new_member_with_no_credits_sees_why_and_switches_to_byok(tab: Any, live_app: Any, make_user: Any) -> None:
    user = make_user()
    sign_in(tab, live_app[0], user.email, user.password)
    notice = tab.locator("#zero-credits")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("0 credits")
    expect(notice).to_contain_text("ask an admin")
    expect(tab.locator("#balance")).to_have_text("0.000000")
    assert fits(tab), "the settings page does not scroll sideways"
    notice.scroll_into_view_if_needed()
    screenshot(tab, f"credits-zero-{tab.label}")
    tab.locator("#mode").screenshot(path=str(ARTIFACTS / f"credits-zero-mode-{tab.label}.png"))
    tab.on("dialog", lambda dialog: dialog.accept())
    tab.locator("#mode").get_by_role("button", name="Switch to bring-your-own-key").click()
    expect(tab.locator("#mode-current")).to_have_text("Bring your own key (BYOK)")
    expect(tab.locator("#zero-credits")).to_have_count(0)


def test_ledger_pages_with_htmx_and_sums_to_the_balance(tab: Any, live_app: Any, make_user: Any, db: Database,
                                                         admin_conn: psycopg.Connection) -> None:
    user = make_user()
    with db.as_service() as conn:
        for i in range(55):
            credits_repo.adjust(conn, user.id, 100_000 + i, f"grant {i}", None)
    rid = charge(db, user.id, 1)
    sign_in(tab, live_app[0], user.email, user.password)
    rows = tab.locator("#ledger-rows tr[data-id]")
    expect(rows).to_have_count(25)
    balance = admin_conn.execute("select balance from public.credit_accounts where user_id = %s",
                                 [user.id]).fetchone()[0]
    expect(tab.locator("#credits-balance")).to_have_text(f"{balance / 1_000_000:,.6f}")
    expect(tab.locator("#credits-money")).to_contain_text("≈ $")
    tab.locator("#ledger-older").click()
    expect(rows).to_have_count(50)
    tab.locator("#ledger-older").click()
    expect(rows).to_have_count(57)  # 55 grants, a reserve and its settle
    expect(tab.locator("#ledger-older")).to_have_count(0)
    ids = [int(x) for x in rows.evaluate_all("rs => rs.map(r => r.dataset.id)")]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 57
    deltas = rows.evaluate_all("rs => rs.map(r => Number(r.dataset.delta))")
    assert sum(deltas) == balance, "the ledger the user pages through sums to the balance"
    assert fits(tab)
    screenshot(tab, f"credits-ledger-{tab.label}")
    tab.locator("#credits").screenshot(path=str(ARTIFACTS / f"credits-section-{tab.label}.png"))
    tab.locator(f'#ledger a[href="/settings/receipts/{rid}"]').first.click()
    tab.wait_for_url(f"**/settings/receipts/{rid}")
    expect(tab.locator("#receipt-credits")).to_contain_text("0.000001")
    expect(tab.locator("#receipt-state")).to_have_text("settled")
    assert fits(tab)
    screenshot(tab, f"credits-receipt-{tab.label}")


def test_admin_settings_form_sets_the_grant_the_next_sign_up_receives(tab: Any, live_app: Any, make_user: Any,
                                                                      admin_conn: psycopg.Connection,
                                                                      browser: Any) -> None:
    admin = make_user(admin=True)
    sign_in(tab, live_app[0], admin.email, admin.password)
    try:
        tab.goto(live_app[0] + "/admin/settings")
        tab.locator("#set-signup_grant").fill("-3")
        tab.locator("#save-site-settings").click()
        expect(tab.locator("#set-signup_grant-error")).to_contain_text("From 0")
        expect(tab.locator("#set-signup_grant")).to_have_attribute("aria-invalid", "true")
        tab.locator("#set-signup_grant").fill("2.5")
        tab.locator("#set-currency_symbol").fill("€")
        tab.locator("#set-currency_code").fill("EUR")
        tab.locator("#set-credit_value").fill("0.5")
        tab.locator("#save-site-settings").click()
        expect(tab.locator("#flash")).to_contain_text("Settings saved")
        expect(tab.locator("#set-signup_grant")).to_have_value("2.500000")
        expect(tab.locator("#set-signup_grant-error")).to_have_count(0)
        assert fits(tab)
        screenshot(tab, f"credits-admin-settings-{tab.label}")
        tab.goto(live_app[0] + "/admin/audit?action=settings")
        expect(tab.locator("tr.audit-entry").first).to_contain_text("signup_grant")
        expect(tab.locator("tr.audit-entry").first.locator("ins").first).to_be_visible()
        screenshot(tab, f"credits-admin-audit-{tab.label}")

        fresh = browser.new_context(viewport=tab.viewport_size)
        newcomer = fresh.new_page()
        email, password = f"newcomer-{uuid.uuid4().hex[:8]}@example.test", "a long enough passphrase"
        newcomer.goto(live_app[0] + "/auth/sign-up")
        newcomer.fill("#email", email)
        newcomer.fill("#password", password)
        newcomer.click("button[type=submit]")
        expect(newcomer.locator("body")).to_contain_text(re.compile("sign in", re.I))
        sign_in(newcomer, live_app[0], email, password)
        expect(newcomer.locator("#balance")).to_have_text("2.500000")
        expect(newcomer.locator("#balance-money")).to_have_text("≈ €1.25")
        expect(newcomer.locator("#ledger-rows")).to_contain_text("sign-up grant")
        expect(newcomer.locator("#zero-credits")).to_have_count(0)
        screenshot(newcomer, f"credits-signup-grant-{tab.label}")
        fresh.close()
    finally:
        admin_conn.execute(DEFAULTS)

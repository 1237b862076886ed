"""The admin panel on a phone (390 px) and on a desktop: no page scrolls sideways, whatever the data (long emails,
model names, reasons, audit values); slow actions (grant credits, save and test a key, revoke) show progress while
they run and cannot be sent twice. Screenshots under artifacts/admin-phone-*.png and artifacts/admin-desktop-*.png."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.support.admin import insert_log, temp_providers
from tests.support.upstreams import FakeUpstream, start_openai_upstream
from webapp.db import Database
from webapp.repos import credits as credits_repo

GOOD = "sk-phone-admin-key-0a1b2c3d"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
LONG = "a-rather-long-unbroken-value-" * 4


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = start_openai_upstream(api_key=GOOD)
    yield up
    up.stop()


@pytest.fixture()
def provider(database_urls: tuple[str, str], upstream: FakeUpstream) -> Iterator[tuple[str, str]]:
    with temp_providers(database_urls[0], ("phone", upstream.base_url)) as made:
        yield made[0]


@pytest.fixture()
def seeded(make_user: Any, db: Database, admin_conn: psycopg.Connection, provider: tuple[str, str]) -> Any:
    """A member with a long email, a ledger with long reasons, a logged request with a long model name, and audit
    rows with long values: what would push a phone page sideways if anything could."""
    member = make_user()
    long_email = f"{'x' * 40}-{uuid.uuid4().hex[:6]}@a-very-long-domain-name.example.test"
    admin_conn.execute("update auth.users set email = %s where id = %s", [long_email, member.id])
    member.email = long_email
    with db.as_service() as conn:
        for i in range(5):
            credits_repo.adjust(conn, member.id, 1_234_567 + i, f"{LONG} {i}", None)
    request_id = insert_log(admin_conn, member.id, provider[0], model=LONG, error_code=None)
    admin_conn.execute("insert into public.admin_audit_log (actor_id, action, target, before, after)"
                       " values (null, 'provider.update', %s, %s::jsonb, %s::jsonb)",
                       [f"provider:{LONG}", json.dumps({"base_url": f"https://{LONG}.example.test/v1"}),
                        json.dumps({"base_url": f"https://{LONG}.example.test/v2", "enabled": True})])
    return {"member": member, "request_id": request_id}


def admin_context(browser: Any, live_app: Any, make_user: Any, viewport: dict[str, int]) -> Any:
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(10_000)
    admin = make_user(admin=True)
    sign_in(page, live_app[0], admin.email, admin.password)
    page.admin = admin
    return page


@pytest.fixture()
def phone(browser: Any, live_app: Any, make_user: Any) -> Iterator[Any]:
    page = admin_context(browser, live_app, make_user, PHONE)
    yield page
    page.context.close()


@pytest.fixture()
def desktop(browser: Any, live_app: Any, make_user: Any) -> Iterator[Any]:
    page = admin_context(browser, live_app, make_user, DESKTOP)
    yield page
    page.context.close()


def pages(seeded: Any) -> list[tuple[str, str]]:
    member, rid = seeded["member"], seeded["request_id"]
    return [("users", "/admin/users"), ("user", f"/admin/users/{member.id}"), ("logs", "/admin/logs"),
            ("audit", "/admin/audit"), ("analytics", "/admin/analytics"), ("keys", "/admin/keys"),
            ("receipt", f"/admin/logs/{rid}"), ("settings", "/admin/settings")]


def no_sideways_scroll(page: Any) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")  # type: ignore[no-any-return]


def test_no_admin_page_scrolls_sideways_at_390px(phone: Any, live_app: Any, seeded: Any) -> None:
    for name, path in pages(seeded):
        phone.goto(live_app[0] + path)
        expect(phone.locator("nav.admin-nav")).to_be_visible()
        width, inner = no_sideways_scroll(phone)
        screenshot(phone, f"admin-phone-{name}")
        assert inner == 390 and width <= inner, f"{path} scrolls sideways at 390 px: {width} > {inner}"
    # The ledger on the user's page is a list of labelled cards, not a table wider than the screen.
    phone.goto(live_app[0] + f"/admin/users/{seeded['member'].id}")
    first = phone.locator("#user-ledger tbody tr").first
    assert phone.evaluate("getComputedStyle(document.querySelector('#user-ledger tbody tr')).display") == "block"
    labels = phone.evaluate("[...document.querySelectorAll('#user-ledger tbody tr:first-child td')]"
                            ".map(td => getComputedStyle(td, '::before').content)")
    assert '"Balance after"' in labels and '"Reason"' in labels, labels
    box = first.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390


def test_admin_pages_on_a_desktop(desktop: Any, live_app: Any, seeded: Any) -> None:
    for name, path in pages(seeded):
        desktop.goto(live_app[0] + path)
        width, inner = no_sideways_scroll(desktop)
        assert width <= inner, f"{path} scrolls sideways on a desktop"
        if name in ("user", "audit", "settings", "logs"):
            screenshot(desktop, f"admin-desktop-{name}")
    # Wide screens keep the tables as tables.
    desktop.goto(live_app[0] + "/admin/logs")
    assert desktop.evaluate("getComputedStyle(document.querySelector('#logs-table thead')).position") != "absolute"


def held(page: Any, pattern: str) -> list[Any]:
    """Hold every request matching `pattern` until released: the test sees the page while the action runs."""
    routes: list[Any] = []
    page.route(pattern, lambda route: routes.append(route))
    return routes


def release(page: Any, routes: list[Any], pattern: str) -> None:
    assert routes, "the action sent its request"
    for route in routes:
        route.continue_()
    page.unroute(pattern)


def test_granting_credits_shows_progress_and_cannot_be_sent_twice(phone: Any, live_app: Any, seeded: Any,
                                                                  make_user: Any) -> None:
    target = make_user()
    phone.goto(live_app[0] + f"/admin/users/{target.id}")
    phone.locator("#amount").fill("2.5")
    phone.locator("#reason").fill("phone grant")
    pattern = f"**/admin/users/{target.id}/credits"
    sent: list[str] = []
    phone.on("request", lambda r: sent.append(r.url) if r.method == "POST" and r.url.endswith("/credits") else None)
    routes = held(phone, pattern)
    phone.locator("#grant-credits").click()
    expect(phone.locator("#credits-busy")).to_be_visible()
    expect(phone.locator("#credits-actions")).to_have_attribute("disabled", "")
    expect(phone.locator("#grant-credits")).to_be_disabled()
    screenshot(phone, "admin-phone-grant-in-progress")
    phone.locator("#grant-credits").click(force=True)  # a second tap: the button is disabled
    phone.locator("#reason").press("Enter")  # and Enter in a field: dropped while the first is in flight
    phone.wait_for_timeout(300)
    assert len(sent) == 1, f"one request only, got {len(sent)}"
    release(phone, routes, pattern)
    expect(phone.locator("#balance")).to_have_text("2.500000")
    expect(phone.locator("#flash")).to_contain_text("balance now 2.500000")
    expect(phone.locator("#credits-busy")).to_be_hidden()
    expect(phone.locator("#grant-credits")).to_be_enabled()
    assert len(sent) == 1
    width, inner = no_sideways_scroll(phone)
    assert width <= inner


def test_save_and_test_a_key_then_revoke_show_progress(phone: Any, live_app: Any, provider: tuple[str, str],
                                                       upstream: FakeUpstream) -> None:
    _, pid = provider
    phone.on("dialog", lambda dialog: dialog.accept())
    phone.goto(live_app[0] + "/admin/keys")
    section = phone.locator(f"#keys-{pid}")
    section.locator(f"#api_key-{pid}").fill(GOOD)
    pattern = f"**/admin/providers/{pid}/keys"
    routes = held(phone, pattern)
    phone.locator(f"#add-key-{pid}").click()
    expect(phone.locator(f"#add-key-{pid}-busy")).to_be_visible()
    expect(phone.locator(f"#add-key-{pid}-busy")).to_contain_text("whether the key works")
    expect(phone.locator(f"#add-key-{pid}")).to_be_disabled()
    section.scroll_into_view_if_needed()
    screenshot(phone, "admin-phone-key-test-in-progress")
    release(phone, routes, pattern)
    expect(phone.locator(f"#key-check-{pid}")).to_contain_text("The key works")
    row = phone.locator(f"#keys-{pid} tr.key").first
    expect(row).to_contain_text("active")
    revoke = row.get_by_role("button", name="Revoke key")
    key_id = str(revoke.get_attribute("id")).removeprefix("revoke-")
    pattern = f"**/admin/providers/{pid}/keys/{key_id}/revoke"
    routes = held(phone, pattern)
    revoke.click()
    expect(phone.locator(f"#revoke-{key_id}-busy")).to_be_visible()
    expect(phone.locator(f"#revoke-{key_id}")).to_be_disabled()
    release(phone, routes, pattern)
    expect(phone.locator(f"#keys-{pid} tr.key").first).to_contain_text("revoked")
    width, inner = no_sideways_scroll(phone)
    assert width <= inner

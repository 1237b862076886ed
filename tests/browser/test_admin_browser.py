"""The admin panel in headless Chromium against the real app on loopback, with a member calling /v1 through the
official openai SDK at the same time: what the admin clicks is what the member gets on the next request."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.support.admin import temp_providers
from tests.support.upstreams import REPLY_WORDS, FakeUpstream, start_openai_upstream
from webapp.db import Database
from webapp.repos import credits as credits_repo

GOOD = "sk-browser-admin-key-5f6e7d8c"  # a canary for the fake provider


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    open_up, keyed_up = start_openai_upstream(models=["adm-model"]), start_openai_upstream(api_key=GOOD)
    yield open_up, keyed_up
    open_up.stop()
    keyed_up.stop()


@pytest.fixture()
def providers(database_urls: tuple[str, str], upstreams: tuple[FakeUpstream, FakeUpstream]
              ) -> Iterator[dict[str, tuple[str, str]]]:
    """`open`: a local engine needing no key (member-ready at once); `keyed`: accepts only GOOD."""
    with temp_providers(database_urls[0], ("adm-bo", upstreams[0].base_url),
                        ("adm-bk", upstreams[1].base_url)) as made:
        yield {"open": made[0], "keyed": made[1]}


@pytest.fixture()
def admin_page(page: Any, live_app: Any, make_user: Any) -> Any:
    url, _ = live_app
    admin = make_user(admin=True)
    sign_in(page, url, admin.email, admin.password)
    page.admin = admin
    return page


@pytest.fixture()
def member(make_user: Any, db: Database, live_app: Any) -> Iterator[Any]:
    user = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, 20_000_000, "browser test grant", None)
    with openai.OpenAI(base_url=live_app[0] + "/v1", api_key=user.token, max_retries=0, timeout=10) as sdk:
        user.sdk = sdk
        yield user


def model_ids(member: Any) -> set[str]:
    return {m.id for m in member.sdk.models.list().data}


def test_toggling_a_provider_changes_a_members_model_list(admin_page: Any, live_app: Any, member: Any,
                                                          providers: dict[str, tuple[str, str]]) -> None:
    slug, _ = providers["open"]
    model = f"{slug}/adm-model"
    assert model in model_ids(member)
    admin_page.goto(live_app[0] + "/admin/providers")
    toggle = admin_page.get_by_test_id(f"toggle-{slug}")
    expect(toggle).to_have_attribute("aria-checked", "true")
    toggle.click()
    expect(admin_page.get_by_test_id(f"toggle-{slug}")).to_have_attribute("aria-checked", "false")
    expect(admin_page.locator("#flash")).to_contain_text("disabled")
    assert model not in model_ids(member)
    screenshot(admin_page, "admin-provider-disabled")
    admin_page.get_by_test_id(f"toggle-{slug}").click()
    expect(admin_page.get_by_test_id(f"toggle-{slug}")).to_have_attribute("aria-checked", "true")
    assert model in model_ids(member)


def test_edited_multiplier_charges_the_next_request(admin_page: Any, live_app: Any, member: Any,
                                                    providers: dict[str, tuple[str, str]]) -> None:
    slug, pid = providers["open"]
    admin_page.goto(live_app[0] + "/admin/providers")
    field = admin_page.locator(f"#multiplier-{pid}")
    field.fill("0")
    field.press("Enter")
    expect(admin_page.locator(f"#multiplier-{pid}-error")).to_contain_text("positive number")
    admin_page.locator(f"#multiplier-{pid}").fill("3")
    admin_page.locator(f"#provider-{pid} form.inline-edit button").click()
    expect(admin_page.locator("#flash")).to_contain_text("multiplier saved")
    expect(admin_page.locator(f"#multiplier-{pid}-error")).to_have_count(0)
    screenshot(admin_page, "admin-multiplier-saved")

    raw = member.sdk.chat.completions.with_raw_response.create(
        model=f"{slug}/adm-model", messages=[{"role": "user", "content": "one two three"}], max_tokens=50)
    assert raw.headers["x-switchboard-multiplier"] == "3"
    expected = Decimal(3 * 1000 + REPLY_WORDS * 2000) * 3 / 1_000_000
    assert raw.headers["x-switchboard-credits"] == f"{expected:.6f}"


def test_add_test_and_revoke_an_admin_key(admin_page: Any, live_app: Any, providers: dict[str, tuple[str, str]],
                                          upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    _, pid = providers["keyed"]
    admin_page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm before revoking
    admin_page.goto(live_app[0] + "/admin/keys")
    section = admin_page.locator(f"#keys-{pid}")
    section.get_by_label("API key").fill(GOOD)
    section.get_by_label("Label (optional)").fill("from the browser")
    section.get_by_role("button", name="Save and test key").click()
    expect(admin_page.locator(f"#key-check-{pid}")).to_contain_text("The key works")
    row = admin_page.locator(f"#keys-{pid} tr.key").first
    expect(row).to_contain_text(f"····{GOOD[-4:]}")
    expect(row).to_contain_text("active")
    assert GOOD not in admin_page.content(), "the key is never shown in full after saving"
    assert admin_page.locator(f"#api_key-{pid}").input_value() == ""
    assert upstreams[1].requests[-1].path == "/v1/models", "the save made a test call"
    screenshot(admin_page, "admin-key-added")

    admin_page.locator(f"#keys-{pid}").get_by_role("button", name=re.compile("Revoke key")).click()
    expect(admin_page.locator(f"#keys-{pid} tr.key").first).to_have_class(re.compile("state-revoked"))
    expect(admin_page.locator("#flash")).to_contain_text("key revoked")
    expect(admin_page.locator(f"#keys-{pid} .key-source")).to_contain_text("no key (a local engine)")


def test_grant_credits_to_a_found_user(admin_page: Any, live_app: Any, make_user: Any) -> None:
    target = make_user()
    admin_page.goto(live_app[0] + "/admin/users")
    admin_page.locator("#user-q").fill(target.email.split("@")[0])
    admin_page.wait_for_url(re.compile(r"/admin/users\?q=user-"))  # pushed: the search is reloadable
    results = admin_page.locator("#user-results tbody tr")
    expect(results).to_have_count(1)
    link = admin_page.locator("#user-results").get_by_role("link", name=target.email)
    link.click()
    admin_page.wait_for_url(f"**/admin/users/{target.id}")
    admin_page.locator("#amount").fill("5")
    admin_page.locator("#reason").fill("browser bonus")
    admin_page.get_by_role("button", name="Grant").click()
    expect(admin_page.locator("#balance")).to_have_text("5.000000")
    expect(admin_page.locator("#credits table.ledger")).to_contain_text("browser bonus")
    expect(admin_page.locator("#flash")).to_contain_text("balance now 5.000000")
    admin_page.locator("#amount").fill("50")
    admin_page.locator("#reason").fill("too much")
    admin_page.get_by_role("button", name="Deduct").click()
    expect(admin_page.locator("#amount-error")).to_contain_text("below zero")
    expect(admin_page.locator("#balance")).to_have_text("5.000000")
    screenshot(admin_page, "admin-credits-granted")


def test_member_request_appears_in_logs_with_receipt_and_analytics(admin_page: Any, live_app: Any, member: Any,
                                                                   providers: dict[str, tuple[str, str]]) -> None:
    slug, _ = providers["open"]
    raw = member.sdk.chat.completions.with_raw_response.create(
        model=f"{slug}/adm-model", messages=[{"role": "user", "content": "log me"}], max_tokens=50)
    request_id = raw.headers["x-request-id"]
    live_app[1].extensions["switchboard"].logs.flush()
    admin_page.goto(live_app[0] + "/admin/logs")
    admin_page.locator("#f-user").fill(member.email)
    admin_page.locator("#f-provider").select_option(slug)
    admin_page.get_by_role("button", name="Filter").click()
    admin_page.wait_for_url(re.compile(r"/admin/logs\?user="))
    expect(admin_page.locator("#logs tbody tr.log")).to_have_count(1)
    screenshot(admin_page, "admin-logs")
    admin_page.locator(f'tr[data-request-id="{request_id}"]').get_by_role("link", name="receipt").click()
    admin_page.wait_for_url(f"**/admin/logs/{request_id}")
    expect(admin_page.locator("#receipt")).to_contain_text(member.email)
    expect(admin_page.locator("#receipt")).to_contain_text(slug)
    admin_page.goto(live_app[0] + "/admin/analytics")
    expect(admin_page.locator("#chart-1 svg rect.bar").first).to_be_attached()
    expect(admin_page.locator("#per-provider")).to_contain_text(slug)
    screenshot(admin_page, "admin-analytics")

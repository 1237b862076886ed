"""Date ranges and CSV downloads in Chromium, desktop and 390 px: choosing a preset redraws the usage section (htmx),
a custom range whose end is before its start shows the error beside the field, "Download CSV" downloads a CSV of
the user's requests, the Requests page pages older/newer, and the admin analytics' preset and download work the
same. Screenshots under artifacts/usage-ranges-*.png."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.support.admin import insert_log
from webapp.services import date_ranges

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(params=["desktop", "phone"])
def tab(request: Any, browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=PHONE if request.param == "phone" else DESKTOP, device_scale_factor=1,
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.label = request.param
    yield page
    context.close()


def fits(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def _at(days_ago: int, minute: int = 0) -> datetime:
    d = date_ranges.today_utc() - timedelta(days=days_ago)
    return datetime(d.year, d.month, d.day, 9, minute, tzinfo=UTC)


def test_presets_redraw_errors_show_beside_the_field_and_csv_downloads(
        tab: Any, live_app: Any, make_user: Any, admin_conn: psycopg.Connection) -> None:
    user = make_user()
    recent = insert_log(admin_conn, user.id, "openai", created_at=_at(2), model="=HYPERLINK(\"x\")")
    older = insert_log(admin_conn, user.id, "groq", created_at=_at(20))
    sign_in(tab, live_app[0], user.email, user.password)
    usage = tab.locator("#usage")
    expect(usage.locator("#usage-h")).to_have_text("Usage, last 30 days")
    expect(usage.locator("#usage-days")).to_be_attached()

    # A preset redraws the section in place (no navigation): a week holds one request, not two.
    url = tab.url
    tab.select_option("#usage-range", "7d")
    expect(tab.locator("#usage-h")).to_have_text("Usage, last 7 days")
    expect(tab.locator("#recent tbody tr")).to_have_count(2)  # recent requests are the latest 50, any day
    rows = tab.locator("#usage-days tbody tr")
    expect(rows).to_have_count(1)
    assert tab.url == url
    expect(tab.locator("#usage-csv")).to_have_attribute("href", "/settings/usage.csv?range=7d")
    assert fits(tab), "the settings page does not scroll sideways"
    tab.locator("#usage").screenshot(path=str(screenshot_dir() / f"usage-ranges-week-{tab.label}.png"))

    # A custom range whose end is before its start: the message beside the field, the dates kept.
    tab.select_option("#usage-range", "custom")
    expect(tab.locator("#usage-h")).to_contain_text(" to ")  # redrawn as custom, with the week's dates filled in
    tab.fill("#usage-from", "2026-05-10")
    tab.fill("#usage-to", "2026-05-01")
    tab.click("#usage-apply")
    error = tab.locator("#usage-from-error")
    expect(error).to_have_text("The first day must not be after the last.")
    expect(tab.locator("#usage-from")).to_have_attribute("aria-invalid", "true")
    expect(tab.locator("#usage-from")).to_have_value("2026-05-10")
    assert fits(tab)
    tab.locator("#usage").screenshot(path=str(screenshot_dir() / f"usage-ranges-error-{tab.label}.png"))

    # A valid custom range, then the download: a CSV of every request of that range, formulas made inert.
    start = (date_ranges.today_utc() - timedelta(days=25)).isoformat()
    tab.fill("#usage-from", start)
    tab.fill("#usage-to", date_ranges.today_utc().isoformat())
    tab.click("#usage-apply")
    expect(tab.locator("#usage-h")).to_contain_text(start)
    expect(tab.locator("#usage-from-error")).to_have_count(0)
    with tab.expect_download() as info:
        tab.click("#usage-requests-csv")
    download = info.value
    assert download.suggested_filename == f"switchboard-requests-{start}-to-{date_ranges.today_utc()}.csv"
    with open(download.path(), newline="", encoding="utf-8") as f:
        rows_ = list(csv.reader(f))
    assert rows_[0][:3] == ["request_id", "created_at", "mode"]
    assert [r[0] for r in rows_[1:]] == [recent, older]
    assert rows_[1][4] == "'=HYPERLINK(\"x\")"

    # The Requests page: one row a page, older then newer, each row to its receipt.
    tab.click("#usage-requests-link")
    expect(tab.locator("#requests-table tbody tr")).to_have_count(2)
    tab.goto(live_app[0] + "/settings/requests?range=30d&limit=1")
    expect(tab.locator(f"tr[data-request-id='{recent}']")).to_be_visible()
    tab.click("#requests-older")
    expect(tab.locator(f"tr[data-request-id='{older}']")).to_be_visible()
    expect(tab.locator("#requests-older")).to_have_count(0)
    assert fits(tab)
    screenshot(tab, f"usage-ranges-requests-{tab.label}")
    tab.click("#requests-newer")
    expect(tab.locator(f"tr[data-request-id='{recent}']")).to_be_visible()
    tab.locator(f"tr[data-request-id='{recent}'] a:has-text('receipt')").click()
    expect(tab.locator("#receipt")).to_contain_text(recent)


def test_admin_analytics_preset_and_download(tab: Any, live_app: Any, make_user: Any,
                                             admin_conn: psycopg.Connection) -> None:
    admin = make_user(admin=True)
    sign_in(tab, live_app[0], admin.email, admin.password)
    tab.goto(live_app[0] + "/admin/analytics")
    tab.select_option("#a-range", "7d")
    expect(tab.locator("#a-range")).to_have_value("7d")
    tab.wait_for_url("**/admin/analytics?range=7d*")
    expect(tab.locator("#analytics-csv")).to_have_attribute("href", "/admin/analytics.csv?range=7d")
    assert fits(tab)
    screenshot(tab, f"usage-ranges-admin-{tab.label}")
    with tab.expect_download() as info:
        tab.click("#analytics-csv")
    with open(info.value.path(), newline="", encoding="utf-8") as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    assert rows[0] == ["day", "requests", "tokens", "credits", "credits_micro", "errors"] and len(rows) == 8
    tab.select_option("#a-range", "custom")
    tab.wait_for_url("**/admin/analytics?range=custom*")
    tab.fill("#a-from", "2026-01-10")
    tab.fill("#a-to", "2026-01-01")
    tab.click("#a-apply")
    expect(tab.locator("#a-from-error")).to_be_visible()


def screenshot_dir() -> Any:
    from tests.browser.conftest import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

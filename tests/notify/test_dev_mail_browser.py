"""The development mail page in Chromium, desktop and 390 px: an event's email, sent by the real worker to the
local sink `make run` uses, is listed for an admin and opens with its text and its HTML in a sandboxed frame.
Screenshots: artifacts/dev-mail-*.png (the HTML part alone: dev-mail-html-*.png)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, screenshot, sign_in
from tests.notify.conftest import drain_notify_jobs, free_port
from tests.support.live import serve
from webapp import create_app
from webapp.config import Settings, SmtpConfig
from webapp.db import Database
from webapp.notify import sink
from webapp.repos import credits as credits_repo


@pytest.fixture()
def dev_app(settings: Settings, tmp_path: Path, notify_backlog: None) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    controller = sink.serve(tmp_path, "127.0.0.1", port)
    dev = settings.with_overrides(env="development", mail_sink_dir=str(tmp_path),
                                  smtp=SmtpConfig("127.0.0.1", port, "none"), public_url="https://sb.example")
    app = create_app(dev)
    try:
        with serve(app) as url:
            yield url, dev
    finally:
        app.extensions["switchboard"].db.close()
        controller.stop()


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}])
def test_an_admin_reads_the_sent_mail_in_development(browser: Any, dev_app: tuple[str, Settings], make_user: Any,
                                                     db: Database, viewport: dict[str, int]) -> None:
    url, dev = dev_app
    admin, someone = make_user(admin=True), make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, someone.id, 12_500_000, "browser check", None)
    drain_notify_jobs(dev, db)
    context = browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        sign_in(page, url, admin.email, admin.password)
        page.goto(url + "/admin/dev/mail")
        row = page.locator("tr.mail-row", has_text=someone.email)
        expect(row).to_have_count(1)
        expect(row).to_contain_text("12.5 credits added")
        name = "phone" if viewport["width"] == 390 else "desktop"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(page, f"dev-mail-list-{name}")
        row.get_by_role("link").click()
        expect(page.locator("pre.mail-text")).to_contain_text("12.5 credits added to your account (browser check)")
        frame = page.frame_locator("iframe.mail-html")
        expect(frame.locator("h1")).to_have_text("12.5 credits added")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(page, f"dev-mail-message-{name}")
        page.locator("iframe.mail-html").scroll_into_view_if_needed()
        # the sandboxed frame is painted apart from the page: its own picture shows the HTML part as rendered
        page.locator("iframe.mail-html").screenshot(path=str(ARTIFACTS / f"dev-mail-html-{name}.png"))
    finally:
        context.close()

"""The settings page's Webhooks section in headless Chromium, at desktop width and at 390 px: errors beside the
fields, an endpoint added with its secret shown once, a test event sent with the button, delivered by the real worker
to a real receiver on loopback (signature verified with the `standardwebhooks` package), and the delivery appearing
in the endpoint's log without a reload."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.browser.conftest import ARTIFACTS, screenshot, sign_in
from tests.notify.test_webhooks_delivery import Receiver
from tests.support.live import serve
from webapp import create_app
from webapp.config import Settings
from webapp.db import Database
from webapp.notify import runtime, worker
from webapp.notify.runtime import Runtime

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hooks_live(settings: Settings, db: Database) -> Iterator[str]:
    """The app (loopback receivers allowed) on a loopback port, and the real worker polling beside it."""
    hook_settings = settings.with_overrides(webhook_allow_private_urls=True, webhook_retry_scale=0.01)
    app = create_app(hook_settings)
    runtime.use(Runtime(hook_settings, db))
    jobs = worker.build_app(hook_settings)
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            jobs.run_worker(queues=["notify", "webhooks"], wait=False, install_signal_handlers=False,
                            delete_jobs="successful", concurrency=1)
            stop.wait(0.2)

    thread = threading.Thread(target=work, name="webhooks-worker", daemon=True)
    thread.start()
    try:
        with serve(app) as url:
            yield url
    finally:
        stop.set()
        thread.join(10)
        runtime.use(None)
        app.extensions["switchboard"].db.close()


@pytest.fixture(params=[(1200, 900), (390, 844)], ids=["desktop", "390px"])
def hooks_page(request: pytest.FixtureRequest, browser: Any, hooks_live: str,
               make_user: Any) -> Iterator[tuple[Any, str]]:
    width, height = request.param
    user = make_user()
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, hooks_live, user.email, user.password)
    page.evaluate("window.__sameDocument = true")
    yield page, "desktop" if width > 600 else "390"
    assert page.evaluate("window.__sameDocument === true"), "an htmx action reloaded the whole page"
    context.close()


def _no_horizontal_scroll(page: Any) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow}px"


def test_add_endpoint_secret_once_send_test_event_delivery_appears(hooks_page: tuple[Any, str],
                                                                    hooks_live: str) -> None:
    page, size = hooks_page
    page.wait_for_selector("#webhooks-none")  # the section loaded into the settings page
    page.locator("#webhooks").scroll_into_view_if_needed()

    # Not http(s), and no event: both refused beside their fields, the URL typed stays. (This app allows loopback
    # receivers; the address rules are tested in tests/notify/test_webhooks_api.py.)
    page.fill("#webhooks-url", "ftp://files.example.com/hooks")
    page.click("#webhooks-submit")
    page.wait_for_selector("#webhooks-url-error")
    assert "https://" in page.inner_text("#webhooks-url-error")
    assert page.get_attribute("#webhooks-url", "aria-invalid") == "true"
    assert page.locator("#webhooks-events-error").is_visible()
    assert page.input_value("#webhooks-url") == "ftp://files.example.com/hooks"

    with Receiver() as receiver:
        page.fill("#webhooks-url", receiver.url)
        page.check("input[name=event_types][value='api_key.created']")
        page.click("#webhooks-submit")
        page.wait_for_selector("#webhook-secret")
        secret = page.inner_text("#webhook-secret").strip()
        assert secret.startswith("whsec_")
        assert "shown only this once" in page.inner_text("#webhook-secret-box")
        _no_horizontal_scroll(page)
        screenshot(page, f"settings-webhooks-added-{size}")

        page.click("button[id$='-test']")
        page.wait_for_selector("#webhooks-outcome:has-text('Test event queued')")
        assert page.locator("#webhook-secret").count() == 0  # shown once: gone from the next answer
        row = page.wait_for_selector(".webhook-attempt:has-text('HTTP 200')", timeout=20_000)
        assert "webhook.test" in row.inner_text()
        (got,) = receiver.got
        assert Webhook(secret).verify(got.body, got.headers)["type"] == "webhook.test"
    _no_horizontal_scroll(page)
    page.locator("#webhooks").screenshot(path=str(ARTIFACTS / f"settings-webhooks-section-{size}.png"))

    # A full reload shows the endpoint and its log, never the secret.
    page.evaluate("window.__sameDocument = false")
    page.goto(hooks_live + "/settings/webhooks")
    text = page.inner_text("#webhooks")
    assert secret not in page.content() and "webhook.test" in text and "HTTP 200" in text
    page.evaluate("window.__sameDocument = true")

"""The playground in headless Chromium, on a phone (390 px) and a desktop: the answer streams in token by token
through htmx's sse extension (a fake upstream that drips its words), the receipt appears beside it with the charge,
a refused prompt shows its error in place, and nothing scrolls sideways. Screenshots go to artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.browser.conftest import ARTIFACTS, sign_in
from tests.e2e.conftest import _provider
from tests.support.upstreams import FakeUpstream, start_openai_upstream
from webapp.config import Settings
from webapp.crypto import KeyRing
from webapp.repos import credits as credits_repo

SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}
SECRET = "sk-canary-playground-admin-3b7d"


@pytest.fixture(scope="module")
def upstream(settings: Settings, database_urls: tuple[str, str]) -> Iterator[FakeUpstream]:
    up = start_openai_upstream(api_key=SECRET)
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        _provider(conn, "pg-fake", "openai", up.base_url, "1.0", 4, KeyRing(settings.encryption_keys), SECRET)
    yield up
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("update public.llm_providers set enabled = false where slug = 'pg-fake'")
    up.stop()


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_playground_streams_and_shows_the_receipt(browser: Any, live_app: Any, make_user: Any, db: Any,
                                                  upstream: FakeUpstream, size: str) -> None:
    url, _ = live_app
    user = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, 50_000_000, "browser test grant", None)
    context = browser.new_context(viewport=SIZES[size])
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page, url, user.email, user.password)
        page.locator("#playground").scroll_into_view_if_needed()
        # an empty prompt: refused beside the field, nothing asked
        page.select_option("#play-model", "pg-fake/echo-1")
        page.click("#play-submit")
        page.wait_for_selector("#play-prompt-error")
        assert page.get_attribute("#play-prompt", "aria-invalid") == "true"
        assert upstream.chat_requests() == []
        # streamed: the words arrive one by one (the upstream waits 0.15 s before each), then the receipt
        upstream.behaviour = "drip:0.15"
        page.select_option("#play-model", "pg-fake/echo-1")
        page.fill("#play-prompt", "Tell me about foxes.")
        page.click("#play-submit")
        page.wait_for_selector("#play-answer span")
        partial = page.inner_text("#play-answer")
        assert partial and partial != "The quick brown fox jumps over the lazy dog."  # seen before the end
        page.wait_for_selector("#play-receipt-list")
        assert page.inner_text("#play-answer") == "The quick brown fox jumps over the lazy dog."
        receipt = page.inner_text("#play-receipt-list")
        assert "pg-fake" in receipt and "measured" in receipt and "Member (credits)" in receipt
        assert float(page.inner_text("#play-receipt-list [data-field=credits]").split()[0]) > 0
        # the connection closed on `done`: no second request (an EventSource would reconnect and ask again)
        page.wait_for_timeout(1500)
        assert len(upstream.chat_requests()) == 1
        assert page.input_value("#play-prompt") == "Tell me about foxes."
        width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width <= inner, f"the page scrolls sideways: {width} > {inner}"
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#playground").screenshot(path=str(ARTIFACTS / f"settings-playground-{size}.png"))
    finally:
        upstream.reset()
        context.close()

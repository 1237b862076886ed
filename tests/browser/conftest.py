"""Browser tests: the real app on a loopback port, driven by Playwright in Debian's headless Chromium
(`/usr/bin/chromium`; Playwright's own browser download cannot work here). Screenshots go to artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.support.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: F401 (re-exported to the browser tests)
from tests.support.live import serve
from webapp import create_app
from webapp.config import Settings

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="session")
def live_app(settings: Settings) -> Iterator[tuple[str, Flask]]:
    app = create_app(settings)
    with serve(app) as url:
        yield url, app
    app.extensions["switchboard"].db.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    context.close()


def sign_in(page: Any, base_url: str, email: str, password: str) -> None:
    page.goto(base_url + "/auth/sign-in")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/settings")


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

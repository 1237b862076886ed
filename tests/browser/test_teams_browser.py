"""The Teams pages in headless Chromium, at desktop width and at 390 px: a slug refused beside its field, a team
created, an invitation link created and copied, the invitee joining in a second browser context after confirming,
the owner setting the invitee's cap and adding a team key (never displayed, to anyone), a site admin granting the
team credits (the button disabled while it runs, one grant only), the invitee leaving; no page scrolls sideways at
390 px."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.test_user_api import (  # noqa: F401  (settings_providers_fixture is a fixture)
    GOOD_KEY,
    SettingsProviders,
    settings_providers_fixture,
)
from tests.browser.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser
SIZES = {"desktop": (1200, 900), "390": (390, 844)}


def _no_sideways_scroll(page: Any) -> None:
    fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert fits, f"the page scrolls sideways: scrollWidth {width[0]} > innerWidth {width[1]}"


class Browsers:
    """One browser context per person, all at the same viewport; every confirm() accepted."""

    def __init__(self, browser: Any, base_url: str, size: tuple[int, int]) -> None:
        self.browser, self.base_url, self.size = browser, base_url, size
        self.contexts: list[Any] = []

    def open(self, user: Any, clipboard: bool = False) -> Any:
        context = self.browser.new_context(viewport={"width": self.size[0], "height": self.size[1]})
        if clipboard:
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=self.base_url)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("dialog", lambda dialog: dialog.accept())
        sign_in(page, self.base_url, user.email, user.password)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture(params=list(SIZES), ids=list(SIZES))
def browsers(request: pytest.FixtureRequest, browser: Any, live_app: Any) -> Iterator[tuple[Browsers, str]]:
    people = Browsers(browser, live_app[0], SIZES[request.param])
    yield people, request.param
    people.close()


def test_team_lifecycle_in_the_browser(browsers: tuple[Browsers, str], live_app: Any, make_user: Any,
                                       settings_providers: SettingsProviders) -> None:
    people, size = browsers
    base = live_app[0]
    owner_user, invitee_user, admin_user = make_user(), make_user(), make_user(admin=True)
    slug = f"br-{uuid.uuid4().hex[:8]}"

    # The owner creates a team: a bad slug is refused beside its field first, the name typed stays.
    owner = people.open(owner_user, clipboard=True)
    owner.click("#nav-teams")
    owner.wait_for_url("**/teams")
    owner.fill("#team-name", "Browser team")
    owner.fill("#team-slug", "Bad Slug")
    owner.click("#team-create-submit")
    owner.wait_for_selector("#team-slug-error")
    assert owner.input_value("#team-name") == "Browser team"
    assert owner.get_attribute("#team-slug", "aria-invalid") == "true"
    _no_sideways_scroll(owner)
    owner.fill("#team-slug", slug)
    owner.click("#team-create-submit")
    owner.wait_for_selector("#team-created")
    owner.wait_for_selector(f"#team-row-{slug}")  # the list above redrew (HX-Trigger teams-changed)
    screenshot(owner, f"teams-{size}-created")
    _no_sideways_scroll(owner)
    owner.click("#team-created-link")
    owner.wait_for_url(f"**/teams/{slug}")
    assert owner.inner_text("#my-role") == "owner"

    # An invitation link, shown once, copied with the button.
    owner.click("#invites-submit")
    owner.wait_for_selector("#invite-url")
    link = owner.inner_text("#invite-url").strip()
    assert "/teams/join/" in link
    owner.click("#invite-copy")
    owner.wait_for_selector("#invite-copied:not(:empty)")
    if "Copied" in owner.inner_text("#invite-copied"):
        assert owner.evaluate("navigator.clipboard.readText()") == link
    assert owner.locator("#invites-table tbody tr").count() == 1
    screenshot(owner, f"teams-{size}-invite")
    _no_sideways_scroll(owner)

    # The invitee opens it in their own browser: a confirmation first, then the team.
    invitee = people.open(invitee_user)
    invitee.goto(link)
    invitee.wait_for_selector("#join-confirm")
    _no_sideways_scroll(invitee)
    screenshot(invitee, f"teams-{size}-join")
    invitee.click("#join-confirm")
    invitee.wait_for_url(f"**/teams/{slug}")
    assert invitee.inner_text("#my-role") == "member"
    # A member is shown no management control.
    assert invitee.locator("#invites, [id^=cap-][name], [id^=remove-], [id^=transfer-]").count() == 0
    assert invitee.locator("#leave-team").is_visible()

    # The owner sets the invitee's cap: a bad value beside the field, then saved.
    owner.reload()
    cap = f"#cap-{invitee_user.id}"
    owner.fill(cap, "-1")
    owner.click(f"#cap-{invitee_user.id}-submit")
    owner.wait_for_selector(f"#cap-{invitee_user.id}-error")
    owner.fill(cap, "7.5")
    owner.click(f"#cap-{invitee_user.id}-submit")
    owner.wait_for_selector("#members-outcome")
    assert owner.input_value(cap) == "7.5"
    _no_sideways_scroll(owner)

    # The owner adds a team key: only its last four characters ever come back, to anyone.
    ok = settings_providers.ok
    owner.locator(f"#team-key-{ok}").scroll_into_view_if_needed()
    owner.fill(f"#team-key-{ok}-api_key", GOOD_KEY)
    owner.click(f"#team-key-{ok}-submit")
    owner.wait_for_selector(f"#team-key-{ok}-outcome")
    assert f"••••{GOOD_KEY[-4:]}" in owner.inner_text(f"#team-key-{ok}-stored")
    assert owner.input_value(f"#team-key-{ok}-api_key") == ""
    assert GOOD_KEY not in owner.content()
    screenshot(owner, f"teams-{size}-owner")
    _no_sideways_scroll(owner)
    invitee.reload()
    assert f"••••{GOOD_KEY[-4:]}" in invitee.inner_text(f"#team-key-{ok}-stored")
    assert owner_user.email in invitee.inner_text(f"#team-key-{ok}-stored")
    assert GOOD_KEY not in invitee.content() and invitee.locator(f"#team-key-{ok}-api_key").count() == 0
    assert "7.5" in invitee.inner_text(f"#member-{invitee_user.id}")
    screenshot(invitee, f"teams-{size}-member")
    _no_sideways_scroll(invitee)

    # A site admin finds the team and grants it credits once; the button is disabled while the grant runs.
    admin = people.open(admin_user)
    admin.goto(base + "/admin/teams")
    admin.fill("#team-q", slug)
    admin.wait_for_selector(f"#teams-table tbody tr:only-child#admin-team-{slug}")  # the search narrowed the list
    screenshot(admin, f"admin-teams-{size}-list")
    _no_sideways_scroll(admin)
    admin.click(f"#admin-team-{slug} a")
    admin.wait_for_url(f"**/admin/teams/{slug}")
    admin.fill("#team-amount", "25")
    admin.fill("#team-reason", "browser pilot")
    admin.evaluate("""() => {
        window.__disabledSeen = false;
        const fieldset = document.getElementById('team-grant-actions');
        new MutationObserver(() => { if (fieldset.disabled) window.__disabledSeen = true; })
            .observe(fieldset, {attributes: true, attributeFilter: ['disabled']});
    }""")
    admin.dblclick("#team-grant")  # a double click grants once
    admin.wait_for_selector("#admin-team-ledger tr.ledger-grant")
    assert float(admin.inner_text("#team-balance")) == 25
    assert admin.evaluate("window.__disabledSeen") is True
    admin.wait_for_timeout(300)
    admin.reload()
    assert float(admin.inner_text("#team-balance")) == 25
    assert admin.locator("#admin-team-ledger tbody tr.ledger-grant").count() == 1
    screenshot(admin, f"admin-teams-{size}-granted")
    _no_sideways_scroll(admin)
    invitee.reload()
    assert float(invitee.inner_text("#team-balance")) == 25

    # The invitee leaves (after a confirmation) and is back on their own Teams page.
    invitee.click("#leave-team")
    invitee.wait_for_url("**/teams")
    invitee.wait_for_selector("#teams-none")
    assert invitee.goto(f"{base}/teams/{slug}").status == 404

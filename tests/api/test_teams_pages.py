"""The Teams pages and their htmx fragments (session cookie + CSRF) on a real Postgres: create (errors beside the
fields), invite by a single-use link and join after confirming, roles, removal, leaving, ownership transfer, caps,
team keys (never shown), routing, the wallet and usage; what a role may not do is neither drawn as a control nor
accepted when posted anyway; an outsider gets 404 everywhere; the admin panel lists teams and grants credits."""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg
import pytest
from flask import Flask

from tests.api.test_settings_page import Session, assert_fragment, html, sign_in
from tests.api.test_user_api import (  # noqa: F401  (settings_providers_fixture is a fixture)
    GOOD_KEY,
    SettingsProviders,
    settings_providers_fixture,
)

JOIN_RE = re.compile(r"https?://[^\"'<\s]+/teams/join/([A-Za-z0-9_\-]+)")


def _slug() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def create_team(s: Session, name: str = "Research", slug: str | None = None) -> str:
    slug = slug or _slug()
    resp = s.post("/teams", {"name": name, "slug": slug})
    assert_fragment(resp, "team-create")
    assert f'href="/teams/{slug}"' in html(resp)
    return slug


def invite_link(s: Session, slug: str) -> str:
    resp = s.post(f"/teams/{slug}/invites")
    text = assert_fragment(resp, "invites")
    assert resp.headers["Cache-Control"] == "no-store"
    (token,) = JOIN_RE.findall(text)
    return token


def join(s: Session, token: str) -> Any:
    page = s.get(f"/teams/join/{token}")
    assert page.status_code == 200 and 'id="join-confirm"' in html(page)
    return s.post(f"/teams/join/{token}", hx=False)


def team_with_member(app: Flask, make_user: Any) -> tuple[Session, Session, str]:
    owner, member = sign_in(app, make_user()), sign_in(app, make_user())
    slug = create_team(owner)
    resp = join(member, invite_link(owner, slug))
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/teams/{slug}")
    return owner, member, slug


def test_create_a_team_and_see_it_listed(app: Flask, make_user: Any) -> None:
    s = sign_in(app, make_user())
    assert 'id="teams-none"' in html(s.get("/teams"))
    slug = create_team(s, "Research lab")
    page = html(s.get("/teams"))
    assert f'id="team-row-{slug}"' in page and "Research lab" in page and "owner" in page
    team = s.get(f"/teams/{slug}")
    assert team.status_code == 200
    text = html(team)
    for section in ("members", "invites", "wallet", "team-keys", "team-routing", "team-usage"):
        assert f'id="{section}"' in text, section
    assert 'id="my-role">owner<' in text


def test_create_errors_are_beside_the_fields(app: Flask, make_user: Any) -> None:
    s = sign_in(app, make_user())
    resp = s.post("/teams", {"name": "", "slug": "Not A Slug!"})
    text = assert_fragment(resp, "team-create", 422)
    assert 'id="team-name-error"' in text and 'id="team-slug-error"' in text
    assert 'value="Not A Slug!"' in text  # what was typed stays
    slug = create_team(s)
    other = sign_in(app, make_user())
    taken = other.post("/teams", {"name": "Copycat", "slug": slug})
    assert 'id="team-slug-error"' in assert_fragment(taken, "team-create", 422)
    # Without htmx, the whole page comes back with the same error; without CSRF, refused.
    full = s.post("/teams", {"name": "x" * 500, "slug": _slug()}, hx=False)
    assert full.status_code == 422 and "<html" in html(full) and 'id="team-name-error"' in html(full)
    assert s.post("/teams", {"name": "n", "slug": _slug()}, csrf=False).status_code in (400, 403)


def test_invite_is_single_use_and_asks_before_joining(app: Flask, make_user: Any) -> None:
    owner = sign_in(app, make_user())
    slug = create_team(owner, "Invite team")
    token = invite_link(owner, slug)
    invitee = sign_in(app, make_user())
    page = invitee.get(f"/teams/join/{token}")
    assert page.status_code == 200 and 'id="join-confirm"' in html(page)
    assert '<strong id="join-team">Invite team</strong>' in html(page) and "as a member" in html(page)
    assert page.headers["Cache-Control"] == "no-store"
    assert invitee.get(f"/teams/{slug}").status_code == 404  # opening the link alone joins nothing
    assert invitee.post(f"/teams/join/{token}", hx=False).status_code == 303
    assert invitee.get(f"/teams/{slug}").status_code == 200
    # Used once: a second person's join says it no longer works; joining twice says so too.
    third = sign_in(app, make_user())
    refused = third.post(f"/teams/join/{token}", hx=False)
    assert refused.status_code == 404 and 'id="join-invalid"' in html(refused)
    assert invitee.post(f"/teams/join/{token}", hx=False).status_code in (404, 409)
    assert third.get(f"/teams/{slug}").status_code == 404
    used = third.get(f"/teams/join/{token}")  # a used link says so when opened, naming no team
    assert used.status_code == 404 and 'id="join-invalid"' in html(used) and "Invite team" not in html(used)
    for junk in ("x", "x" * 5000, "../../etc"):
        assert third.get(f"/teams/join/{junk}").status_code == 404


def test_pending_invitations_are_listed_and_revoked(app: Flask, make_user: Any) -> None:
    owner = sign_in(app, make_user())
    slug = create_team(owner)
    token = invite_link(owner, slug)
    page = html(owner.get(f"/teams/{slug}"))
    (invite_id,) = re.findall(r'id="revoke-invite-([0-9a-f-]{36})"', page)
    assert token not in page  # the link is shown only once
    resp = owner.post(f"/teams/{slug}/invites/{invite_id}/revoke")
    assert 'id="invites-none"' in assert_fragment(resp, "invites")
    invitee = sign_in(app, make_user())
    assert invitee.get(f"/teams/join/{token}").status_code == 404  # revoked: the page says so at once
    assert invitee.post(f"/teams/join/{token}", hx=False).status_code == 404


def test_roles_remove_and_leave(app: Flask, make_user: Any) -> None:
    owner, member, slug = team_with_member(app, make_user)
    mid = member.user.id
    resp = owner.post(f"/teams/{slug}/members/{mid}/role", {"role": "admin"})
    text = assert_fragment(resp, "members")
    assert f'id="member-{mid}" data-role="admin"' in text
    bad = owner.post(f"/teams/{slug}/members/{mid}/role", {"role": "emperor"})
    assert bad.status_code in (403, 422)
    removed = owner.post(f"/teams/{slug}/members/{mid}/remove")
    assert f'id="member-{mid}"' not in assert_fragment(removed, "members")
    assert member.get(f"/teams/{slug}").status_code == 404  # an ex-member is an outsider
    # Someone else joins and leaves on their own.
    leaver = sign_in(app, make_user())
    join(leaver, invite_link(owner, slug))
    left = leaver.post(f"/teams/{slug}/leave")
    assert left.status_code == 200 and left.headers["HX-Redirect"] == "/teams"
    assert leaver.get(f"/teams/{slug}").status_code == 404


def test_the_owner_cannot_leave_and_transfers_ownership(app: Flask, make_user: Any) -> None:
    owner, member, slug = team_with_member(app, make_user)
    page = html(owner.get(f"/teams/{slug}"))
    assert 'id="leave-team"' not in page and 'id="owner-stays"' in page
    assert owner.post(f"/teams/{slug}/leave").status_code in (403, 409, 422)
    assert owner.get(f"/teams/{slug}").status_code == 200
    resp = owner.post(f"/teams/{slug}/transfer", {"user_id": member.user.id})
    text = assert_fragment(resp, "members")
    assert f'id="member-{member.user.id}" data-role="owner"' in text
    assert f'id="member-{owner.user.id}" data-role="admin"' in text
    assert 'id="my-role">owner<' in html(member.get(f"/teams/{slug}"))


def test_a_member_sees_no_management_controls_and_is_refused_anyway(app: Flask, make_user: Any,
                                                                    settings_providers: SettingsProviders) -> None:
    owner, member, slug = team_with_member(app, make_user)
    page = html(member.get(f"/teams/{slug}"))
    assert 'id="my-role">member<' in page
    for control in (f'id="role-{owner.user.id}"', f'id="cap-{member.user.id}"', f'id="remove-{owner.user.id}"',
                    f'id="transfer-{owner.user.id}"', 'id="invites"', 'id="invites-submit"',
                    f'id="team-key-{settings_providers.ok}-api_key"', 'id="team-routing-submit"'):
        assert control not in page, control
    assert 'id="leave-team"' in page and 'id="team-routing-view"' in page
    # Posting anyway: refused by the service, nothing changes.
    for path, form in ((f"/teams/{slug}/members/{member.user.id}/cap", {"monthly_credit_cap": "1000"}),
                       (f"/teams/{slug}/members/{member.user.id}/role", {"role": "admin"}),
                       (f"/teams/{slug}/members/{owner.user.id}/remove", {}),
                       (f"/teams/{slug}/transfer", {"user_id": member.user.id}),
                       (f"/teams/{slug}/invites", {}),
                       (f"/teams/{slug}/keys/{settings_providers.ok}", {"api_key": GOOD_KEY}),
                       (f"/teams/{slug}/routing", {"provider_priorities": "", "task_overrides": ""})):
        resp = member.post(path, form)
        assert resp.status_code in (403, 409, 422), (path, resp.status_code)
    after = html(owner.get(f"/teams/{slug}"))
    assert f'id="member-{member.user.id}" data-role="member"' in after
    assert f'id="team-key-{settings_providers.ok}-stored">No key stored.' in after


def test_an_outsider_gets_404_everywhere(app: Flask, make_user: Any) -> None:
    owner, member, slug = team_with_member(app, make_user)
    outsider = sign_in(app, make_user())
    for path in (f"/teams/{slug}", f"/teams/{slug}/wallet", f"/teams/{slug}/ledger", f"/teams/{slug}/usage",
                 "/teams/no-such-team"):
        assert outsider.get(path).status_code == 404, path
        assert outsider.get(path, hx=True).status_code == 404, path
    for path, form in ((f"/teams/{slug}/members/{member.user.id}/remove", {}),
                       (f"/teams/{slug}/members/{member.user.id}/cap", {"monthly_credit_cap": "5"}),
                       (f"/teams/{slug}/invites", {}), (f"/teams/{slug}/leave", {}),
                       (f"/teams/{slug}/routing", {"provider_priorities": ""})):
        assert outsider.post(path, form).status_code == 404, path
    assert owner.get(f"/teams/{slug}").status_code == 200
    # Not signed in: the sign-in page (htmx: HX-Redirect), never the team.
    anon = app.test_client()
    assert anon.get(f"/teams/{slug}").status_code == 302
    assert "HX-Redirect" in anon.get(f"/teams/{slug}", headers={"HX-Request": "true"}).headers


def test_caps_errors_beside_the_field(app: Flask, make_user: Any) -> None:
    owner, member, slug = team_with_member(app, make_user)
    mid = member.user.id
    bad = owner.post(f"/teams/{slug}/members/{mid}/cap", {"monthly_credit_cap": "-5"})
    text = assert_fragment(bad, "members", 422)
    assert f'id="cap-{mid}-error"' in text and 'value="-5"' in text
    ok = owner.post(f"/teams/{slug}/members/{mid}/cap", {"monthly_credit_cap": "12.5"})
    assert 'value="12.5"' in assert_fragment(ok, "members")
    assert "12.5" in html(member.get(f"/teams/{slug}"))
    cleared = owner.post(f"/teams/{slug}/members/{mid}/cap", {"monthly_credit_cap": ""})
    assert "Cap removed" in assert_fragment(cleared, "members")


def test_team_key_is_never_shown(app: Flask, make_user: Any, settings_providers: SettingsProviders,
                                 admin_conn: psycopg.Connection) -> None:
    owner, member, slug = team_with_member(app, make_user)
    ok = settings_providers.ok
    resp = owner.post(f"/teams/{slug}/keys/{ok}", {"api_key": GOOD_KEY})
    text = assert_fragment(resp, f"team-key-{ok}")
    assert GOOD_KEY not in text and f"••••{GOOD_KEY[-4:]}" in text
    for who in (owner, member):
        page = html(who.get(f"/teams/{slug}"))
        assert GOOD_KEY not in page and f"••••{GOOD_KEY[-4:]}" in page and owner.user.email in page
    (cipher,) = admin_conn.execute("select ciphertext from public.team_provider_keys k join public.teams t "
                                   "on t.id = k.team_id where t.slug = %s", [slug]).fetchone()
    assert cipher not in html(member.get(f"/teams/{slug}"))
    blank = owner.post(f"/teams/{slug}/keys/{ok}", {"api_key": ""})
    assert f'id="team-key-{ok}-api_key-error"' in assert_fragment(blank, f"team-key-{ok}", 422)
    removed = owner.post(f"/teams/{slug}/keys/{ok}/delete")
    assert "No key stored." in assert_fragment(removed, f"team-key-{ok}")


def test_routing_saves_and_refuses_beside_the_field(app: Flask, make_user: Any,
                                                    settings_providers: SettingsProviders) -> None:
    owner, member, slug = team_with_member(app, make_user)
    bad = owner.post(f"/teams/{slug}/routing", {"provider_priorities": "", "task_overrides": "nonsense line"})
    assert 'id="team-overrides-error"' in assert_fragment(bad, "team-routing", 422)
    unknown = owner.post(f"/teams/{slug}/routing", {"provider_priorities": "no-such-provider"})
    assert 'id="team-order-error"' in assert_fragment(unknown, "team-routing", 422)
    ok = owner.post(f"/teams/{slug}/routing", {"provider_priorities": settings_providers.ok,
                                               "fallbacks_enabled": "true", "task_overrides": ""})
    assert "Routing saved" in assert_fragment(ok, "team-routing")
    assert settings_providers.ok in html(member.get(f"/teams/{slug}"))


def test_wallet_ledger_and_usage_fragments(app: Flask, make_user: Any) -> None:
    owner, member, slug = team_with_member(app, make_user)
    assert 'id="team-ledger-empty"' in assert_fragment(owner.get(f"/teams/{slug}/wallet", hx=True), "wallet")
    usage = owner.get(f"/teams/{slug}/usage?member={member.user.id}", hx=True)
    assert 'id="team-usage-empty"' in assert_fragment(usage, "team-usage")
    for junk in ("not-a-uuid", "x" * 5000, str(uuid.uuid4())):
        assert owner.get(f"/teams/{slug}/usage?member={junk}", hx=True).status_code == 200
        assert owner.get(f"/teams/{slug}/ledger?before={junk}", hx=True).status_code == 200
    assert 'id="team-usage-member"' not in html(member.get(f"/teams/{slug}/usage", hx=True))


@pytest.fixture()
def admin(app: Flask, make_user: Any) -> Session:
    return sign_in(app, make_user(admin=True))


def test_admin_lists_searches_and_grants_credits(app: Flask, make_user: Any, admin: Session,
                                                 admin_conn: psycopg.Connection) -> None:
    owner, member, slug = team_with_member(app, make_user)
    listing = admin.get(f"/admin/teams?q={slug}")
    assert listing.status_code == 200 and f'id="admin-team-{slug}"' in html(listing)
    assert 'id="teams-empty"' in html(admin.get("/admin/teams?q=no-team-has-this-name", hx=True))
    for page in ("0", "-1", "x", "9" * 50):
        assert admin.get(f"/admin/teams?page={page}").status_code == 200
    detail = html(admin.get(f"/admin/teams/{slug}"))
    assert owner.user.email in detail and member.user.email in detail
    for amount in ("abc", "-5", "0", "1e999", "9" * 40):
        bad = admin.post(f"/admin/teams/{slug}/credits", {"amount": amount, "reason": "x"})
        assert bad.status_code == 422 and 'id="team-amount-error"' in html(bad), amount
    long = admin.post(f"/admin/teams/{slug}/credits", {"amount": "1", "reason": "x" * 600})
    assert long.status_code == 422 and 'id="team-reason-error"' in html(long)
    resp = admin.post(f"/admin/teams/{slug}/credits", {"amount": "25", "reason": "pilot"})
    assert resp.status_code == 200 and 'id="team-balance">25' in html(resp) and "pilot" in html(resp)
    audited = admin_conn.execute("select count(*) from public.admin_audit_log where target like %s",
                                 [f"%{slug}%"]).fetchone()
    assert audited and audited[0] >= 1
    assert 'id="team-balance">25' in html(owner.get(f"/teams/{slug}"))
    # Not an admin: 403; an unknown team: 404.
    assert owner.get("/admin/teams").status_code == 403
    assert owner.post(f"/admin/teams/{slug}/credits", {"amount": "5", "reason": "me"}).status_code == 403
    assert admin.get("/admin/teams/no-such-team").status_code == 404
    assert 'id="team-balance">25' in html(admin.get(f"/admin/teams/{slug}"))


def test_default_team_choice(app: Flask, make_user: Any) -> None:
    owner, member, slug = team_with_member(app, make_user)
    assert 'hx-get="/teams/default"' in html(member.get("/settings"))  # the settings page loads the choice
    fragment = member.get("/teams/default", hx=True)
    assert f'<option value="{slug}"' in assert_fragment(fragment, "default-team")
    resp = member.post("/teams/default", {"team": slug})
    text = assert_fragment(resp, "default-team")
    assert "now billed to the team" in text and f'<option value="{slug}" selected' in text
    stranger = sign_in(app, make_user())
    refused = stranger.post("/teams/default", {"team": slug})
    assert 'id="default-team-slug-error"' in assert_fragment(refused, "default-team", 422)
    for junk in ("NOT A SLUG", "x" * 500):
        assert stranger.post("/teams/default", {"team": junk}).status_code == 422
    # Removed from the team: the default no longer bills it.
    owner.post(f"/teams/{slug}/members/{member.user.id}/remove")
    assert f'<option value="{slug}" selected' not in html(member.get("/teams/default", hx=True))
    back = member.post("/teams/default", {"team": ""})
    assert "now personal" in assert_fragment(back, "default-team")


def test_an_admin_manages_members_but_not_the_owner_or_other_admins(app: Flask, make_user: Any) -> None:
    owner, admin_member, slug = team_with_member(app, make_user)
    other = sign_in(app, make_user())
    join(other, invite_link(owner, slug))
    assert_fragment(owner.post(f"/teams/{slug}/members/{admin_member.user.id}/role", {"role": "admin"}), "members")
    page = html(admin_member.get(f"/teams/{slug}"))
    assert 'id="my-role">admin<' in page and 'id="invites"' in page
    assert f'id="remove-{other.user.id}"' in page and f'id="cap-{other.user.id}"' in page
    for hidden in (f'id="remove-{owner.user.id}"', f'id="role-{owner.user.id}"', f'id="transfer-{other.user.id}"'):
        assert hidden not in page, hidden
    # Posted anyway: the owner stays, and ownership does not move.
    assert admin_member.post(f"/teams/{slug}/members/{owner.user.id}/remove").status_code in (403, 409)
    assert admin_member.post(f"/teams/{slug}/transfer", {"user_id": other.user.id}).status_code in (403, 409)
    assert admin_member.post(f"/teams/{slug}/members/{owner.user.id}/role", {"role": "member"}).status_code in (
        403, 409)
    roster = html(owner.get(f"/teams/{slug}"))
    assert f'id="member-{owner.user.id}" data-role="owner"' in roster
    # What an admin may do: cap and remove a member.
    assert_fragment(admin_member.post(f"/teams/{slug}/members/{other.user.id}/cap", {"monthly_credit_cap": "3"}),
                    "members")
    removed = admin_member.post(f"/teams/{slug}/members/{other.user.id}/remove")
    assert f'id="member-{other.user.id}"' not in assert_fragment(removed, "members")


def test_the_ledger_pages_back(app: Flask, make_user: Any, db: Any) -> None:
    from webapp.services import teams as teams_service
    from webapp.services import user_account

    _owner, member, slug = team_with_member(app, make_user)
    site_admin = make_user(admin=True)
    for n in range(user_account.PAGE + 3):
        teams_service.admin_grant(db, site_admin.claims, slug, {"amount": "1", "reason": f"grant {n}"})
    page = html(member.get(f"/teams/{slug}"))
    assert page.count('class="ledger-grant"') == user_account.PAGE and 'id="team-ledger-older"' in page
    (older,) = re.findall(r'hx-get="(/teams/[^"]+/ledger\?before=\d+)"', page)
    rows = html(member.get(older, hx=True))
    assert rows.count('class="ledger-grant"') == 3 and "grant 0" in rows and 'id="team-ledger-older"' not in rows
    assert "<html" not in rows
    assert member.get(older).status_code == 200  # without htmx: the whole page from there


def test_a_signed_out_invitee_signs_in_and_comes_back_to_the_link(app: Flask, make_user: Any) -> None:
    from tests.api.test_auth_pages import csrf_token

    owner = sign_in(app, make_user())
    slug = create_team(owner)
    token = invite_link(owner, slug)
    invitee = make_user()
    client = app.test_client()
    first = client.get(f"/teams/join/{token}")
    assert first.status_code == 302 and "/auth/sign-in" in first.headers["Location"]
    back = client.post(first.headers["Location"], data={"email": invitee.email, "password": invitee.password,
                                                        "csrf_token": csrf_token(client)})
    assert back.status_code == 302 and back.headers["Location"].endswith(f"/teams/join/{token}")
    page = client.get(back.headers["Location"])
    assert page.status_code == 200 and 'id="join-confirm"' in html(page)
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_usage_per_member_is_the_owners_and_a_members_own(app: Flask, make_user: Any, db: Any,
                                                          admin_conn: psycopg.Connection) -> None:
    from tests.api.test_user_api import add_log

    owner, member, slug = team_with_member(app, make_user)
    tid = admin_conn.execute("select id from public.teams where slug = %s", [slug]).fetchone()[0]  # type: ignore[index]
    for user, credits in ((owner.user, 1_000_000), (member.user, 2_500_000), (member.user, 500_000)):
        rid = add_log(db, user.id, "openai", credits=credits)
        admin_conn.execute("update public.llm_request_logs set team_id = %s where request_id = %s", [tid, rid])
    add_log(db, member.user.id, "openai", credits=9_000_000)  # personal: not the team's
    everyone = assert_fragment(owner.get(f"/teams/{slug}/usage", hx=True), "team-usage")
    assert f'id="team-usage-{owner.user.id}"' in everyone and f'id="team-usage-{member.user.id}"' in everyone
    assert "3.000000" in everyone and "9.000000" not in everyone
    one = assert_fragment(owner.get(f"/teams/{slug}/usage?member={member.user.id}", hx=True), "team-usage")
    assert f'id="team-usage-{owner.user.id}"' not in one and f'id="team-usage-{member.user.id}"' in one
    mine = assert_fragment(member.get(f"/teams/{slug}/usage", hx=True), "team-usage")
    assert f'id="team-usage-{member.user.id}"' in mine and f'id="team-usage-{owner.user.id}"' not in mine
    # The same SVG charts as the user's usage, of what the viewer may see: 3 requests billed to the team (the
    # personal one is not), 2 of them the member's.
    assert 'id="team-chart-credits"' in everyone and 'id="team-chart-requests"' in everyone
    assert "3 in total" in _chart(everyone, "requests") and "2 in total" in _chart(one, "requests")
    assert "2 in total" in _chart(mine, "requests")


def _chart(fragment: str, measure: str) -> str:
    start = fragment.index(f'id="team-chart-{measure}"')
    return fragment[start:fragment.index("</figure>", start)]

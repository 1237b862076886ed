"""The teams JSON API against real Postgres: roles decide (in the database), outsiders see nothing, one owner
always, single-use invitations, audited admin grants, paged ledger, routing validated, hostile input a 4xx."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient


def call(client: FlaskClient, user: Any, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    return client.open(path, method=method, headers=user.headers, json=body, **kw)


def new_team(client: FlaskClient, owner: Any, *members: Any, role: str = "member") -> str:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    resp = call(client, owner, "POST", "/api/teams", {"name": "API team", "slug": slug})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    for m in members:
        token = call(client, owner, "POST", f"/api/teams/{slug}/invitations", {"role": role}).get_json()["token"]
        assert call(client, m, "POST", "/api/teams/join", {"token": token}).status_code == 200
    return slug


def code(resp: Any) -> str:
    return str(resp.get_json()["error"]["code"])


def test_outsiders_see_nothing_and_members_manage_nothing(client: FlaskClient, make_user: Any) -> None:
    owner, member, outsider = make_user(), make_user(), make_user()
    slug = new_team(client, owner, member)
    for path in ("", "/members", "/wallet", "/keys", "/usage", "/routing", "/invitations"):
        resp = call(client, outsider, "GET", f"/api/teams/{slug}{path}")
        assert resp.status_code == 404 and code(resp) == "team_not_found", path
    assert call(client, outsider, "GET", "/api/teams").get_json()["teams"] == []
    assert call(client, member, "GET", f"/api/teams/{slug}").get_json()["team"]["role"] == "member"
    assert call(client, member, "GET", f"/api/teams/{slug}/invitations").status_code == 403
    for method, path, body in (("POST", "/invitations", {}), ("PUT", f"/members/{owner.id}/role", {"role": "member"}),
                               ("PUT", f"/members/{member.id}/cap", {"monthly_credit_cap": "5"}),
                               ("PUT", "/routing", {"fallbacks_enabled": False}), ("PATCH", "", {"name": "x"}),
                               ("DELETE", f"/members/{owner.id}", None), ("POST", "/transfer", {"user_id": member.id})):
        resp = call(client, member, method, f"/api/teams/{slug}{path}", body)
        assert resp.status_code in (403, 409), (method, path, resp.get_data(as_text=True))
    grant = call(client, member, "POST", f"/api/admin/teams/{slug}/credits", {"amount": "5"})
    assert grant.status_code == 403
    # Members see their own month spending only; the owner sees everyone's.
    roster = call(client, member, "GET", f"/api/teams/{slug}/members").get_json()["members"]
    assert {m["user_id"]: m["month_spent"] for m in roster}[owner.id] is None
    roster = call(client, owner, "GET", f"/api/teams/{slug}/members").get_json()["members"]
    assert all(m["month_spent"] is not None for m in roster) and {m["role"] for m in roster} == {"owner", "member"}


def test_one_owner_transfer_leave_and_remove(client: FlaskClient, make_user: Any) -> None:
    owner, admin, member = make_user(), make_user(), make_user()
    slug = new_team(client, owner, admin, member)
    assert call(client, owner, "PUT", f"/api/teams/{slug}/members/{admin.id}/role", {"role": "admin"}).status_code \
        == 200
    resp = call(client, owner, "POST", f"/api/teams/{slug}/leave")
    assert resp.status_code == 409 and code(resp) == "team_owner_required"
    resp = call(client, owner, "PUT", f"/api/teams/{slug}/members/{member.id}/role", {"role": "owner"})
    assert resp.status_code == 409
    # A team admin removes members but not the owner nor another admin's owner rights.
    assert call(client, admin, "DELETE", f"/api/teams/{slug}/members/{owner.id}").status_code == 409
    resp = call(client, owner, "POST", f"/api/teams/{slug}/transfer", {"user_id": admin.id})
    assert resp.status_code == 200
    roles = {m["user_id"]: m["role"] for m in resp.get_json()["members"]}
    assert roles == {owner.id: "admin", admin.id: "owner", member.id: "member"}
    assert call(client, owner, "POST", f"/api/teams/{slug}/leave").status_code == 204
    assert call(client, admin, "DELETE", f"/api/teams/{slug}/members/{member.id}").status_code == 204
    members = call(client, admin, "GET", f"/api/teams/{slug}/members").get_json()["members"]
    assert [(m["user_id"], m["role"]) for m in members] == [(admin.id, "owner")]
    assert call(client, member, "GET", f"/api/teams/{slug}").status_code == 404


def test_invitations_single_use_revocable_and_never_shown_again(client: FlaskClient, make_user: Any,
                                                                admin_conn: psycopg.Connection) -> None:
    owner, a, b = make_user(), make_user(), make_user()
    slug = new_team(client, owner)
    created = call(client, owner, "POST", f"/api/teams/{slug}/invitations", {"role": "admin", "expires_in_days": 1})
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    token, inv = created.get_json()["token"], created.get_json()["invitation"]
    listed = call(client, owner, "GET", f"/api/teams/{slug}/invitations")
    assert token not in listed.get_data(as_text=True)
    assert admin_conn.execute("select count(*) from public.team_invitations where hash like %s",
                              [f"%{token}%"]).fetchone()[0] == 0
    assert call(client, owner, "DELETE", f"/api/teams/{slug}/invitations/{inv['id']}").status_code == 204
    resp = call(client, a, "POST", "/api/teams/join", {"token": token})
    assert resp.status_code == 400 and code(resp) == "invitation_invalid"
    token = call(client, owner, "POST", f"/api/teams/{slug}/invitations").get_json()["token"]
    joined = call(client, a, "POST", "/api/teams/join", {"token": token})
    assert joined.status_code == 200 and joined.get_json()["team"]["role"] == "member"
    assert code(call(client, b, "POST", "/api/teams/join", {"token": token})) == "invitation_invalid"
    again = call(client, owner, "POST", f"/api/teams/{slug}/invitations").get_json()["token"]
    assert code(call(client, a, "POST", "/api/teams/join", {"token": again})) == "already_a_member"
    admin_conn.execute("update public.team_invitations set expires_at = now() - interval '1 second'"
                       " where used_at is null and team_id = (select id from public.teams where slug = %s)", [slug])
    assert code(call(client, b, "POST", "/api/teams/join", {"token": again})) == "invitation_invalid"
    statuses = {i["status"] for i in call(client, owner, "GET", f"/api/teams/{slug}/invitations").get_json()
                ["invitations"]}
    assert statuses == {"revoked", "used", "expired"}


def test_admin_grant_is_audited_and_the_ledger_pages(client: FlaskClient, make_user: Any,
                                                     admin_conn: psycopg.Connection) -> None:
    owner, admin, member = make_user(), make_user(admin=True), make_user()
    slug = new_team(client, owner, member)
    for amount in ("1", "2.5", "0.000001"):
        resp = call(client, admin, "POST", f"/api/admin/teams/{slug}/credits", {"amount": amount, "reason": "r"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["balance_micro"] == 3_500_001
    audit = admin_conn.execute("select count(*) from public.admin_audit_log where action = 'team.credits.grant'"
                               " and target = %s", [f"team:{slug}"]).fetchone()[0]
    assert audit == 3
    page = call(client, member, "GET", f"/api/teams/{slug}/wallet?limit=2").get_json()
    assert page["balance"] == "3.500001" and len(page["entries"]) == 2 and page["next_before"]
    rest = call(client, member, "GET", f"/api/teams/{slug}/wallet?limit=2&before={page['next_before']}").get_json()
    assert len(rest["entries"]) == 1 and rest["next_before"] is None
    listed = call(client, admin, "GET", f"/api/admin/teams?q={slug}").get_json()
    assert listed["total"] == 1 and listed["teams"][0]["role"] is None
    detail = call(client, admin, "GET", f"/api/admin/teams/{slug}").get_json()
    assert {m["email"] for m in detail["members"]} == {owner.email, member.email}
    assert call(client, owner, "GET", "/api/admin/teams").status_code == 403
    resp = call(client, admin, "POST", "/api/admin/teams/no-such-team/credits", {"amount": "1"})
    assert resp.status_code == 404


def test_routing_is_validated_and_slugs_are_unique(client: FlaskClient, make_user: Any) -> None:
    owner = make_user()
    slug = new_team(client, owner)
    resp = call(client, owner, "POST", "/api/teams", {"name": "Again", "slug": slug})
    assert resp.status_code == 409 and code(resp) == "slug_taken"
    bad = call(client, owner, "PUT", f"/api/teams/{slug}/routing", {"provider_priorities": ["no-such-provider"]})
    assert bad.status_code == 422
    good = call(client, owner, "PUT", f"/api/teams/{slug}/routing",
                {"provider_priorities": ["openai"], "fallbacks_enabled": False})
    assert good.status_code == 200 and good.get_json()["routing"] == {"provider_priorities": ["openai"],
                                                                      "fallbacks_enabled": False}


HOSTILE = [
    ("POST", "/api/teams", {"name": "x", "slug": "A"}),
    ("POST", "/api/teams", {"name": "x", "slug": "bad\x00slug"}),
    ("POST", "/api/teams", {"name": "\x00", "slug": "ok-slug"}),
    ("POST", "/api/teams", {"name": "x" * 101, "slug": "ok-slug"}),
    ("POST", "/api/teams", ["not", "an", "object"]),
    ("POST", "/api/teams", {"name": "x", "slug": "é" * 5}),
    ("POST", "/api/teams/join", {"token": "sbt_" + "\x00" * 30}),
    ("POST", "/api/teams/join", {"token": 12345}),
    ("POST", "/api/teams/join", {"token": "sbt_" + "é" * 40}),
    ("PUT", "/api/teams/default", {"team": "\x00"}),
    ("PUT", "/api/teams/default", {"team": 5}),
    ("GET", "/api/teams/%00", None),
    ("GET", "/api/teams/" + "a" * 500, None),
    ("PUT", "/api/teams/{slug}/members/not-a-uuid/cap", {"monthly_credit_cap": "1"}),
    ("PUT", "/api/teams/{slug}/members/{uid}/cap", {"monthly_credit_cap": "NaN"}),
    ("PUT", "/api/teams/{slug}/members/{uid}/cap", {"monthly_credit_cap": "-1"}),
    ("PUT", "/api/teams/{slug}/members/{uid}/cap", {"monthly_credit_cap": 1e308}),
    ("PUT", "/api/teams/{slug}/members/{uid}/cap", {"monthly_credit_cap": True}),
    ("PUT", "/api/teams/{slug}/members/{uid}/cap", {}),
    ("PUT", "/api/teams/{slug}/members/{uid}/role", {"role": "god"}),
    ("POST", "/api/teams/{slug}/invitations", {"expires_in_days": 0}),
    ("POST", "/api/teams/{slug}/invitations", {"expires_in_days": True}),
    ("POST", "/api/teams/{slug}/invitations", {"role": "owner"}),
    ("DELETE", "/api/teams/{slug}/invitations/%00", None),
    ("POST", "/api/teams/{slug}/transfer", {"user_id": ["x"]}),
    ("GET", "/api/teams/{slug}/wallet?limit=0", None),
    ("GET", "/api/teams/{slug}/wallet?before=-1", None),
    ("GET", "/api/teams/{slug}/usage?from=2026-13-01", None),
    ("PUT", "/api/teams/{slug}/keys/e2e-nope", {"api_key": "sk-whatever-long"}),
    ("PUT", "/api/teams/{slug}/keys/openai", {"api_key": "\x00" * 10}),
    ("PUT", "/api/teams/{slug}/routing", {"task_overrides": {"\x00": {"provider": "openai", "model": "m"}}}),
    ("PUT", "/api/teams/{slug}/routing", {"provider_priorities": "openai"}),
    ("PUT", "/api/teams/{slug}/api-keys/not-a-uuid", None),
    ("PUT", "/api/teams/{slug}/api-keys/" + str(uuid.UUID(int=1)), None),
    ("POST", "/api/admin/teams/{slug}/credits", {"amount": "1e400"}),
    ("POST", "/api/admin/teams/{slug}/credits", {"amount": "0"}),
    ("POST", "/api/admin/teams/{slug}/credits", {"amount": "1", "reason": "\x00"}),
    ("GET", "/api/admin/teams?limit=abc", None),
    ("GET", "/api/admin/teams?q=%00", None),
]


@pytest.mark.parametrize(("method", "path", "body"), HOSTILE)
def test_hostile_input_is_a_4xx(client: FlaskClient, make_user: Any, method: str, path: str, body: Any) -> None:
    owner = _owner(make_user)
    slug = _team(client, owner)
    resp = call(client, owner, method, path.format(slug=slug, uid=owner.id), body)
    assert 400 <= resp.status_code < 500, (method, path, resp.status_code, resp.get_data(as_text=True))
    assert "error" in resp.get_json()


_SHARED: dict[str, Any] = {}


def _owner(make_user: Any) -> Any:
    if "owner" not in _SHARED:
        _SHARED["owner"] = make_user(admin=True)  # a site admin owning a team: every route reachable
    return _SHARED["owner"]


def _team(client: FlaskClient, owner: Any) -> str:
    if "slug" not in _SHARED:
        _SHARED["slug"] = new_team(client, owner)
    return str(_SHARED["slug"])


def test_unknown_fields_and_a_zero_limit_are_422(client: Any, make_user: Any) -> None:
    """Found by schemathesis: bodies with fields the document does not name, and `limit=0` on the admin list, were
    accepted (the document says additionalProperties: false and minimum 1)."""
    owner, admin = make_user(), make_user(admin=True)
    resp = client.post("/api/teams", json={"name": "Extra", "slug": "extra-fields", "plan": "gold"},
                       headers=owner.headers)
    assert resp.status_code == 422 and "body" in resp.get_json()["error"]["fields"]
    resp = client.put("/api/teams/default", json={"team": "", "x": 1}, headers=owner.headers)
    assert resp.status_code == 422
    resp = client.get("/api/admin/teams?limit=0", headers=admin.headers)
    assert resp.status_code == 422 and "limit" in resp.get_json()["error"]["fields"]


def test_routing_with_a_list_for_a_provider_is_422_not_500(client: Any, make_user: Any) -> None:
    """Found by schemathesis: an override whose provider is a list (unhashable) was a 500."""
    owner = make_user()
    assert client.post("/api/teams", json={"name": "Routing", "slug": "routing-lists"},
                       headers=owner.headers).status_code == 201
    resp = client.put("/api/teams/routing-lists/routing", headers=owner.headers,
                      json={"task_overrides": {"k": {"model": ["", 0], "provider": []}}})
    assert resp.status_code == 422 and "task_overrides" in resp.get_json()["error"]["fields"]

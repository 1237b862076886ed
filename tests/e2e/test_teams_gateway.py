"""Teams end to end: the JSON API to create a team, invite and join, grant credits (site admin), set caps, store a
team key; then the official openai SDK against Switchboard on a loopback port and fake providers on loopback, real
Postgres: a member billed to the team (header, team-bound API key, default team), capped per member, BYOK with the
team's key (never shown to the member), removal refused on the next request, and N members racing a small team
wallet without overspending it."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import openai
import pytest
import requests

from tests.e2e.conftest import Gateway, balance, log_row
from tests.support.upstreams import REPLY

MSG = [{"role": "user", "content": "say something nice"}]
TEAM_KEY = "sk-canary-team-byok-3e1f9c0b7a62"


def api(gw: Gateway, user: Any, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, gw.url + path, headers=user.headers, json=body, timeout=15)


def team_balance(db: Any, team_id: str) -> int:
    with db.as_service() as conn:
        row = conn.execute("select balance from public.team_credit_accounts where team_id = %s", [team_id]).fetchone()
        return int(row[0]) if row else 0


def team_ledger_sum(db: Any, team_id: str) -> int:
    with db.as_service() as conn:
        row = conn.execute("select coalesce(sum(delta), 0) from public.team_credit_ledger where team_id = %s",
                           [team_id]).fetchone()
        return int(row[0])


def make_team(gw: Gateway, owner: Any, admin: Any, credits: str, members: list[Any]) -> dict[str, Any]:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    resp = api(gw, owner, "POST", "/api/teams", {"name": "E2E team", "slug": slug})
    assert resp.status_code == 201, resp.text
    team = resp.json()["team"]
    assert team["role"] == "owner"
    for m in members:
        inv = api(gw, owner, "POST", f"/api/teams/{slug}/invitations", {"role": "member"})
        assert inv.status_code == 201, inv.text
        joined = api(gw, m, "POST", "/api/teams/join", {"token": inv.json()["token"]})
        assert joined.status_code == 200, joined.text
        # Single use: the same link again is refused.
        again = api(gw, owner, "POST", "/api/teams/join", {"token": inv.json()["token"]})
        assert again.status_code == 400 and again.json()["error"]["code"] == "invitation_invalid"
    grant = api(gw, admin, "POST", f"/api/admin/teams/{slug}/credits", {"amount": credits, "reason": "e2e"})
    assert grant.status_code == 200, grant.text
    return team


def client(gw: Gateway, user: Any, team: str | None = None, **kwargs: Any) -> openai.OpenAI:
    headers = {"X-Switchboard-Team": team} if team else {}
    return gw.client(user.token, default_headers=headers, **kwargs)


def test_member_billed_to_the_team_capped_per_member_and_removed(gw: Gateway, make_user: Any, member: Any,
                                                                  db: Any) -> None:
    owner, admin = make_user(), make_user(admin=True)
    team = make_team(gw, owner, admin, "50", [member])
    slug, team_id = team["slug"], team["id"]
    personal_before, team_before = balance(db, member.id), team_balance(db, team_id)
    assert team_before == 50_000_000

    raw = client(gw, member, slug).chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-switchboard-team"] == slug and raw.headers["x-switchboard-mode"] == "member"
    charged = team_before - team_balance(db, team_id)
    assert charged > 0 and raw.headers["x-switchboard-credits"] == f"{charged / 1e6:.6f}"
    assert balance(db, member.id) == personal_before  # the member's own wallet is untouched
    row = log_row(db, raw.headers["x-request-id"])
    assert row["team_id"] == team_id and row["user_id"] == member.id
    receipt = api(gw, member, "GET", f"/api/user/llm/receipts/{raw.headers['x-request-id']}").json()["receipt"]
    assert receipt["team_id"] == team_id
    # A stream is billed to the team too.
    stream = client(gw, member, slug).chat.completions.create(model="echo-1", messages=MSG, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == REPLY
    assert team_balance(db, team_id) < team_before - charged
    assert team_ledger_sum(db, team_id) == team_balance(db, team_id)

    # Without the header: personal, as before.
    raw = gw.client(member.token).chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert "x-switchboard-team" not in raw.headers and balance(db, member.id) < personal_before

    # The owner and the member see the usage per member; usage groups by team.
    gw.flush_logs()
    usage = api(gw, owner, "GET", f"/api/teams/{slug}/usage").json()["members"]
    assert [u["user_id"] for u in usage] == [member.id] and usage[0]["requests"] == 2
    grouped = api(gw, member, "GET", "/api/user/llm/usage?group_by=team").json()["buckets"]
    assert {b["team"] for b in grouped} == {team_id, None}
    site = api(gw, admin, "GET", "/api/admin/analytics/teams").json()["teams"]
    (row_t,) = [t for t in site if t["team_id"] == team_id]
    assert row_t["slug"] == slug and row_t["requests"] == 2 and row_t["credits_micro"] > 0

    # A member cannot raise their own cap; the owner sets it to 0: refused with the team cap's code.
    mine = api(gw, member, "PUT", f"/api/teams/{slug}/members/{member.id}/cap", {"monthly_credit_cap": "1000"})
    assert mine.status_code == 403 and mine.json()["error"]["code"] == "team_forbidden"
    capped = api(gw, owner, "PUT", f"/api/teams/{slug}/members/{member.id}/cap", {"monthly_credit_cap": "0"})
    assert capped.status_code == 200, capped.text
    with pytest.raises(openai.APIStatusError) as err:
        client(gw, member, slug).chat.completions.create(model="echo-1", messages=MSG)
    assert err.value.status_code == 402 and err.value.body["code"] == "team_member_cap_reached"
    # A cap with room limits the reservation (the output limit header says why).
    roster = api(gw, owner, "GET", f"/api/teams/{slug}/members").json()["members"]
    (spent,) = [m["month_spent"] for m in roster if m["user_id"] == member.id]
    room = float(spent) + 0.1  # a short answer fits, the default output limit does not
    api(gw, owner, "PUT", f"/api/teams/{slug}/members/{member.id}/cap", {"monthly_credit_cap": f"{room:.6f}"})
    raw = client(gw, member, slug).chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert raw.headers.get("x-switchboard-output-limit-reason") == "team_member_cap"
    api(gw, owner, "PUT", f"/api/teams/{slug}/members/{member.id}/cap", {"monthly_credit_cap": None})

    # The default team bills requests without the header; an outsider naming the team is refused.
    assert api(gw, member, "PUT", "/api/teams/default", {"team": slug}).json()["default_team"] == slug
    raw = gw.client(member.token).chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert raw.headers["x-switchboard-team"] == slug
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(gw, make_user(), slug).chat.completions.create(model="echo-1", messages=MSG)
    assert denied.value.body["code"] == "not_a_team_member"

    # Removed: refused on the very next request (header and default team alike), and the wallet is untouched.
    assert api(gw, owner, "DELETE", f"/api/teams/{slug}/members/{member.id}").status_code == 204
    left = team_balance(db, team_id)
    for c in (client(gw, member, slug), gw.client(member.token)):
        with pytest.raises(openai.PermissionDeniedError) as denied:
            c.chat.completions.create(model="echo-1", messages=MSG)
        assert denied.value.body["code"] == "not_a_team_member"
    assert team_balance(db, team_id) == left == team_ledger_sum(db, team_id)
    assert api(gw, member, "GET", f"/api/teams/{slug}").status_code == 404


def test_team_bound_api_key_bills_the_team(gw: Gateway, make_user: Any, member: Any, db: Any) -> None:
    owner, admin = make_user(), make_user(admin=True)
    team = make_team(gw, owner, admin, "5", [member])
    created = api(gw, member, "POST", "/api/user/api-keys", {"name": "team script"}).json()
    assert api(gw, member, "PUT", f"/api/teams/{team['slug']}/api-keys/{created['api_key']['id']}").status_code == 204
    before = team_balance(db, team["id"])
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=created["secret"], max_retries=0, timeout=30)
    raw = c.chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert raw.headers["x-switchboard-team"] == team["slug"] and team_balance(db, team["id"]) < before
    # The key cannot name another team.
    other = make_team(gw, member, admin, "1", [])
    with pytest.raises(openai.PermissionDeniedError) as denied:
        c.chat.completions.create(model="echo-1", messages=MSG, extra_headers={"X-Switchboard-Team": other["slug"]})
    assert denied.value.body["code"] == "team_not_allowed"
    # Removed, the key is refused (never silently billed to the member) until they unbind it.
    assert api(gw, owner, "DELETE", f"/api/teams/{team['slug']}/members/{member.id}").status_code == 204
    with pytest.raises(openai.PermissionDeniedError) as denied:
        c.chat.completions.create(model="echo-1", messages=MSG)
    assert denied.value.body["code"] == "not_a_team_member"
    unbound = api(gw, member, "DELETE", f"/api/teams/{team['slug']}/api-keys/{created['api_key']['id']}")
    assert unbound.status_code == 204
    raw = c.chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert "x-switchboard-team" not in raw.headers
    # Keys cannot manage teams.
    resp = requests.post(gw.url + "/api/teams", headers={"Authorization": f"Bearer {created['secret']}"},
                         json={"name": "x", "slug": f"k-{uuid.uuid4().hex[:8]}"}, timeout=10)
    assert resp.status_code == 403


def test_byok_with_the_team_key_never_shown_to_the_member(gw: Gateway, make_user: Any, member: Any,
                                                          db: Any) -> None:
    owner, admin = make_user(), make_user(admin=True)
    team = make_team(gw, owner, admin, "1", [member])
    slug = team["slug"]
    refused = api(gw, member, "PUT", f"/api/teams/{slug}/keys/e2e-oa", {"api_key": TEAM_KEY})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "team_forbidden"
    put = api(gw, owner, "PUT", f"/api/teams/{slug}/keys/e2e-oa", {"api_key": TEAM_KEY})
    assert put.status_code == 200, put.text
    assert TEAM_KEY not in put.text
    listed = api(gw, member, "GET", f"/api/teams/{slug}/keys")
    (key,) = listed.json()["keys"]
    assert key["last4"] == TEAM_KEY[-4:] and key["added_by"] == owner.id and TEAM_KEY not in listed.text
    assert api(gw, member, "PUT", "/api/user/settings", {"llm_mode": "byok"}).status_code == 200
    before = team_balance(db, team["id"])
    # e2e-oa's upstream accepts only its admin key: a 401 from it proves the team's key was sent.
    with pytest.raises(openai.APIStatusError) as err:
        client(gw, member, slug).chat.completions.create(model="echo-1", messages=MSG)
    assert err.value.status_code == 400 and err.value.body["code"] == "upstream_auth_failed"
    assert gw.oa1.chat_requests()[-1].headers["authorization"] == f"Bearer {TEAM_KEY}"
    assert TEAM_KEY not in json.dumps(err.value.body)
    assert team_balance(db, team["id"]) == before  # BYOK never spends the wallet
    # Without the team, the member has no key of their own: the team key is not theirs to use.
    with pytest.raises(openai.APIStatusError) as err:
        gw.client(member.token).chat.completions.create(model="echo-1", messages=MSG)
    assert err.value.body["code"] == "byok_key_missing"
    gw.flush_logs()
    assert TEAM_KEY not in gw.log_text.getvalue()
    with db.as_service() as conn:
        stored = conn.execute("select ciphertext from public.team_provider_keys where team_id = %s",
                              [team["id"]]).fetchone()[0]
    assert TEAM_KEY not in stored


def test_concurrent_members_never_overspend_a_small_team_wallet(gw: Gateway, make_user: Any, db: Any,
                                                                capsys: Any) -> None:
    workers, per_worker = 8, 5
    owner, admin = make_user(), make_user(admin=True)
    members = [make_user() for _ in range(workers)]
    team = make_team(gw, owner, admin, "0.3", members)
    granted = team_balance(db, team["id"])
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(m: Any) -> None:
        c = client(gw, m, team["slug"])
        for _ in range(per_worker):
            try:
                c.chat.completions.create(model="echo-1", messages=MSG, max_tokens=20)
                result = "ok"
            except openai.APIStatusError as exc:
                result = str(exc.body.get("code") if isinstance(exc.body, dict) else exc.status_code)
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=run, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    final = team_balance(db, team["id"])
    with db.as_service() as conn:
        spent = conn.execute("select coalesce(sum(charged), 0), count(*) filter (where status = 'reserved')"
                             " from public.credit_reservations where team_id = %s", [team["id"]]).fetchone()
    ok = outcomes.count("ok")
    refused = outcomes.count("insufficient_credits")
    with capsys.disabled():
        print(f"\nteam wallet race: {workers} workers x {per_worker} requests = {len(outcomes)}; ok {ok}, "
              f"402 {refused}; granted {granted}, final balance {final}, charged {spent[0]}, "
              f"ledger sum {team_ledger_sum(db, team['id'])}")
    assert len(outcomes) == workers * per_worker
    assert set(outcomes) <= {"ok", "insufficient_credits"}, outcomes
    assert ok > 0 and refused > 0  # the wallet ran out in the race
    assert final >= 0 and spent[1] == 0
    assert final == team_ledger_sum(db, team["id"]) == granted - int(spent[0])


def test_models_list_follows_the_team_billed(gw: Gateway, make_user: Any, member: Any) -> None:
    owner, admin = make_user(), make_user(admin=True)
    team = make_team(gw, owner, admin, "1", [member])
    listed = {m.id for m in client(gw, member, team["slug"]).models.list()}
    assert "e2e-oa/echo-1" in listed
    with pytest.raises(openai.PermissionDeniedError):
        client(gw, make_user(), team["slug"]).models.list()


def test_members_inherit_the_team_routing_when_billed_to_it(gw: Gateway, make_user: Any, member: Any) -> None:
    owner, admin = make_user(), make_user(admin=True)
    team = make_team(gw, owner, admin, "5", [member])
    resp = api(gw, owner, "PUT", f"/api/teams/{team['slug']}/routing",
               {"provider_priorities": ["e2e-oa2"], "allow_dearer_fallbacks": True})
    assert resp.status_code == 200, resp.text
    raw = client(gw, member, team["slug"]).chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert raw.headers["x-switchboard-provider"] == "e2e-oa2"
    raw = gw.client(member.token).chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert raw.headers["x-switchboard-provider"] == "e2e-oa"  # personal: the member's own order

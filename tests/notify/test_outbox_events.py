"""Each event of the outbox is produced by the action that causes it — a JSON route, /auth/v1, a gateway request —
in that action's transaction (never by calling the notifier), once: a threshold once per crossing or per month, a
failing key once per day, and nothing for an action that rolled back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.notify.conftest import events_of, upstream_provider
from tests.support.upstreams import FakeUpstream, start_openai_upstream
from webapp.config import Settings
from webapp.crypto import KeyRing
from webapp.db import Database
from webapp.repos import credits as credits_repo

K = 18_000  # one request below: 9 reply words x 2,000 micro-credits (input tokens cost nothing here)


def call(client: FlaskClient, headers: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    return client.open(path, method=method, headers=headers, json=body)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = start_openai_upstream(api_key="sk-notify-right-7c1e")
    yield up
    up.stop()


@pytest.fixture()
def priced(upstream: FakeUpstream, settings: Settings, database_urls: tuple[str, str]) -> str:
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        return upstream_provider(conn, KeyRing(settings.encryption_keys), upstream.base_url, "sk-notify-right-7c1e",
                                 rate_in=0)


def chat(client: FlaskClient, headers: dict[str, str], slug: str) -> Any:
    return client.post("/v1/chat/completions", headers=headers,
                       json={"model": f"{slug}/echo-1", "max_tokens": 9, "messages": [{"role": "user",
                                                                                        "content": "hi"}]})


def test_api_key_created_and_revoked_are_recorded_once_each(client: FlaskClient, make_user: Any,
                                                             admin_conn: psycopg.Connection) -> None:
    me = make_user()
    made = call(client, me.headers, "POST", "/api/user/api-keys", {"name": "ci runner"})
    assert made.status_code == 201, made.get_data(as_text=True)
    key = made.get_json()["api_key"] if "api_key" in made.get_json() else made.get_json()
    created = events_of(admin_conn, "api_key.created", user_id=me.id)
    assert len(created) == 1
    assert created[0]["data"]["name"] == "ci runner" and created[0]["data"]["api_key_id"] == key["id"]
    assert "secret" not in str(created[0]["data"]) and made.get_json().get("secret", "x")[:8] not in \
        str(created[0]["data"]).replace(key["prefix"], "")
    assert call(client, me.headers, "DELETE", f"/api/user/api-keys/{key['id']}").status_code in (200, 204)
    assert call(client, me.headers, "DELETE", f"/api/user/api-keys/{key['id']}").status_code in (200, 204, 404)
    revoked = events_of(admin_conn, "api_key.revoked", user_id=me.id)
    assert [e["data"]["api_key_id"] for e in revoked] == [key["id"]]


def test_password_change_through_auth_v1_is_recorded_and_a_sign_in_is_not(client: FlaskClient, make_user: Any,
                                                                          admin_conn: psycopg.Connection) -> None:
    me = make_user()
    signed = client.post("/auth/v1/token?grant_type=password", json={"email": me.email, "password": me.password})
    assert signed.status_code == 200
    assert events_of(admin_conn, "password.changed", user_id=me.id) == []
    changed = client.put("/auth/v1/user", headers=me.headers,
                         json={"password": "a much better passphrase 42", "current_password": me.password})
    assert changed.status_code == 200, changed.get_data(as_text=True)
    events = events_of(admin_conn, "password.changed", user_id=me.id)
    assert len(events) == 1 and events[0]["data"] == {}


def test_admin_grant_records_credits_granted(client: FlaskClient, make_user: Any,
                                             admin_conn: psycopg.Connection) -> None:
    admin, me = make_user(admin=True), make_user()
    resp = call(client, admin.headers, "POST", f"/api/admin/users/{me.id}/credits",
                {"amount": "2.5", "reason": "welcome"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    [event] = events_of(admin_conn, "credits.granted", user_id=me.id)
    assert event["data"] == {"wallet": "user", "amount_micro": 2_500_000, "balance_micro": 2_500_000,
                             "reason": "welcome"}


def test_team_invitation_is_a_team_event(client: FlaskClient, make_user: Any, admin_conn: psycopg.Connection) -> None:
    owner = make_user()
    slug = f"ntf-{owner.id[:8]}"
    assert call(client, owner.headers, "POST", "/api/teams", {"name": "Notify team", "slug": slug}).status_code == 201
    made = call(client, owner.headers, "POST", f"/api/teams/{slug}/invitations", {"role": "admin"})
    assert made.status_code == 201
    team_id = admin_conn.execute("select id::text from public.teams where slug = %s", [slug]).fetchone()[0]
    [event] = events_of(admin_conn, "team.invitation.created", team_id=team_id)
    assert event["user_id"] is None and event["data"]["role"] == "admin" and event["data"]["team_name"] == "Notify team"
    assert made.get_json()["token"] not in str(event)


def test_a_rolled_back_grant_leaves_no_event_and_no_job(db: Database, make_user: Any,
                                                        admin_conn: psycopg.Connection) -> None:
    me = make_user()
    jobs_before = admin_conn.execute("select count(*) from public.procrastinate_jobs").fetchone()[0]
    with pytest.raises(RuntimeError), db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 5_000_000, "never happened", None)
        assert conn.execute("select count(*) from public.notification_events where user_id = %s",
                            [me.id]).fetchone()[0] == 1  # written in the same transaction ...
        raise RuntimeError("the action fails after its grant")
    assert events_of(admin_conn, "credits.granted", user_id=me.id) == []  # ... and gone with it
    assert admin_conn.execute("select count(*) from public.procrastinate_jobs").fetchone()[0] == jobs_before


def test_each_event_queues_its_dispatch_in_the_same_transaction(db: Database, make_user: Any,
                                                                admin_conn: psycopg.Connection) -> None:
    me = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 1_000_000, "queued", None)
    [event] = events_of(admin_conn, "credits.granted", user_id=me.id)
    jobs = admin_conn.execute("select task_name, queue_name, status from public.procrastinate_jobs"
                              " where args ->> 'event_id' = %s", [event["id"]]).fetchall()
    assert [tuple(map(str, j)) for j in jobs] in ([("notify.dispatch", "notify", "todo")],
                                                  [("notify.dispatch", "notify", "succeeded")], [])


def test_low_balance_is_told_once_per_crossing_and_rearmed_by_a_grant(client: FlaskClient, make_user: Any,
                                                                      db: Database, priced: str,
                                                                      admin_conn: psycopg.Connection) -> None:
    admin_conn.execute("update public.site_settings set low_balance_threshold = 1000000 where id")
    me = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 1_000_000 + K + K // 2, "just above", None)
    assert chat(client, me.headers, priced).status_code == 200  # 1.009 credits left: above
    assert events_of(admin_conn, "balance.low", user_id=me.id) == []
    for _ in range(3):  # crosses below on the first, stays below after
        assert chat(client, me.headers, priced).status_code == 200
    [low] = events_of(admin_conn, "balance.low", user_id=me.id)
    assert low["data"]["wallet"] == "user" and low["data"]["threshold_micro"] == 1_000_000
    assert low["data"]["balance_micro"] < 1_000_000
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 2_000_000, "top-up", None)  # back above: armed again
        credits_repo.adjust(conn, me.id, -2_000_000, "correction", None)  # and below again
    assert len(events_of(admin_conn, "balance.low", user_id=me.id)) == 2


def test_monthly_caps_warn_at_80_and_stop_at_100_once_a_month(client: FlaskClient, make_user: Any, db: Database,
                                                              priced: str, admin_conn: psycopg.Connection) -> None:
    me = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 50_000_000, "funds", None)
    # An API key capped at 1.25 requests: the first request uses 80 % of it.
    made = call(client, me.headers, "POST", "/api/user/api-keys", {"name": "capped", "monthly_credit_cap": "0.0225"})
    assert made.status_code == 201, made.get_data(as_text=True)
    body = made.get_json()
    secret, key_id = body.get("secret") or body["api_key"]["secret"], (body.get("api_key") or body)["id"]
    assert chat(client, {"Authorization": f"Bearer {secret}"}, priced).status_code == 200
    [warning] = events_of(admin_conn, "spend_cap.warning", user_id=me.id)
    assert warning["data"]["scope"] == "api_key" and warning["data"]["api_key_id"] == key_id
    assert warning["data"]["spent_micro"] == K and warning["data"]["cap_micro"] == 22_500
    assert warning["data"]["percent"] == 80
    # The user's own cap of two requests: the second reaches it.
    assert call(client, me.headers, "PUT", "/api/user/settings", {"monthly_credit_cap": "0.054"}).status_code == 200
    assert chat(client, me.headers, priced).status_code == 200  # 2 of 3 requests' worth with the key's
    assert events_of(admin_conn, "spend_cap.reached", user_id=me.id) == []
    assert chat(client, me.headers, priced).status_code == 200
    [reached] = events_of(admin_conn, "spend_cap.reached", user_id=me.id)
    assert reached["data"]["scope"] == "user" and reached["data"]["spent_micro"] == 3 * K
    # Raised, and reached again within the month: still the one event.
    assert call(client, me.headers, "PUT", "/api/user/settings", {"monthly_credit_cap": "0.072"}).status_code == 200
    assert chat(client, me.headers, priced).status_code == 200
    assert len(events_of(admin_conn, "spend_cap.reached", user_id=me.id)) == 1
    assert len(events_of(admin_conn, "spend_cap.warning", user_id=me.id)) == 1
    # The running tally a capped scope keeps was rebuilt from the reservations when the cap changed.
    assert admin_conn.execute("select spent from private.cap_spend where scope = 'user' and subject = %s",
                              [me.id]).fetchone() == (4 * K,)


def test_a_key_refused_twice_in_a_day_is_one_event(client: FlaskClient, make_user: Any, db: Database,
                                                   upstream: FakeUpstream, settings: Settings,
                                                   database_urls: tuple[str, str],
                                                   admin_conn: psycopg.Connection) -> None:
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        slug = upstream_provider(conn, KeyRing(settings.encryption_keys), upstream.base_url, "sk-notify-stale-0d9b")
    me = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 5_000_000, "funds", None)
    for _ in range(2):
        resp = chat(client, me.headers, slug)
        assert resp.status_code == 502 and resp.get_json()["error"]["code"] == "upstream_auth_failed"
    key_id = admin_conn.execute("select k.id::text from public.llm_admin_keys k join public.llm_providers p"
                                " on p.id = k.provider_id where p.slug = %s", [slug]).fetchone()[0]
    events = [e for e in events_of(admin_conn, "provider_key.failing") if e["data"]["key_id"] == key_id]
    assert len(events) == 1
    assert events[0]["user_id"] is None and events[0]["team_id"] is None  # the site's key: told to the admins
    assert events[0]["data"]["status"] == 401 and events[0]["data"]["last4"] == "0d9b"
    assert "sk-notify-stale" not in str(events[0])
    # A second app process (its own memo) asking again the same day: the database still records one.
    with db.service_statement() as conn:
        again = conn.execute("select public.notify_key_failing('admin', %s, 401)", [key_id]).fetchone()[0]
    assert again is False



def test_a_users_stored_byok_key_refused_is_told_to_its_owner(client: FlaskClient, make_user: Any, priced: str,
                                                              admin_conn: psycopg.Connection) -> None:
    me = make_user()
    saved = call(client, me.headers, "PUT", f"/api/user/llm/keys/{priced}", {"api_key": "sk-users-own-stale-5e2a"})
    assert saved.status_code == 200, saved.get_data(as_text=True)
    assert call(client, me.headers, "PUT", "/api/user/settings", {"llm_mode": "byok"}).status_code == 200
    for _ in range(2):
        resp = chat(client, me.headers, priced)
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "upstream_auth_failed"
    [event] = events_of(admin_conn, "provider_key.failing", user_id=me.id)
    assert event["data"]["key_source"] == "byok" and event["data"]["last4"] == "5e2a"
    assert event["data"]["provider"] == priced and "sk-users-own" not in str(event)


def test_team_wallet_grant_and_low_balance_are_team_events(client: FlaskClient, make_user: Any, priced: str,
                                                           admin_conn: psycopg.Connection) -> None:
    admin_conn.execute("update public.site_settings set low_balance_threshold = 1000000 where id")
    owner, site_admin = make_user(), make_user(admin=True)
    slug = f"ntw-{owner.id[:8]}"
    assert call(client, owner.headers, "POST", "/api/teams", {"name": "Wallet team", "slug": slug}).status_code == 201
    granted = call(client, site_admin.headers, "POST", f"/api/admin/teams/{slug}/credits", {"amount": "1.02"})
    assert granted.status_code in (200, 201), granted.get_data(as_text=True)
    team_id = admin_conn.execute("select id::text from public.teams where slug = %s", [slug]).fetchone()[0]
    [grant] = events_of(admin_conn, "credits.granted", team_id=team_id)
    assert grant["user_id"] is None and grant["data"]["wallet"] == "team" and grant["data"]["amount_micro"] == 1_020_000
    team_headers = {**owner.headers, "X-Switchboard-Team": slug}
    for _ in range(3):
        assert chat(client, team_headers, priced).status_code == 200
    [low] = events_of(admin_conn, "balance.low", team_id=team_id)
    assert low["user_id"] is None and low["data"]["wallet"] == "team"
    assert events_of(admin_conn, "balance.low", user_id=owner.id) == []  # the owner's own wallet was not touched


def test_the_operator_cli_grant_is_recorded_too(app: Any, make_user: Any, admin_conn: psycopg.Connection) -> None:
    me = make_user()
    result = app.test_cli_runner().invoke(args=["credits", "grant", me.email, "3", "--reason", "from the CLI"])
    assert result.exit_code == 0, result.output
    [event] = events_of(admin_conn, "credits.granted", user_id=me.id)
    assert event["data"]["reason"] == "from the CLI" and event["data"]["amount_micro"] == 3_000_000


def test_a_team_members_cap_is_told_to_the_member(client: FlaskClient, make_user: Any, priced: str,
                                                  admin_conn: psycopg.Connection) -> None:
    owner, member, site_admin = make_user(), make_user(), make_user(admin=True)
    slug = f"ntc-{owner.id[:8]}"
    assert call(client, owner.headers, "POST", "/api/teams", {"name": "Capped team", "slug": slug}).status_code == 201
    invited = call(client, owner.headers, "POST", f"/api/teams/{slug}/invitations", {"role": "member"})
    token = invited.get_json()["token"]
    assert call(client, member.headers, "POST", "/api/teams/join", {"token": token}).status_code == 200
    assert call(client, site_admin.headers, "POST", f"/api/admin/teams/{slug}/credits",
                {"amount": "50"}).status_code in (200, 201)
    capped = call(client, owner.headers, "PUT", f"/api/teams/{slug}/members/{member.id}/cap",
                  {"monthly_credit_cap": "0.036"})
    assert capped.status_code == 200, capped.get_data(as_text=True)
    headers = {**member.headers, "X-Switchboard-Team": slug}
    assert chat(client, headers, priced).status_code == 200
    assert events_of(admin_conn, "spend_cap.reached", user_id=member.id) == []
    assert chat(client, headers, priced).status_code == 200
    [reached] = events_of(admin_conn, "spend_cap.reached", user_id=member.id)
    team_id = admin_conn.execute("select id::text from public.teams where slug = %s", [slug]).fetchone()[0]
    assert reached["team_id"] == team_id and reached["data"]["scope"] == "team_member"
    assert reached["data"]["spent_micro"] == 2 * K and reached["data"]["cap_micro"] == 36_000

"""catalog_version moves only on a real change, and the API roles hold only the grants the app needs: run as the
real roles (db.as_anon, db.as_user, db.as_service) against the migrated database."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.admin import insert_provider
from webapp.db import Database

DENIED = psycopg.errors.InsufficientPrivilege


@pytest.fixture(scope="module")
def provider(database_urls: tuple[str, str]) -> Iterator[dict[str, str]]:
    """A provider with one rate and one admin key, removed afterwards."""
    slug = f"sec-cat-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        pid = insert_provider(conn, slug, "http://10.9.8.7:11434/v1")
        key = conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4)
                              values (%s, 'v1.k1.secret', 'k1', 'cret') returning id::text""", [pid]).fetchone()
        rate = conn.execute("select id::text from public.llm_model_rates where provider_id = %s", [pid]).fetchone()
    assert key is not None and rate is not None
    yield {"provider": pid, "slug": slug, "key": key[0], "rate": rate[0]}
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("delete from public.llm_providers where id = %s", [pid])


def version(db: Database) -> int:
    with db.as_service() as conn:
        row = conn.execute("select version from public.catalog_version").fetchone()
    assert row is not None
    return int(row[0])


def run_as(db: Database, claims: dict[str, Any], sql: str, params: list[Any] | None = None) -> int:
    """Run one statement as the signed-in user and commit; the number of rows it changed."""
    with db.as_user(claims) as conn:
        return conn.execute(sql, params or []).rowcount


# -- catalog_version ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["false", "true"])
@pytest.mark.parametrize("table", ["llm_providers", "llm_model_rates", "llm_admin_keys"])
def test_member_update_cannot_bump_catalog_version(db: Database, make_user: Any, provider: dict[str, str],
                                                   table: str, where: str) -> None:
    member = make_user()
    column = {"llm_providers": "name", "llm_model_rates": "input_rate", "llm_admin_keys": "label"}[table]
    before = version(db)
    try:
        changed = run_as(db, member.claims, f"update public.{table} set {column} = {column} where {where}")
    except DENIED:
        changed = 0
    assert changed == 0
    assert version(db) == before, "a signed-in non-admin made every worker reload the catalog"


@pytest.mark.parametrize("table", ["llm_providers", "llm_model_rates", "llm_admin_keys"])
def test_member_delete_matching_nothing_cannot_bump_catalog_version(db: Database, make_user: Any,
                                                                    provider: dict[str, str], table: str) -> None:
    member = make_user()
    before = version(db)
    with contextlib.suppress(DENIED):
        run_as(db, member.claims, f"delete from public.{table} where true")
    assert version(db) == before


def test_admin_no_op_update_does_not_bump_catalog_version(db: Database, make_user: Any,
                                                          provider: dict[str, str]) -> None:
    admin = make_user(admin=True)
    before = version(db)
    assert run_as(db, admin.claims, "update public.llm_providers set name = name where id = %s",
                  [provider["provider"]]) == 1
    assert run_as(db, admin.claims, "update public.llm_model_rates set input_rate = input_rate where id = %s",
                  [provider["rate"]]) == 1
    assert run_as(db, admin.claims, "update public.llm_admin_keys set label = label where id = %s",
                  [provider["key"]]) == 1
    assert run_as(db, admin.claims, "update public.llm_providers set name = name where false") == 0
    assert version(db) == before


def test_admin_real_change_bumps_catalog_version_once(db: Database, make_user: Any,
                                                      provider: dict[str, str]) -> None:
    admin = make_user(admin=True)
    before = version(db)
    run_as(db, admin.claims, "update public.llm_providers set name = %s where id = %s",
           [f"Renamed {uuid.uuid4().hex[:4]}", provider["provider"]])
    assert version(db) == before + 1
    run_as(db, admin.claims, "update public.llm_model_rates set input_rate = input_rate + 1 where id = %s",
           [provider["rate"]])
    run_as(db, admin.claims, "update public.llm_admin_keys set label = %s where id = %s",
           [uuid.uuid4().hex[:6], provider["key"]])
    assert version(db) == before + 3


def test_admin_rate_upsert_and_delete_bump_catalog_version(db: Database, make_user: Any,
                                                           provider: dict[str, str]) -> None:
    admin = make_user(admin=True)
    model = f"m-{uuid.uuid4().hex[:6]}"
    before = version(db)
    run_as(db, admin.claims, """insert into public.llm_model_rates (provider_id, model, input_rate, output_rate)
                                values (%s, %s, 1, 2)""", [provider["provider"], model])
    assert version(db) == before + 1
    upsert = """insert into public.llm_model_rates (provider_id, model, input_rate, output_rate) values (%s, %s, 1, 2)
                on conflict (provider_id, model) do update set input_rate = excluded.input_rate,
                    output_rate = excluded.output_rate"""
    run_as(db, admin.claims, upsert, [provider["provider"], model])  # same values: no change
    assert version(db) == before + 1
    run_as(db, admin.claims, "delete from public.llm_model_rates where provider_id = %s and model = %s",
           [provider["provider"], model])
    assert version(db) == before + 2


# -- grants -------------------------------------------------------------------------------------------------------

def test_anon_cannot_read_provider_base_urls(db: Database, provider: dict[str, str]) -> None:
    with pytest.raises(DENIED), db.as_anon() as conn:
        conn.execute("select base_url from public.llm_providers")
    with pytest.raises(DENIED), db.as_anon() as conn:
        conn.execute("select * from public.llm_providers")
    with db.as_anon() as conn:
        row = conn.execute("select slug, name, credit_multiplier from public.llm_providers where id = %s",
                           [provider["provider"]]).fetchone()
    assert row is not None and row[0] == provider["slug"]


def test_pricing_route_answers_without_base_urls(client: Any, provider: dict[str, str]) -> None:
    resp = client.get("/api/pricing/providers")
    assert resp.status_code == 200
    mine = [p for p in resp.get_json()["providers"] if p["slug"] == provider["slug"]]
    assert mine and mine[0]["models"]
    assert "10.9.8.7" not in resp.get_data(as_text=True)


@pytest.mark.parametrize("sql", [
    "update public.llm_providers set slug = slug where false",
    "update public.llm_providers set created_at = created_at where false",
    "update public.llm_model_rates set provider_id = provider_id where false",
    "delete from public.llm_admin_keys where false",
])
@pytest.mark.parametrize("who", ["member", "admin"])
def test_authenticated_lost_grants_the_app_never_uses(db: Database, make_user: Any, sql: str, who: str) -> None:
    user = make_user(admin=who == "admin")
    with pytest.raises(DENIED):
        run_as(db, user.claims, sql)


def test_admins_create_and_delete_providers_members_cannot(db: Database, make_user: Any) -> None:
    """Issue 11: the panel creates and retires providers as the admin, through RLS (admin-only policies)."""
    insert = ("insert into public.llm_providers (slug, name, api_style, base_url, default_model)"
              " values ('sec-new', 'x', 'openai', 'https://x.test/v1', 'm')")
    member, admin = make_user(), make_user(admin=True)
    with pytest.raises(DENIED, match="row-level security"):
        run_as(db, member.claims, insert)
    assert run_as(db, member.claims, "delete from public.llm_providers where slug = 'openai'") == 0
    assert run_as(db, admin.claims, insert) == 1
    assert run_as(db, member.claims, "delete from public.llm_providers where slug = 'sec-new'") == 0
    assert run_as(db, admin.claims, "delete from public.llm_providers where slug = 'sec-new'") == 1
    with pytest.raises(DENIED):  # the slug, which every log row names, is still never updated
        run_as(db, admin.claims, "update public.llm_providers set slug = slug where false")


def test_admin_panel_writes_still_work(db: Database, make_user: Any, provider: dict[str, str]) -> None:
    admin = make_user(admin=True)
    assert run_as(db, admin.claims, """update public.llm_providers set name = name, api_style = api_style,
               base_url = base_url, default_model = default_model, enabled = enabled,
               credit_multiplier = credit_multiplier, byok_allowed = byok_allowed,
               custom_base_url_allowed = custom_base_url_allowed, sort_order = sort_order,
               free_for_byok = free_for_byok where id = %s""", [provider["provider"]]) == 1
    assert run_as(db, admin.claims, """update public.llm_model_rates set model = model, input_rate = input_rate,
               output_rate = output_rate, context_window = context_window, max_output_tokens = max_output_tokens
               where id = %s""", [provider["rate"]]) == 1
    assert run_as(db, admin.claims, "update public.llm_admin_keys set active = active, label = label,"
                  " revoked_at = revoked_at where id = %s", [provider["key"]]) == 1


def test_api_roles_execute_only_the_functions_they_call(admin_conn: psycopg.Connection) -> None:
    rows = admin_conn.execute("""
        select r.rolname, p.oid::regprocedure::text
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        cross join (values ('anon'), ('authenticated')) as r (rolname)
        where n.nspname in ('public', 'private') and has_function_privilege(r.rolname, p.oid, 'execute')
        order by 1, 2""").fetchall()
    allowed = {("anon", "is_admin()"), ("authenticated", "is_admin()"),
               ("authenticated", "principal_status(uuid,uuid)"),
               # db.as_user builds a personal API key's claims with it (knowing the hash means holding the key)
               ("authenticated", "api_key_claims(text)")}
    # Teams (issue 12): the RLS policies' role lookup, and the management functions, which check the caller's role
    # in the team themselves (SECURITY DEFINER; tests/db/test_teams_rls.py).
    allowed |= {("authenticated", fn) for fn in (
        "team_role(uuid)", "usage_admin_team_ids()", "team_create(text,text)",
        "team_invite(uuid,text,text,timestamp with time zone)",
        "team_revoke_invitation(uuid,uuid)", "team_join(text)", "team_set_role(uuid,uuid,text)",
        "team_remove(uuid,uuid)", "team_transfer(uuid,uuid)", "team_set_cap(uuid,uuid,bigint)",
        "team_update(uuid,text,jsonb)", "team_put_key(uuid,uuid,text,text,text,text)", "team_delete_key(uuid,uuid)",
        "team_set_default(uuid)", "team_bind_api_key(uuid,uuid)")}
    # Webhooks (issue 16): the endpoint policies' "may the caller manage this owner's endpoints" (tests/notify/
    # test_webhooks_rls.py).
    allowed |= {("authenticated", "webhook_manages(uuid,uuid)")}
    # "Spent this month" on the pages from the cap tally, only what the caller may read (tests/db/
    # test_month_spent_reads.py).
    allowed |= {("authenticated", "credits_month_spent(uuid)"), ("authenticated", "team_month_spent(uuid)")}
    assert {(role, fn) for role, fn in rows} <= allowed

"""The database side of "revoked means revoked": public.is_admin() answers from auth.users under the real
`authenticated` role (not from the token), public.principal_status() sees deletion, bans and ended sessions, may
be asked only about oneself, and the sign-in throttle's table and functions belong to the service role."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from webapp.db import Database
from webapp.errors import Unauthorized


def _is_admin(db: Database, claims: dict[str, Any]) -> bool:
    with db.as_user(claims) as conn:
        row = conn.execute("select public.is_admin(), current_user").fetchone()
    assert row is not None and row[1] == "authenticated"
    return bool(row[0])


def test_demoted_admin_is_not_admin_in_rls_though_the_token_says_so(db: Database, admin_conn: psycopg.Connection,
                                                                     make_user: Any) -> None:
    admin = make_user(admin=True)
    assert admin.claims["app_metadata"]["role"] == "admin"
    assert _is_admin(db, admin.claims)
    with db.as_user(admin.claims) as conn:
        assert conn.execute("select count(*) from public.admin_audit_log").fetchone() is not None
    admin_conn.execute("update auth.users set raw_app_meta_data = raw_app_meta_data - 'role' where id = %s",
                       [admin.id])
    assert not _is_admin(db, admin.claims)  # same token claims, database says no
    with db.as_user(admin.claims) as conn:
        # An admin-only policy now hides every row, and an admin-only write is refused.
        assert conn.execute("select count(*) from public.llm_admin_keys").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("insert into public.llm_providers (slug, name, api_style, base_url, default_model)"
                         " values (%s, 'x', 'openai', 'https://x.example.test/v1', 'm')",
                         [f"demoted-{uuid.uuid4().hex[:8]}"])


def test_user_metadata_or_token_role_never_makes_an_admin(db: Database, make_user: Any) -> None:
    user = make_user()
    forged = {**user.claims, "app_metadata": {"role": "admin"}, "user_metadata": {"role": "admin"}}
    assert not _is_admin(db, forged)


@pytest.mark.parametrize(("change", "code"), [
    ("delete from auth.users where id = %s", "user_not_found"),
    ("update auth.users set deleted_at = now() where id = %s", "user_not_found"),
    ("update auth.users set banned_until = now() + interval '1 hour' where id = %s", "user_banned"),
    ("delete from auth.sessions where user_id = %s", "session_revoked"),
    ("update auth.sessions set not_after = now() - interval '1 second' where user_id = %s", "session_revoked"),
])
def test_as_user_refuses_a_revoked_principal_in_its_first_statement(db: Database, admin_conn: psycopg.Connection,
                                                                    make_user: Any, change: str, code: str) -> None:
    user = make_user()
    with db.as_user(user.claims) as conn:
        conn.execute("select 1")
    admin_conn.execute(change, [user.id])
    with pytest.raises(Unauthorized) as info, db.as_user(user.claims):
        pass
    assert info.value.code == code


def test_principal_status_answers_only_about_the_caller(db: Database, make_user: Any) -> None:
    me, other = make_user(), make_user(admin=True)
    with db.as_user(me.claims) as conn:
        mine = conn.execute("select public.principal_status(%s, null)", [me.id]).fetchone()
        theirs = conn.execute("select public.principal_status(%s, null)", [other.id]).fetchone()
    assert mine == ({"ok": True, "admin": False},)
    assert theirs == ({"ok": False, "reason": "user_not_found"},)  # not "ok, admin": nothing to learn


def test_anon_cannot_call_principal_status_nor_touch_the_throttle(db: Database) -> None:
    for statement in ("select public.principal_status(gen_random_uuid(), null)",
                      "select public.sign_in_wait(array['x'], array[1], 60)",
                      "select public.sign_in_failed(array['x'], 60)",
                      "select * from public.sign_in_attempts"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_anon() as conn:
            conn.execute(statement)


def test_signed_in_user_cannot_touch_the_throttle(db: Database, make_user: Any) -> None:
    user = make_user()
    for statement in ("select public.sign_in_failed(array['account:victim@example.test'], 60)",
                      "delete from public.sign_in_attempts"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(user.claims) as conn:
            conn.execute(statement)


def test_principal_functions_are_security_definer_with_empty_search_path(admin_conn: psycopg.Connection) -> None:
    rows = admin_conn.execute(
        "select p.proname, p.prosecdef, p.proconfig from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'public' and p.proname in ('is_admin', 'principal_status')").fetchall()
    assert {r[0] for r in rows} == {"is_admin", "principal_status"}
    for name, secdef, config in rows:
        assert secdef and config == ['search_path=""'], name

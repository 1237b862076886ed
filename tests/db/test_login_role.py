"""A query run without as_user/as_service/as_anon fails: the app's login role (`authenticator`, NOINHERIT) holds no
privileges of its own, and a pooled connection goes back to exactly that state when each unit of work ends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from webapp.db import Database

# The login role the test app connects as: `authenticator` in production, a per-test-database role with the
# same shape in tests (see tests/support/dbsetup.py).
LOGIN = ""

PUBLIC_TABLES = (
    "llm_providers", "llm_model_rates", "llm_admin_keys", "user_preferences", "user_provider_keys",
    "credit_accounts", "credit_ledger", "credit_reservations", "llm_request_logs", "admin_audit_log",
    "catalog_version", "rate_limit_windows", "active_streams", "sign_in_attempts", "auth_rate_hits",
    "request_log_rejects",
    "password_reset_links", "password_change_required",
    "api_keys",
    "user_notices",
    "site_settings",
    "teams", "team_members", "team_invitations", "team_credit_accounts", "team_credit_ledger", "team_provider_keys",
    "webhook_endpoints", "webhook_deliveries", "webhook_attempts",
    "usage_daily", "usage_daily_platform", "usage_daily_errors", "usage_daily_byok_models", "usage_monthly_users",
    "usage_daily_teams", "usage_admin_keys",
    "notification_events", "notification_deliveries", "procrastinate_jobs", "procrastinate_workers",
    "procrastinate_events", "procrastinate_periodic_defers",
)


@pytest.fixture(scope="module")
def login_conn(database_urls: tuple[str, str]) -> Iterator[psycopg.Connection]:
    """A plain connection as the login role, with no role switch and no claims."""
    global LOGIN
    LOGIN = psycopg.conninfo.conninfo_to_dict(database_urls[1])["user"]
    with psycopg.connect(database_urls[1], autocommit=True) as conn:
        yield conn


@pytest.fixture()
def single_db(database_urls: tuple[str, str]) -> Iterator[Database]:
    """A pool of exactly one connection, so every unit of work reuses the same server session."""
    database = Database(database_urls[1], min_size=1, max_size=1)
    database.open()
    database.pool.wait(timeout=30)
    yield database
    database.close()


def test_public_table_list_is_complete(admin_conn: psycopg.Connection) -> None:
    rows = admin_conn.execute("select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                              " where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f')").fetchall()
    assert {r[0] for r in rows} == set(PUBLIC_TABLES)


def test_login_role_is_authenticator_without_powers(login_conn: psycopg.Connection) -> None:
    row = login_conn.execute(
        "select current_user, session_user, r.rolsuper, r.rolinherit, r.rolbypassrls, r.rolcreaterole"
        " from pg_roles r where r.rolname = current_user").fetchone()
    assert row == (LOGIN, LOGIN, False, False, False, False)


@pytest.mark.parametrize("table", PUBLIC_TABLES)
def test_select_without_role_switch_is_denied(login_conn: psycopg.Connection, table: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        login_conn.execute(sql.SQL("select * from public.{} limit 1").format(sql.Identifier(table)))
    assert info.value.sqlstate == "42501"
    assert "permission denied" in str(info.value)


@pytest.mark.parametrize("statement", [
    "select id from auth.users limit 1",
    "select auth.uid()",
    "select public.credits_adjust(gen_random_uuid(), 1, 'x', null)",
    "select public.credits_reserve(gen_random_uuid(), gen_random_uuid(), 1, null)",
])
def test_other_privileged_things_without_role_switch_are_denied(login_conn: psycopg.Connection,
                                                                statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        login_conn.execute(statement)


def session_state(conn: psycopg.Connection) -> tuple[object, ...]:
    """(backend pid, current_user, auth.uid(), auth.role(), raw claims GUC, statement_timeout) as the connection
    stands. The login role has no usage on schema auth, so auth.uid()/auth.role() are evaluated in a rolled-back
    transaction under `anon` -- a role switch that does not touch the claims, i.e. what a unit of work that forgot
    to set its claims would see."""
    row = conn.execute(
        "select pg_backend_pid(), current_user, coalesce(current_setting('request.jwt.claims', true), ''),"
        " current_setting('statement_timeout')").fetchone()
    assert row is not None
    pid, user, claims, timeout = row
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        uid, role = conn.execute("select auth.uid(), auth.role()").fetchone()  # type: ignore[misc]
    else:
        with conn.transaction(force_rollback=True):
            conn.execute("select set_config('role', 'anon', true)")
            uid, role = conn.execute("select auth.uid(), auth.role()").fetchone()  # type: ignore[misc]
    return (pid, user, uid, role, claims, timeout)


def _login(database: Database) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(database.pool.conninfo)["user"])


def test_pooled_connection_returns_to_login_role(single_db: Database, make_user: Any) -> None:
    with single_db.pool.connection() as conn:
        pid, user, uid, role, claims, timeout = session_state(conn)
    assert (user, uid, role, claims) == (_login(single_db), None, None, "")
    sub = make_user().id  # as_user refuses claims of a user that does not exist

    with single_db.as_user({"sub": sub, "app_metadata": {}}) as conn:
        inside = session_state(conn)
    assert inside[:4] == (pid, "authenticated", uuid.UUID(sub), "authenticated")
    assert inside[5] == single_db.statement_timeout

    with single_db.pool.connection() as conn:
        after = session_state(conn)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select 1 from public.credit_accounts limit 1")
    assert after == (pid, _login(single_db), None, None, "", timeout), "role or claims leaked past the transaction"


@pytest.mark.parametrize("context", ["user", "service", "anon", "user-raising"])
def test_every_context_resets_the_connection(single_db: Database, context: str, make_user: Any) -> None:
    with single_db.pool.connection() as conn:
        baseline = session_state(conn)

    class Boom(Exception):
        pass

    try:
        if context == "service":
            cm = single_db.as_service()
        elif context == "anon":
            cm = single_db.as_anon()
        else:
            cm = single_db.as_user({"sub": make_user().id})
        with cm as conn:
            assert conn.execute("select current_user").fetchone() != (_login(single_db),)
            if context == "user-raising":
                raise Boom
    except Boom:
        pass

    with single_db.pool.connection() as conn:
        assert session_state(conn) == baseline


def test_as_user_refuses_claims_without_sub(single_db: Database) -> None:
    with pytest.raises(ValueError, match="sub"):
        single_db.as_user({"role": "authenticated"})

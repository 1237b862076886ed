"""Log retention: `flask logs prune` deletes request-log rows older than LOG_RETENTION_MONTHS whole months and
nothing else — the ledger, reservations and the usage rollups keep every month."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from flask import Flask

from tests.db.test_rls_matrix import new_user
from webapp.db import Database


def _receipt(admin_conn: psycopg.Connection, user_id: str, age: str) -> str:
    request_id = str(uuid.uuid4())
    admin_conn.execute("""insert into public.llm_request_logs (request_id, user_id, mode, status, provider, credits,
                              created_at)
                          values (%s, %s, 'member', 200, 'openai', 1000, now() - %s::interval)""",
                       [request_id, user_id, age])
    admin_conn.execute("""insert into public.credit_ledger (user_id, kind, delta, balance_after, request_id)
                          values (%s, 'settle', -1000, 0, %s)""", [user_id, request_id])
    return request_id


def _state(admin_conn: psycopg.Connection, user_id: str) -> tuple[Any, ...]:
    row = admin_conn.execute("""select (select count(*) from public.llm_request_logs where user_id = %(u)s),
                                       (select count(*) from public.credit_ledger where user_id = %(u)s),
                                       (select sum(requests) from public.usage_daily where user_id = %(u)s),
                                       (select sum(credits) from public.usage_monthly_users where user_id = %(u)s)""",
                             {"u": user_id}).fetchone()
    assert row is not None
    return tuple(row)


def test_prune_drops_only_log_rows_older_than_the_retention(app: Flask, db: Database,
                                                             admin_conn: psycopg.Connection) -> None:
    user = new_user(db)
    old = [_receipt(admin_conn, user.id, age) for age in ("800 days", "500 days")]
    recent = _receipt(admin_conn, user.id, "1 day")
    assert _state(admin_conn, user.id) == (3, 3, 3, 3000)
    result = app.test_cli_runner().invoke(args=["logs", "prune", "--months", "12", "--batch", "1"])
    assert result.exit_code == 0, result.output
    assert "deleted" in result.output
    left = {r[0] for r in admin_conn.execute("select request_id::text from public.llm_request_logs"
                                             " where user_id = %s", [user.id]).fetchall()}
    assert left == {recent} and not set(old) & left
    # The money trail and the usage totals keep every month.
    assert _state(admin_conn, user.id) == (1, 3, 3, 3000)


def test_prune_with_retention_zero_keeps_everything(app: Flask, db: Database,
                                                   admin_conn: psycopg.Connection) -> None:
    user = new_user(db)
    _receipt(admin_conn, user.id, "900 days")
    result = app.test_cli_runner().invoke(args=["logs", "prune"])  # LOG_RETENTION_MONTHS defaults to 0
    assert result.exit_code == 0 and "keeping every request log row" in result.output
    assert _state(admin_conn, user.id)[0] == 1


@pytest.mark.parametrize("role", ["authenticated", "service_role"])
def test_no_api_role_may_prune(admin_conn: psycopg.Connection, role: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), admin_conn.transaction():
        admin_conn.execute(f"set local role {role}")
        admin_conn.execute("select public.request_logs_prune(1, 10)")


def test_prune_refuses_a_retention_under_one_month(admin_conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        admin_conn.execute("select public.request_logs_prune(0, 10)")

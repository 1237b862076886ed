"""The pool survives connections killed under it (a Postgres restart or failover), and stale reservations are
refunded by the sweep."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from webapp.db import Database
from webapp.repos import credits as credits_repo
from webapp.services import credits as credits_service


def test_units_of_work_survive_killed_pool_connections(database_urls: tuple[str, str],
                                                       admin_conn: psycopg.Connection) -> None:
    database = Database(database_urls[1], min_size=2, max_size=2)
    database.open()
    database.pool.wait(timeout=30)
    login = psycopg.conninfo.conninfo_to_dict(database_urls[1])["user"]
    try:
        with database.as_service() as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        killed = admin_conn.execute("select count(pg_terminate_backend(pid)) from pg_stat_activity"
                                    " where usename = %s and pid <> pg_backend_pid()", [login]).fetchone()
        assert killed and killed[0] >= 1
        for _ in range(4):
            with database.as_service() as conn:
                assert conn.execute("select 1").fetchone() == (1,)
    finally:
        database.close()


def test_sweep_refunds_only_stale_open_reservations(db: Database, make_user: Any,
                                                    admin_conn: psycopg.Connection) -> None:
    user = make_user()
    stale, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, 1000, "sweep test", None)
        credits_repo.reserve(conn, user.id, stale, 300, None)
        credits_repo.reserve(conn, user.id, fresh, 200, None)
    admin_conn.execute("update public.credit_reservations set created_at = now() - interval '2 hours'"
                       " where request_id = %s", [stale])
    assert credits_service.sweep(db, 3600) >= 1
    with db.as_service() as conn:
        status = dict(conn.execute("select request_id::text, status from public.credit_reservations"
                                   " where user_id = %s", [user.id]).fetchall())
        assert status == {stale: "refunded", fresh: "reserved"}
        assert credits_repo.balance(conn, user.id) == 800
        total = conn.execute("select sum(delta) from public.credit_ledger where user_id = %s", [user.id]).fetchone()
        assert total == (800,)


def test_one_shot_statement_runs_as_the_role_and_leaves_no_trace(database_urls: tuple[str, str]) -> None:
    database = Database(database_urls[1], min_size=1, max_size=1)
    database.open()
    try:
        with database.service_statement() as conn:
            row = conn.execute("select current_user, current_setting('request.jwt.claims', true)").fetchone()
            assert row == ("service_role", '{"role": "service_role"}')
            try:
                conn.execute("select 1")
            except RuntimeError as exc:
                assert "exactly one statement" in str(exc)
            else:
                raise AssertionError("a second statement in a one-shot unit of work must be refused")
        with database.service_statement() as conn:
            assert conn.execute("select %(x)s::int + 1", {"x": 41}).fetchone() == (42,)
        with database.pool.connection() as raw:
            after = raw.execute("select current_user, current_setting('request.jwt.claims', true)").fetchone()
        login = psycopg.conninfo.conninfo_to_dict(database_urls[1])["user"]
        assert after == (login, "")
    finally:
        database.close()

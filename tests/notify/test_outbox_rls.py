"""The outbox's tables under row level security: a user reads the events about them and nothing else; deliveries and
the job queue are the service role's alone; anon sees nothing."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from webapp.db import Database
from webapp.repos import credits as credits_repo

NOTIFY_TABLES = ("notification_events", "notification_deliveries", "procrastinate_jobs", "procrastinate_workers",
                 "procrastinate_events", "procrastinate_periodic_defers")


@pytest.mark.parametrize("table", NOTIFY_TABLES)
def test_anon_reads_nothing(db: Database, table: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_anon() as conn:
        conn.execute(f"select 1 from public.{table} limit 1")


@pytest.mark.parametrize("table", NOTIFY_TABLES[1:])
def test_signed_in_users_read_no_deliveries_or_jobs(db: Database, make_user: Any, table: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(make_user().claims) as conn:
        conn.execute(f"select 1 from public.{table} limit 1")


def test_users_read_only_the_events_about_them(db: Database, make_user: Any) -> None:
    a, b = make_user(), make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, a.id, 1_000_000, "a", None)
        credits_repo.adjust(conn, b.id, 1_000_000, "b", None)
    with db.as_user(a.claims) as conn:
        rows = conn.execute("select user_id::text, type from public.notification_events").fetchall()
        assert rows and {r[0] for r in rows} == {a.id}
    with db.as_user(a.claims) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select dedupe_key from public.notification_events")  # the columns a user needs, no more
    for sql in ("insert into public.notification_events (type, user_id, dedupe_key) values"
                " ('credits.granted', %s, 'forged')",
                "update public.notification_events set data = '{}' where user_id = %s"):
        with db.as_user(b.claims) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql, [b.id])


def test_admins_read_no_one_elses_events_either(db: Database, make_user: Any) -> None:
    admin, someone = make_user(admin=True), make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, someone.id, 1_000_000, "private", None)
    with db.as_user(admin.claims) as conn:
        assert conn.execute("select count(*) from public.notification_events where user_id = %s",
                            [someone.id]).fetchone() == (0,)

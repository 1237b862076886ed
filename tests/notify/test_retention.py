"""Notification retention: `flask notify prune` and the worker's hourly `notify.prune` delete finished outbox
events (with their email delivery rows), finished webhook deliveries (with their attempts) and finished queue jobs
older than NOTIFY_RETENTION_DAYS, in batches — never an event or a delivery still pending or retrying, never a job
still to run, never anything else; a spend-cap event outlives its month and the next one (its dedupe key)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask

from tests.db.test_rls_matrix import new_user
from webapp.config import Settings
from webapp.db import Database
from webapp.notify import retention, runtime, worker
from webapp.notify.runtime import Runtime

QUEUE = "retention-test"  # no worker of the suite serves it


def _event(conn: psycopg.Connection, user_id: str, age: str, *, type_: str = "api_key.created",
           dispatched: bool = True, created_at: str | None = None) -> str:
    when = created_at or f"now() - interval '{age}'"
    row = conn.execute(
        f"""insert into public.notification_events (type, user_id, dedupe_key, created_at, dispatched_at)
            values (%s, %s, %s, {when}, case when %s then {when} + interval '1 second' end) returning id::text""",
        [type_, user_id, f"{type_}:retention-test:{uuid.uuid4()}", dispatched]).fetchone()
    assert row is not None
    return str(row[0])


def _email(conn: psycopg.Connection, event_id: str, user_id: str, status: str) -> None:
    conn.execute("insert into public.notification_deliveries (event_id, channel, recipient, status)"
                 " values (%s, 'email', %s, %s)", [event_id, user_id, status])


def _endpoint(conn: psycopg.Connection, user_id: str) -> str:
    row = conn.execute("""insert into public.webhook_endpoints (scope, user_id, url, event_types, secret_ciphertext,
                              secret_key_id) values ('user', %s, 'https://example.com/h', '{api_key.created}',
                              'v1.k1.sealed', 'k1') returning id::text""", [user_id]).fetchone()
    assert row is not None
    return str(row[0])


def _hook(conn: psycopg.Connection, endpoint_id: str, event_id: str | None, status: str, age: str) -> str:
    row = conn.execute(f"""insert into public.webhook_deliveries (endpoint_id, event_id, event_type, body, status,
                               attempts, created_at) values (%s, %s, 'api_key.created', '{{}}', %s, 1,
                               now() - interval '{age}') returning id::text""",
                       [endpoint_id, event_id, status]).fetchone()
    assert row is not None
    conn.execute("insert into public.webhook_attempts (delivery_id, endpoint_id, attempted_at, status_code)"
                 f" values (%s, %s, now() - interval '{age}', 200)", [row[0], endpoint_id])
    return str(row[0])


def _job(conn: psycopg.Connection, status: str, age: str) -> int:
    row = conn.execute("insert into public.procrastinate_jobs (queue_name, task_name) values (%s,"
                       " 'retention.test') returning id", [QUEUE]).fetchone()
    assert row is not None
    if status != "todo":  # as a worker moves it: its triggers record each step in procrastinate_events
        conn.execute("update public.procrastinate_jobs set status = 'doing' where id = %s", [row[0]])
        conn.execute("update public.procrastinate_jobs set status = %s where id = %s", [status, row[0]])
    conn.execute(f"update public.procrastinate_events set at = now() - interval '{age}' where job_id = %s", [row[0]])
    return int(row[0])


def _left(conn: psycopg.Connection, table: str, ids: list[Any]) -> set[str]:
    rows = conn.execute(f"select id::text from public.{table} where id::text = any(%s)",
                        [[str(i) for i in ids]]).fetchall()
    return {r[0] for r in rows}


@pytest.fixture()
def world(db: Database, admin_conn: psycopg.Connection) -> Iterator[dict[str, Any]]:
    user = new_user(db).id
    c = admin_conn
    endpoint = _endpoint(c, user)
    old_done = [_event(c, user, "40 days") for _ in range(3)]
    for e in old_done:
        _email(c, e, user, "sent")
        _hook(c, endpoint, e, "succeeded", "40 days")
    old_failed_mail = _event(c, user, "40 days")
    _email(c, old_failed_mail, user, "failed")
    undispatched = _event(c, user, "40 days", dispatched=False)
    mail_pending = _event(c, user, "40 days")
    _email(c, mail_pending, user, "pending")
    hook_pending = _event(c, user, "40 days")
    pending_hook = _hook(c, endpoint, hook_pending, "pending", "40 days")
    recent = _event(c, user, "2 days")
    _email(c, recent, user, "sent")
    yield {
        "user": user, "endpoint": endpoint,
        "gone_events": [*old_done, old_failed_mail],
        "kept_events": [undispatched, mail_pending, hook_pending, recent],
        "old_test_hook": _hook(c, endpoint, None, "failed", "31 days"),
        "pending_hook": pending_hook, "recent_hook": _hook(c, endpoint, None, "succeeded", "29 days"),
        "gone_jobs": [_job(c, s, "40 days") for s in ("succeeded", "failed", "cancelled")],
        "kept_jobs": [_job(c, "todo", "40 days"), _job(c, "failed", "2 days")],
    }
    c.execute("delete from public.procrastinate_jobs where queue_name = %s", [QUEUE])
    c.execute("delete from auth.users where id = %s", [user])  # its events, deliveries and endpoint cascade


def test_flask_notify_prune_deletes_only_what_finished_before_the_window(app: Flask, world: dict[str, Any],
                                                                         admin_conn: psycopg.Connection) -> None:
    c = admin_conn
    hooks_before = c.execute("select count(*) from public.webhook_deliveries where endpoint_id = %s",
                             [world["endpoint"]]).fetchone()
    assert hooks_before == (6,)
    result = app.test_cli_runner().invoke(args=["notify", "prune", "--days", "30", "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("deleted 4 event(s) (with 4 email delivery row(s)), 4 webhook delivery(ies) with"
                                     " their attempts, 3 finished job(s) older than 30 day(s)")
    assert _left(c, "notification_events", world["gone_events"]) == set()
    assert _left(c, "notification_events", world["kept_events"]) == set(world["kept_events"])
    hooks = c.execute("select id::text from public.webhook_deliveries where endpoint_id = %s",
                      [world["endpoint"]]).fetchall()
    assert {h[0] for h in hooks} == {world["pending_hook"], world["recent_hook"]}
    attempts = c.execute("select count(*) from public.webhook_attempts where endpoint_id = %s",
                         [world["endpoint"]]).fetchone()
    assert attempts == (2,)  # the attempts of the deliveries that went, went with them
    mails = c.execute("select status from public.notification_deliveries where recipient = %s order by status",
                      [world["user"]]).fetchall()
    assert mails == [("pending",), ("sent",)]
    assert _left(c, "procrastinate_jobs", world["gone_jobs"]) == set()
    assert _left(c, "procrastinate_jobs", world["kept_jobs"]) == {str(j) for j in world["kept_jobs"]}
    assert c.execute("select count(*) from public.procrastinate_events where job_id = any(%s)",
                     [world["gone_jobs"]]).fetchone() == (0,)
    # The endpoint itself and the user stay; a second run finds nothing more.
    assert _left(c, "webhook_endpoints", [world["endpoint"]]) == {world["endpoint"]}
    again = app.test_cli_runner().invoke(args=["notify", "prune", "--days", "30"])
    assert again.output.startswith("deleted 0 event(s) (with 0 email delivery row(s)), 0 webhook delivery(ies)")


def test_the_window_is_a_setting_and_zero_keeps_everything(app: Flask, world: dict[str, Any],
                                                           admin_conn: psycopg.Connection) -> None:
    result = app.test_cli_runner().invoke(args=["notify", "prune", "--days", "0"])
    assert result.exit_code == 0 and "keeping every notification row" in result.output
    assert _left(admin_conn, "notification_events", world["gone_events"]) == set(world["gone_events"])
    wide = app.test_cli_runner().invoke(args=["notify", "prune", "--days", "45"])
    assert wide.output.startswith("deleted 0 event(s)")  # nothing here is 45 days old
    narrow = app.test_cli_runner().invoke(args=["notify", "prune", "--days", "1"])
    assert narrow.output.startswith("deleted 5 event(s) (with 5 email delivery row(s)), 5 webhook delivery(ies)")
    assert _left(admin_conn, "notification_events", world["kept_events"][:3]) == set(world["kept_events"][:3])


def test_a_spend_cap_event_outlives_its_month_and_the_next(app: Flask, db: Database,
                                                          admin_conn: psycopg.Connection) -> None:
    user = new_user(db).id
    month = "date_trunc('month', now() at time zone 'utc') at time zone 'utc'"
    last_month = _event(admin_conn, user, "", type_="spend_cap.warning",
                        created_at=f"({month} - interval '1 month' + interval '1 hour')")
    older = _event(admin_conn, user, "", type_="spend_cap.reached",
                   created_at=f"({month} - interval '2 months' + interval '1 hour')")
    key_failing = _event(admin_conn, user, "", type_="provider_key.failing",
                         created_at=f"({month} - interval '1 month' + interval '1 hour')")
    result = app.test_cli_runner().invoke(args=["notify", "prune", "--days", "1"])
    assert result.exit_code == 0, result.output
    assert _left(admin_conn, "notification_events", [last_month, older, key_failing]) == {last_month}


def test_the_worker_prunes_hourly_as_the_service_role(settings: Settings, db: Database, world: dict[str, Any],
                                                      admin_conn: psycopg.Connection) -> None:
    app = worker.build_app(settings.with_overrides(notify_retention_days=30))
    periodic = [t for t in app.periodic_registry.periodic_tasks.values() if t.task.name == retention.PRUNE_TASK]
    assert [t.cron for t in periodic] == ["23 * * * *"]
    runtime.use(Runtime(settings.with_overrides(notify_retention_days=30), db))
    try:
        deleted = app.tasks[retention.PRUNE_TASK](timestamp=0)
    finally:
        runtime.use(None)
    assert deleted == 4 + 4 + 3
    assert _left(admin_conn, "notification_events", world["kept_events"]) == set(world["kept_events"])


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_no_user_role_may_prune(admin_conn: psycopg.Connection, role: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), admin_conn.transaction():
        admin_conn.execute(f"set local role {role}")
        admin_conn.execute("select * from public.notify_prune(30, 10)")


def test_prune_refuses_a_window_under_one_day(admin_conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        admin_conn.execute("select * from public.notify_prune(0, 10)")

"""Email from the outbox, end to end: an action commits its event, the real worker (procrastinate) dispatches it
and sends it to a real SMTP server the test started (aiosmtpd), with the content checked; a preference switched off
sends nothing; a second run, or a second dispatch of the same event, sends nothing more."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.notify.conftest import SmtpRecorder, events_of
from webapp.config import Settings
from webapp.db import Database
from webapp.notify import dispatcher, queue
from webapp.notify.runtime import Runtime
from webapp.repos import credits as credits_repo


def deliveries(admin_conn: psycopg.Connection, event_id: str) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in admin_conn.execute(
        "select recipient::text, status from public.notification_deliveries where event_id = %s order by 1",
        [event_id]).fetchall()]


def test_a_new_api_key_arrives_as_an_email_with_text_and_html(client: FlaskClient, make_user: Any, smtp: SmtpRecorder,
                                                              run_jobs: Any, admin_conn: psycopg.Connection) -> None:
    me = make_user()
    made = client.post("/api/user/api-keys", headers=me.headers, json={"name": "deploy <bot>"})
    assert made.status_code == 201
    run_jobs()
    [msg] = smtp.to(me.email)
    assert msg["Subject"] == "New API key: deploy <bot>"
    assert msg["From"] == "Switchboard <notices@switchboard.test>" and msg["Auto-Submitted"] == "auto-generated"
    [event] = events_of(admin_conn, "api_key.created", user_id=me.id)
    [(recipient, status)] = deliveries(admin_conn, event["id"])
    assert (recipient, status) == (me.id, "sent")
    delivery_id = admin_conn.execute("select id::text from public.notification_deliveries where event_id = %s",
                                     [event["id"]]).fetchone()[0]
    assert msg["Message-ID"] == f"<{delivery_id}@switchboard.test>"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    prefix = made.get_json().get("prefix") or made.get_json()["api_key"]["prefix"]
    assert 'named "deploy <bot>"' in text and f"sb_{prefix}_" in text
    assert "https://switchboard.test/settings#api-keys" in text and "Email notifications" in text
    assert "<strong>deploy &lt;bot&gt;</strong>" in html and "<bot>" not in html
    secret = made.get_json().get("secret") or made.get_json()["api_key"]["secret"]
    assert secret not in msg.as_string()
    run_jobs()  # nothing left: nothing more sent
    assert len(smtp.to(me.email)) == 1


def test_email_notifications_off_sends_nothing(client: FlaskClient, make_user: Any, smtp: SmtpRecorder,
                                               run_jobs: Any, admin_conn: psycopg.Connection) -> None:
    me = make_user()
    off = client.put("/api/user/settings", headers=me.headers,
                     json={"email_notifications": False, "marketing_emails": True})
    assert off.status_code == 200, off.get_data(as_text=True)
    assert client.post("/api/user/api-keys", headers=me.headers, json={"name": "quiet"}).status_code == 201
    run_jobs()
    assert smtp.to(me.email) == []
    [event] = events_of(admin_conn, "api_key.created", user_id=me.id)
    assert deliveries(admin_conn, event["id"]) == [(me.id, "skipped")]


def test_a_switch_turned_off_before_the_send_still_stops_it(client: FlaskClient, make_user: Any, db: Database,
                                                            notify_settings: Settings, smtp: SmtpRecorder,
                                                            admin_conn: psycopg.Connection) -> None:
    me = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 3_000_000, "grant", None)
    [event] = events_of(admin_conn, "credits.granted", user_id=me.id)
    rt = Runtime(notify_settings, db)
    assert dispatcher.dispatch(rt, event["id"]) == 1  # the send is queued ...
    assert client.put("/api/user/settings", headers=me.headers,
                      json={"email_notifications": False}).status_code == 200  # ... then the user opts out
    delivery_id = admin_conn.execute("select id::text from public.notification_deliveries where event_id = %s",
                                     [event["id"]]).fetchone()[0]
    assert dispatcher.send_email(rt, delivery_id) == "skipped"
    assert smtp.to(me.email) == []


def test_dispatching_an_event_twice_delivers_once(make_user: Any, db: Database, smtp: SmtpRecorder, run_jobs: Any,
                                                  admin_conn: psycopg.Connection) -> None:
    me = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 7_000_000, "support credit", None)
    [event] = events_of(admin_conn, "credits.granted", user_id=me.id)
    with db.as_service() as conn:  # a duplicate job for the same event (a retry after a crash looks like this)
        queue.defer(conn, dispatcher.DISPATCH, {"event_id": event["id"]})
    run_jobs()
    [msg] = smtp.to(me.email)
    assert msg["Subject"] == "7 credits added"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "7 credits added to your account (support credit). The balance is now 7 credits." in text
    assert deliveries(admin_conn, event["id"]) == [(me.id, "sent")]


def test_a_team_event_goes_to_the_owner_and_admins_only(client: FlaskClient, make_user: Any, smtp: SmtpRecorder,
                                                        run_jobs: Any) -> None:
    owner, admin, member = make_user(), make_user(), make_user()
    slug = f"mail-{owner.id[:8]}"
    assert client.post("/api/teams", headers=owner.headers, json={"name": "Mail team", "slug": slug}).status_code == 201
    for who, role in ((admin, "admin"), (member, "member")):
        token = client.post(f"/api/teams/{slug}/invitations", headers=owner.headers,
                            json={"role": role}).get_json()["token"]
        run_jobs()
        assert client.post("/api/teams/join", headers=who.headers, json={"token": token}).status_code == 200
    assert len(smtp.to(owner.email)) == 2 and len(smtp.to(admin.email)) == 1  # the admin was told of the second
    assert client.post(f"/api/teams/{slug}/invitations", headers=admin.headers, json={"role": "member"}).status_code \
        == 201
    run_jobs()
    assert len(smtp.to(owner.email)) == 3 and len(smtp.to(admin.email)) == 2 and smtp.to(member.email) == []
    assert smtp.to(admin.email)[-1]["Subject"] == "Team Mail team: a new invitation link (member)"


def test_a_temporary_smtp_failure_is_retried_and_sent_once(make_user: Any, db: Database, notify_settings: Settings,
                                                           smtp: SmtpRecorder, admin_conn: psycopg.Connection) -> None:
    me = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 1_000_000, "retry me", None)
    [event] = events_of(admin_conn, "credits.granted", user_id=me.id)
    rt = Runtime(notify_settings, db)
    dispatcher.dispatch(rt, event["id"])
    delivery_id = admin_conn.execute("select id::text from public.notification_deliveries where event_id = %s",
                                     [event["id"]]).fetchone()[0]
    down = Runtime(notify_settings.with_overrides(smtp=notify_settings.smtp.__class__("127.0.0.1", 9, "none")), db)
    try:
        dispatcher.send_email(down, delivery_id)
        raise AssertionError("a refused connection must raise, so procrastinate retries the job")
    except Exception as exc:
        assert "Error" in str(exc) or "Refused" in str(exc)
    row = admin_conn.execute("select status, attempts, last_error from public.notification_deliveries where id = %s",
                             [delivery_id]).fetchone()
    assert row[0] == "pending" and row[1] == 1 and row[2]
    assert dispatcher.send_email(rt, delivery_id) == "sent"
    assert dispatcher.send_email(rt, delivery_id) == "sent"  # a late duplicate job changes nothing
    assert len(smtp.to(me.email)) == 1


def test_a_failing_webhook_fan_out_holds_back_no_email_and_is_retried(make_user: Any, db: Database,
                                                                      notify_settings: Settings,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      admin_conn: psycopg.Connection) -> None:
    hooks = dispatcher.webhooks_module()
    assert hooks is not None
    me = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 2_000_000, "fan-out", None)
    [event] = events_of(admin_conn, "credits.granted", user_id=me.id)
    rt = Runtime(notify_settings, db)
    real = hooks.fan_out

    def broken(conn: Any, ev: Any) -> int:
        conn.execute("select 1/0")  # a database error inside the fan-out: its savepoint rolls back
        return 0

    monkeypatch.setattr(hooks, "fan_out", broken)
    with pytest.raises(psycopg.errors.DivisionByZero):
        dispatcher.dispatch(rt, event["id"])
    assert deliveries(admin_conn, event["id"]) == [(me.id, "pending")]  # the email is on its way regardless
    sends = admin_conn.execute("select count(*) from public.procrastinate_jobs where task_name = %s"
                               " and args ->> 'delivery_id' in (select id::text from public.notification_deliveries"
                               " where event_id = %s)", [dispatcher.SEND_EMAIL, event["id"]]).fetchone()[0]
    assert sends == 1
    monkeypatch.setattr(hooks, "fan_out", real)
    assert dispatcher.dispatch(rt, event["id"]) == 0  # the retry: no second email queued
    assert admin_conn.execute("select dispatched_at is not null from public.notification_events where id = %s",
                              [event["id"]]).fetchone() == (True,)

"""The worker's two jobs. `dispatch(event_id)`: one transaction turns an event into deliveries — an email row per
recipient (idempotent: unique (event, channel, recipient)) with its send job deferred in that same transaction, and
the webhooks' rows (webapp.notify.webhooks.fan_out, when present) — then marks the event dispatched. `send_email
(delivery_id)`: holds the delivery row locked while the message goes out and marks it sent in the same
transaction. A worker killed at any point rolls its transaction back; the job is retried (the worker's stalled-job
recovery), and the row says whether there is anything left to do."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import psycopg

from webapp.notify import events, mail, queue
from webapp.notify.runtime import Runtime

log = logging.getLogger("switchboard.notify")

SEND_EMAIL = "notify.send_email"
DISPATCH = "notify.dispatch"
MAX_EMAIL_ATTEMPTS = 12  # with procrastinate's exponential wait (2 ** n s): about two and a half hours in all


def webhooks_module() -> Any | None:
    """webapp.notify.webhooks when it exists (helper "webhooks" plugs in there); an import error inside it is a
    real error, not a reason to skip it."""
    if importlib.util.find_spec("webapp.notify.webhooks") is None:
        return None
    return importlib.import_module("webapp.notify.webhooks")


def dispatch(rt: Runtime, event_id: str) -> int:
    """Deliveries for one event; returns how many email sends were queued (0 when it was dispatched before).
    A failing webhook fan-out does not hold back the email: the email rows commit, the event stays undispatched
    and the error is raised, so the job is retried (the email rows then already exist and queue nothing twice)."""
    hooks = webhooks_module()
    queued = 0
    failure: Exception | None = None
    with rt.db.as_service() as conn:
        event = events.lock(conn, event_id)
        if event is None or event.dispatched_at is not None:
            return 0
        for person in events.recipients(conn, event):
            reason = _skip_reason(rt, person)
            row = conn.execute(
                "insert into public.notification_deliveries (event_id, channel, recipient, status, last_error)"
                " values (%s, 'email', %s, %s, %s) on conflict (event_id, channel, recipient) do nothing"
                " returning id::text",
                [event.id, person.user_id, "skipped" if reason else "pending", reason]).fetchone()
            if row is not None and reason is None:
                queue.defer(conn, SEND_EMAIL, {"delivery_id": row[0]})
                queued += 1
        if hooks is not None:
            try:
                with conn.transaction():  # a savepoint: its failure leaves the email rows above in place
                    hooks.fan_out(conn, event)
            except Exception as exc:
                log.error("webhook fan-out of event %s failed: %s", event.id, type(exc).__name__)
                failure = exc
        if failure is None:
            events.mark_dispatched(conn, event.id)
    if failure is not None:
        raise failure
    return queued


def _skip_reason(rt: Runtime, person: events.Recipient) -> str | None:
    if not person.email_notifications:
        return "email notifications off"
    if not person.active or not person.email:
        return "no active address"
    if rt.settings.smtp is None:
        return "email not configured (SMTP_URL)"
    return None


@dataclass(frozen=True)
class _Delivery:
    id: str
    status: str
    attempts: int
    recipient: str
    event_id: str


def send_email(rt: Runtime, delivery_id: str) -> str:
    """Send one email delivery; returns its final status for this run. A temporary SMTP failure is recorded on the
    row and raised after the commit, so procrastinate retries the job later."""
    failure: mail.MailError | None = None
    with rt.db.as_service() as conn:
        row = conn.execute(
            "select id::text, status, attempts, recipient::text, event_id::text"
            " from public.notification_deliveries where id = %s for update", [delivery_id]).fetchone()
        if row is None:
            return "gone"
        delivery = _Delivery(*row)
        if delivery.status != "pending":
            return delivery.status
        person = events.recipient(conn, delivery.recipient)
        event = events.get(conn, delivery.event_id)
        reason = "no active address" if person is None or event is None else _skip_reason(rt, person)
        if reason is not None or person is None or event is None:
            _finish(conn, delivery.id, "skipped", reason)
            return "skipped"
        assert rt.settings.smtp is not None
        message = mail.compose(rt.settings, person.email, mail.render(event.type, _context(conn, rt, event, person)),
                               delivery.id)
        try:
            mail.send(rt.settings.smtp, message)
        except mail.MailError as exc:
            attempts = delivery.attempts + 1
            final = exc.permanent or attempts >= MAX_EMAIL_ATTEMPTS
            conn.execute("update public.notification_deliveries set attempts = %s, last_error = %s,"
                         " status = %s where id = %s",
                         [attempts, str(exc)[:300], "failed" if final else "pending", delivery.id])
            log.warning("email delivery %s attempt %s failed: %s", delivery.id, attempts, exc)
            if final:
                return "failed"
            failure = exc
        else:
            conn.execute("update public.notification_deliveries set status = 'sent', sent_at = now(),"
                         " attempts = attempts + 1, last_error = null where id = %s", [delivery.id])
            log.info("email delivery %s sent (%s)", delivery.id, event.type)
            return "sent"
    assert failure is not None
    raise failure


def _finish(conn: psycopg.Connection, delivery_id: str, status: str, reason: str | None) -> None:
    conn.execute("update public.notification_deliveries set status = %s, last_error = %s where id = %s",
                 [status, reason, delivery_id])


def _context(conn: psycopg.Connection, rt: Runtime, event: events.Event, person: events.Recipient) -> dict[str, Any]:
    base = rt.settings.public_url
    team_id = event.team_id or event.data.get("team_id")
    return {
        "event": event, "data": event.data, "label": events.EVENT_TYPES.get(event.type, event.type),
        "name": person.first_name, "email": person.email,
        "team_name": events.team_name(conn, str(team_id)) if team_id else "",
        "public_url": base, "settings_url": f"{base}/settings#notifications",
        "at": event.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }

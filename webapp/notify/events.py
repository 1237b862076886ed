"""The outbox's events: their types, the row as a dataclass, and the reads the dispatcher needs. Events are written
only by SQL (triggers and functions in the same transaction as their cause); the one write from Python is
`key_failing`, the gateway's report of a stored key refused with 401/403 (once per key per day)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from webapp.db import Database

log = logging.getLogger("switchboard.notify")

# type -> a short label (settings page, emails, webhook endpoint choices)
EVENT_TYPES: dict[str, str] = {
    "balance.low": "Balance below the low-balance threshold",
    "spend_cap.warning": "80 % of a monthly spending cap used",
    "spend_cap.reached": "Monthly spending cap reached",
    "provider_key.failing": "A stored provider key is refused (401/403)",
    "api_key.created": "Personal API key created",
    "api_key.revoked": "Personal API key revoked",
    "password.changed": "Password changed",
    "team.invitation.created": "Team invitation created",
    "credits.granted": "Credits granted",
}


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    user_id: str | None  # the account it is about (and its recipient)
    team_id: str | None  # a team event: the team's owners and admins (when user_id is null)
    data: dict[str, Any]
    created_at: datetime
    dispatched_at: datetime | None = None


@dataclass(frozen=True)
class Recipient:
    user_id: str
    email: str
    first_name: str
    email_notifications: bool
    active: bool  # not banned, not deleted


_EVENT = "select id::text, type, user_id::text, team_id::text, data, created_at, dispatched_at" \
         " from public.notification_events"


def lock(conn: psycopg.Connection, event_id: str) -> Event | None:
    """The event, locked for this transaction (a second dispatcher of the same event waits, then sees it done)."""
    cur = conn.cursor(row_factory=class_row(Event))
    return cur.execute(_EVENT + " where id = %s for update", [event_id]).fetchone()


def get(conn: psycopg.Connection, event_id: str) -> Event | None:
    cur = conn.cursor(row_factory=class_row(Event))
    return cur.execute(_EVENT + " where id = %s", [event_id]).fetchone()


def mark_dispatched(conn: psycopg.Connection, event_id: str) -> None:
    conn.execute("update public.notification_events set dispatched_at = now() where id = %s", [event_id])


def recipients(conn: psycopg.Connection, event: Event) -> list[Recipient]:
    """Who is told by email: the user the event is about; else the team's owners and admins; else (a site-wide
    event such as an admin key failing) the site admins."""
    if event.user_id is not None:
        where, params = "u.id = %s", [event.user_id]
    elif event.team_id is not None:
        where = "u.id in (select user_id from public.team_members where team_id = %s and role in ('owner', 'admin'))"
        params = [event.team_id]
    else:
        where, params = "u.raw_app_meta_data ->> 'role' = 'admin'", []
    cur = conn.cursor(row_factory=class_row(Recipient))
    return cur.execute(
        "select u.id::text as user_id, coalesce(u.email, '') as email, coalesce(p.first_name, '') as first_name,"
        " coalesce(p.email_notifications, true) as email_notifications,"
        " (u.deleted_at is null and (u.banned_until is null or u.banned_until < now())) as active"
        " from auth.users u left join public.user_preferences p on p.user_id = u.id"
        f" where {where} order by u.id", params).fetchall()


def recipient(conn: psycopg.Connection, user_id: str) -> Recipient | None:
    cur = conn.cursor(row_factory=class_row(Recipient))
    return cur.execute(
        "select u.id::text as user_id, coalesce(u.email, '') as email, coalesce(p.first_name, '') as first_name,"
        " coalesce(p.email_notifications, true) as email_notifications,"
        " (u.deleted_at is null and (u.banned_until is null or u.banned_until < now())) as active"
        " from auth.users u left join public.user_preferences p on p.user_id = u.id where u.id = %s",
        [user_id]).fetchone()


def team_name(conn: psycopg.Connection, team_id: str) -> str:
    row = conn.execute("select name from public.teams where id = %s", [team_id]).fetchone()
    return str(row[0]) if row else ""


class KeyFailures:
    """The gateway's report of a stored key refused with 401/403. The database records it once per key per UTC
    day (public.notify_key_failing, a unique dedupe key); this memo spares the round trip for the rest of the day
    in this process, so a key failing on every request costs one statement a day per worker."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def report_route(self, route: Any, status: int | None) -> None:
        """For a gateway route that failed: its stored admin key or stored BYOK/team key, if it has one."""
        if route.admin_key_id:
            self.report("admin", route.admin_key_id, status)
        elif route.user_key_id:
            self.report("stored", route.user_key_id, status)

    def report(self, kind: str, key_id: str | None, status: int | None) -> None:
        if key_id is None or status not in (401, 403) or kind not in ("admin", "stored"):
            return
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        with self._lock:
            if (key_id, day) in self._seen:
                return
            if len(self._seen) > 10_000:
                self._seen.clear()
        try:
            with self._db.service_statement() as conn:
                conn.execute("select public.notify_key_failing(%s, %s::uuid, %s)", [kind, key_id, status])
        except psycopg.Error as exc:  # a notice never fails the request that noticed; the next failure retries
            log.error("recording a failing key failed: %s", type(exc).__name__)
            return
        with self._lock:
            self._seen.add((key_id, day))

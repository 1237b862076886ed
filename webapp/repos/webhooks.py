"""public.webhook_endpoints, webhook_deliveries and webhook_attempts.

Endpoint reads and writes run as the signed-in user: the policies (public.webhook_manages) decide who manages which
endpoint, so a statement here that names another owner's endpoint simply finds no row. The signing secret's
ciphertext is read only as service_role (the worker, and the send-test path after the user's own read succeeded).
Deliveries and attempts are written as service_role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class Owner:
    """Whose endpoints: a user's (user_id), a team's (team_id) or the site's (neither)."""

    scope: str  # "user", "team", "site"
    user_id: str | None = None
    team_id: str | None = None


@dataclass(frozen=True)
class Endpoint:
    id: str
    scope: str
    user_id: str | None
    team_id: str | None
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    failing_since: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Delivery:
    id: str
    endpoint_id: str
    event_id: str | None
    event_type: str
    test: bool
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_excerpt: str | None
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True)
class Attempt:
    id: int
    delivery_id: str
    endpoint_id: str
    attempted_at: datetime
    status_code: int | None
    excerpt: str | None
    error: str | None
    duration_ms: int
    next_attempt_at: datetime | None
    event_type: str = ""
    test: bool = False


@dataclass(frozen=True)
class Claimed:
    """A delivery the worker holds for one attempt, with what it needs to sign and send it."""

    id: str
    endpoint_id: str
    event_type: str
    body: str
    attempts: int  # including this one
    created_at: datetime
    url: str
    secret_ciphertext: str
    failing_since: datetime | None
    previous_secret_ciphertext: str | None = None  # still signing (a rotation less than a day ago)


_ENDPOINT_COLS = """e.id::text as id, e.scope, e.user_id::text as user_id, e.team_id::text as team_id, e.url,
       e.description, e.event_types, e.enabled, e.failing_since, e.disabled_at, e.disabled_reason, e.created_at,
       e.updated_at"""


def _owner_where(owner: Owner) -> tuple[str, list[Any]]:
    if owner.scope == "user":
        return "e.scope = 'user' and e.user_id = %s", [owner.user_id]
    if owner.scope == "team":
        return "e.scope = 'team' and e.team_id = %s", [owner.team_id]
    return "e.scope = 'site'", []


def list_endpoints(conn: psycopg.Connection, owner: Owner) -> list[Endpoint]:
    where, params = _owner_where(owner)
    with conn.cursor(row_factory=class_row(Endpoint)) as cur:
        cur.execute(f"select {_ENDPOINT_COLS} from public.webhook_endpoints e where {where}"
                    " order by e.created_at, e.id", params)
        return cur.fetchall()


def count_endpoints(conn: psycopg.Connection, owner: Owner) -> int:
    where, params = _owner_where(owner)
    row = conn.execute(f"select count(*) from public.webhook_endpoints e where {where}", params).fetchone()
    return int(row[0]) if row else 0


def get_endpoint(conn: psycopg.Connection, owner: Owner, endpoint_id: str) -> Endpoint | None:
    where, params = _owner_where(owner)
    with conn.cursor(row_factory=class_row(Endpoint)) as cur:
        cur.execute(f"select {_ENDPOINT_COLS} from public.webhook_endpoints e where e.id = %s and {where}",
                    [endpoint_id, *params])
        return cur.fetchone()


def insert_endpoint(conn: psycopg.Connection, endpoint_id: str, owner: Owner, created_by: str,
                    values: dict[str, Any], ciphertext: str, key_id: str) -> None:
    conn.execute(
        "insert into public.webhook_endpoints (id, scope, user_id, team_id, url, description, event_types,"
        " secret_ciphertext, secret_key_id, created_by) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [endpoint_id, owner.scope, owner.user_id, owner.team_id, values["url"], values.get("description", ""),
         values["event_types"], ciphertext, key_id, created_by])


def update_endpoint(conn: psycopg.Connection, endpoint_id: str, values: dict[str, Any]) -> bool:
    """Change url, description, event_types and/or enabled. Enabling clears the failure state."""
    sets, params = ["updated_at = now()"], []
    for name in ("url", "description", "event_types"):
        if name in values:
            sets.append(f"{name} = %s")
            params.append(values[name])
    if "enabled" in values:
        sets.append("enabled = %s")
        params.append(bool(values["enabled"]))
        if values["enabled"]:
            sets += ["failing_since = null", "disabled_at = null", "disabled_reason = null"]
    cur = conn.execute(f"update public.webhook_endpoints set {', '.join(sets)} where id = %s",
                       [*params, endpoint_id])
    return cur.rowcount == 1


def set_secret(conn: psycopg.Connection, endpoint_id: str, ciphertext: str, key_id: str, grace_seconds: int) -> bool:
    """The new secret; the current one keeps signing beside it for `grace_seconds` (the SET sees the old row)."""
    cur = conn.execute("update public.webhook_endpoints set secret_ciphertext = %s, secret_key_id = %s,"
                       " previous_secret_ciphertext = secret_ciphertext,"
                       " previous_secret_expires_at = now() + make_interval(secs => %s),"
                       " updated_at = now() where id = %s", [ciphertext, key_id, grace_seconds, endpoint_id])
    return cur.rowcount == 1


def delete_endpoint(conn: psycopg.Connection, endpoint_id: str) -> bool:
    return conn.execute("delete from public.webhook_endpoints where id = %s", [endpoint_id]).rowcount == 1


_DELIVERY_COLS = """d.id::text as id, d.endpoint_id::text as endpoint_id, d.event_id::text as event_id, d.event_type,
       d.test, d.status, d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_excerpt,
       d.last_error, d.created_at"""


def list_deliveries(conn: psycopg.Connection, endpoint_id: str, limit: int) -> list[Delivery]:
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        cur.execute(f"select {_DELIVERY_COLS} from public.webhook_deliveries d where d.endpoint_id = %s"
                    " order by d.created_at desc, d.id limit %s", [endpoint_id, limit])
        return cur.fetchall()


def get_delivery(conn: psycopg.Connection, delivery_id: str) -> Delivery | None:
    with conn.cursor(row_factory=class_row(Delivery)) as cur:
        cur.execute(f"select {_DELIVERY_COLS} from public.webhook_deliveries d where d.id = %s", [delivery_id])
        return cur.fetchone()


def list_attempts(conn: psycopg.Connection, endpoint_id: str, limit: int) -> list[Attempt]:
    with conn.cursor(row_factory=class_row(Attempt)) as cur:
        cur.execute("select a.id, a.delivery_id::text as delivery_id, a.endpoint_id::text as endpoint_id,"
                    " a.attempted_at, a.status_code, a.excerpt, a.error, a.duration_ms, a.next_attempt_at,"
                    " d.event_type, d.test from public.webhook_attempts a"
                    " join public.webhook_deliveries d on d.id = a.delivery_id"
                    " where a.endpoint_id = %s order by a.id desc limit %s", [endpoint_id, limit])
        return cur.fetchall()


# -- the worker's side (service_role) -------------------------------------------------------------------------------

def insert_delivery(conn: psycopg.Connection, endpoint_id: str, event_id: str | None, event_type: str,
                    body: str, *, test: bool = False) -> str | None:
    """A pending delivery, due now. None when this event already has one for this endpoint (idempotent)."""
    row = conn.execute(
        "insert into public.webhook_deliveries (endpoint_id, event_id, event_type, body, test)"
        " values (%s, %s, %s, %s, %s) on conflict (endpoint_id, event_id) do nothing returning id::text",
        [endpoint_id, event_id, event_type, body, test]).fetchone()
    return str(row[0]) if row else None


def matching_endpoints(conn: psycopg.Connection, event_type: str, user_id: str | None,
                       team_id: str | None) -> list[str]:
    """Enabled endpoints that asked for this event type: the user's own, the team's, and the site's."""
    rows = conn.execute(
        "select e.id::text from public.webhook_endpoints e where e.enabled and %s = any (e.event_types)"
        " and ((e.scope = 'user' and e.user_id = %s) or (e.scope = 'team' and e.team_id = %s)"
        "      or e.scope = 'site') order by e.id",
        [event_type, user_id, team_id]).fetchall()
    return [str(r[0]) for r in rows]


def secret_ciphertext(conn: psycopg.Connection, endpoint_id: str) -> str | None:
    row = conn.execute("select secret_ciphertext from public.webhook_endpoints where id = %s",
                       [endpoint_id]).fetchone()
    return str(row[0]) if row else None


def claim(conn: psycopg.Connection, delivery_id: str, lock_seconds: float) -> Claimed | None:
    """Take a due, pending delivery for one attempt: the attempt counter goes up and the row is leased until
    `lock_seconds` from now (a worker killed mid-attempt leaves it due again once the lease ends). None when the
    delivery is not due, already leased, finished, or its endpoint is disabled."""
    with conn.cursor(row_factory=class_row(Claimed)) as cur:
        cur.execute(
            "update public.webhook_deliveries d set attempts = d.attempts + 1,"
            " locked_until = now() + make_interval(secs => %s)"
            " from public.webhook_endpoints e"
            " where d.id = (select x.id from public.webhook_deliveries x where x.id = %s and x.status = 'pending'"
            "               and x.next_attempt_at <= now() and (x.locked_until is null or x.locked_until <= now())"
            "               for update skip locked)"
            " and e.id = d.endpoint_id and e.enabled"
            " returning d.id::text as id, d.endpoint_id::text as endpoint_id, d.event_type, d.body, d.attempts,"
            " d.created_at, e.url, e.secret_ciphertext, e.failing_since,"
            " case when e.previous_secret_expires_at > now() then e.previous_secret_ciphertext end"
            " as previous_secret_ciphertext",
            [lock_seconds, delivery_id])
        return cur.fetchone()


def due_deliveries(conn: psycopg.Connection, limit: int) -> list[tuple[str, datetime]]:
    """Pending deliveries that are due (or whose lease ran out), oldest first: for the sweep."""
    rows = conn.execute(
        "select d.id::text, d.next_attempt_at from public.webhook_deliveries d"
        " join public.webhook_endpoints e on e.id = d.endpoint_id and e.enabled"
        " where d.status = 'pending' and d.next_attempt_at <= now()"
        " and (d.locked_until is null or d.locked_until <= now()) order by d.next_attempt_at limit %s",
        [limit]).fetchall()
    return [(str(r[0]), r[1]) for r in rows]


def record(conn: psycopg.Connection, delivery_id: str, endpoint_id: str, *, status: str, code: int | None,
           excerpt: str | None, error: str | None, duration_ms: int, next_in: float | None) -> datetime | None:
    """Write one attempt and the delivery's new state; returns the next attempt time when one is planned."""
    row = conn.execute(
        "update public.webhook_deliveries set status = %s, locked_until = null, last_attempt_at = now(),"
        " last_status = %s, last_excerpt = %s, last_error = %s,"
        " next_attempt_at = case when %s::float8 is null then null else now() + make_interval(secs => %s) end"
        " where id = %s returning next_attempt_at",
        [status, code, excerpt, error, next_in, next_in, delivery_id]).fetchone()
    next_at = row[0] if row else None
    conn.execute("insert into public.webhook_attempts (delivery_id, endpoint_id, status_code, excerpt, error,"
                 " duration_ms, next_attempt_at) values (%s, %s, %s, %s, %s, %s, %s)",
                 [delivery_id, endpoint_id, code, excerpt, error, duration_ms, next_at])
    return next_at  # type: ignore[no-any-return]


def endpoint_succeeded(conn: psycopg.Connection, endpoint_id: str) -> None:
    conn.execute("update public.webhook_endpoints set failing_since = null where id = %s and failing_since is not null",
                 [endpoint_id])


def endpoint_failed(conn: psycopg.Connection, endpoint_id: str, disable_after: float, reason: str) -> bool:
    """Note a failure; an endpoint failing for `disable_after` seconds is disabled and its pending deliveries
    fail. True when this call disabled it."""
    row = conn.execute(
        "update public.webhook_endpoints set failing_since = coalesce(failing_since, now()),"
        " enabled = case when failing_since is not null and failing_since <= now() - make_interval(secs => %s)"
        "           then false else enabled end,"
        " disabled_at = case when failing_since is not null and failing_since <= now() - make_interval(secs => %s)"
        "           then now() else disabled_at end,"
        " disabled_reason = case when failing_since is not null"
        "           and failing_since <= now() - make_interval(secs => %s) then %s else disabled_reason end"
        " where id = %s returning enabled",
        [disable_after, disable_after, disable_after, reason, endpoint_id]).fetchone()
    disabled = row is not None and not row[0]
    if disabled:
        conn.execute("update public.webhook_deliveries set status = 'failed', next_attempt_at = null,"
                     " locked_until = null, last_error = coalesce(last_error, 'endpoint disabled')"
                     " where endpoint_id = %s and status = 'pending'", [endpoint_id])
    return disabled


def pending_tests(conn: psycopg.Connection, endpoint_id: str) -> int:
    row = conn.execute("select count(*) from public.webhook_deliveries where endpoint_id = %s and test"
                       " and status = 'pending'", [endpoint_id]).fetchone()
    return int(row[0]) if row else 0

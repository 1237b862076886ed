"""Credit accounts and ledger. Writes only through the SQL functions (service role)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg.rows import class_row


def _dumps(receipt: dict[str, Any]) -> str:
    """A receipt row as JSON (orjson: the hot path's one body per request; anything else as its str())."""
    return orjson.dumps(receipt, default=str).decode()


INSUFFICIENT = "P0402"
CAP_REACHED = "P0403"
KEY_CAP_REACHED = "P0406"  # a personal API key's monthly credit cap
NOT_TEAM_MEMBER = "P0417"  # a team wallet's reservation for someone no longer a member
TEAM_MEMBER_CAP_REACHED = "P0418"  # a team member's monthly cap


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    kind: str
    delta: int
    balance_after: int
    request_id: str | None
    reason: str
    created_at: datetime


def balance(conn: psycopg.Connection, user_id: str) -> int:
    row = conn.execute("select balance from public.credit_accounts where user_id = %s", [user_id]).fetchone()
    return int(row[0]) if row else 0


def ledger(conn: psycopg.Connection, user_id: str, limit: int = 50) -> list[LedgerEntry]:
    with conn.cursor(row_factory=class_row(LedgerEntry)) as cur:
        cur.execute("select id, kind, delta, balance_after, request_id::text as request_id, reason, created_at"
                    " from public.credit_ledger where user_id = %s order by id desc limit %s", [user_id, limit])
        return cur.fetchall()


def adjust(conn: psycopg.Connection, user_id: str, delta: int, reason: str, actor_id: str | None) -> int:
    row = conn.execute("select public.credits_adjust(%s, %s, %s, %s)", [user_id, delta, reason, actor_id]).fetchone()
    assert row is not None
    return int(row[0])


def reserve(conn: psycopg.Connection, user_id: str, request_id: str, amount: int, cap: int | None) -> int:
    row = conn.execute("select public.credits_reserve(%s, %s, %s, %s)", [user_id, request_id, amount, cap]).fetchone()
    assert row is not None
    return int(row[0])


def reserve_flex(conn: psycopg.Connection, user_id: str, request_id: str, minimum: int, maximum: int,
                 cap: int | None, api_key_id: str | None = None, key_cap: int | None = None,
                 team: str | None = None) -> tuple[int, str | None]:
    """One reservation on the user's wallet, or (with `team`) on that team's wallet under the member's cap."""
    row = conn.execute("select public.credits_reserve_flex(%s, %s, %s, %s, %s, %s, %s, %s)",
                       [user_id, request_id, minimum, maximum, cap, api_key_id, key_cap, team]).fetchone()
    assert row is not None
    return int(row[0]["amount"]), row[0]["limited_by"]


def settle_logged(conn: psycopg.Connection, request_id: str, actual: int, receipt: dict[str, Any]) -> tuple[int, int]:
    row = conn.execute("select public.credits_settle_logged(%s, %s, %s::jsonb)",
                       [request_id, actual, json.dumps(receipt, default=str)]).fetchone()
    assert row is not None
    return int(row[0]["charged"]), int(row[0]["shortfall"])


def refund_logged(conn: psycopg.Connection, request_id: str, receipt: dict[str, Any]) -> int:
    row = conn.execute("select public.credits_refund_logged(%s, %s::jsonb)",
                       [request_id, json.dumps(receipt, default=str)]).fetchone()
    assert row is not None
    return int(row[0])


def close_logged(conn: psycopg.Connection, request_id: str, actual: int | None, receipt: dict[str, Any],
                 release_stream: bool) -> tuple[int, int]:
    """public.gateway_close: the stream slot released (when asked), settled at `actual` (None: refunded) and the
    receipt row written, in one transaction. Returns (charged, shortfall)."""
    row = conn.execute("select public.gateway_close(%s, %s, %s::jsonb, %s)",
                       [request_id, actual, _dumps(receipt), release_stream]).fetchone()
    assert row is not None
    return int(row[0]["charged"]), int(row[0]["shortfall"])


def settle(conn: psycopg.Connection, request_id: str, actual: int) -> int:
    row = conn.execute("select public.credits_settle(%s, %s)", [request_id, actual]).fetchone()
    assert row is not None
    return int(row[0])


def refund(conn: psycopg.Connection, request_id: str) -> int:
    row = conn.execute("select public.credits_refund(%s)", [request_id]).fetchone()
    assert row is not None
    return int(row[0])


# -- what the user reads about their own credits (as the user, under RLS; always filtered to their own rows, since
#    the policies also let an admin read everyone's) ------------------------------------------------------------

@dataclass(frozen=True)
class UserLedgerEntry:
    id: int
    kind: str
    delta: int
    balance_after: int
    request_id: str | None
    reason: str
    uncollected: int | None
    created_at: datetime


def ledger_page(conn: psycopg.Connection, user_id: str, limit: int, before: int | None) -> list[UserLedgerEntry]:
    """Newest first, keyset-paged on the ledger id: the entries with id < `before` (all when None)."""
    with conn.cursor(row_factory=class_row(UserLedgerEntry)) as cur:
        cur.execute("""select id, kind, delta, balance_after, request_id::text as request_id, reason, uncollected,
                              created_at
                       from public.credit_ledger
                       where user_id = %s and (%s::bigint is null or id < %s::bigint)
                       order by id desc limit %s""", [user_id, before, before, limit])
        return cur.fetchall()


@dataclass(frozen=True)
class OpenReservation:
    request_id: str
    amount: int
    created_at: datetime


def open_reservations(conn: psycopg.Connection, user_id: str, limit: int = 20) -> list[OpenReservation]:
    """Requests in flight: credits held until the answer is settled or refunded."""
    with conn.cursor(row_factory=class_row(OpenReservation)) as cur:
        cur.execute("""select request_id::text as request_id, amount, created_at from public.credit_reservations
                       where user_id = %s and team_id is null and status = 'reserved'
                       order by created_at desc limit %s""",
                    [user_id, limit])
        return cur.fetchall()


def month_spent(conn: psycopg.Connection, user_id: str) -> int:
    """This calendar month's (UTC) personal spending as the monthly cap counts it (credits_reserve_flex): what was
    charged, and what is still held by requests in flight; refunds count nothing. Read from the cap tally (one row,
    however many requests the month holds); 0 unless the caller is the user (or a site admin)."""
    row = conn.execute("select public.credits_month_spent(%s)", [user_id]).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Receipt:
    request_id: str
    created_at: datetime | None
    mode: str | None
    status: int | None
    provider: str | None
    model: str | None
    task: str | None
    key_source: str | None
    tokens_in: int | None
    tokens_out: int | None
    usage_source: str | None
    credits: int | None
    multiplier: Decimal | None
    fallback_path: list[str] | None
    stream: bool | None
    error_code: str | None
    latency_ms: int | None
    output_limit: int | None
    shortfall: int | None
    reservation_status: str | None
    reserved: int | None
    charged: int | None
    api_key_id: str | None
    api_key_name: str | None
    api_key_prefix: str | None
    team_id: str | None = None  # the team the request was billed to
    cached_tokens: int | None = None  # of tokens_in: read from the provider's cache
    cache_write_tokens: int | None = None  # of tokens_in: written to the provider's cache
    reasoning_tokens: int | None = None  # of tokens_out: hidden reasoning


def receipt(conn: psycopg.Connection, user_id: str, request_id: str) -> Receipt | None:
    """The user's own receipt: the request-log row and the reservation behind it (either may exist alone: a BYOK
    request has no reservation, a request in flight has no log row yet). None when neither is the user's."""
    with conn.cursor(row_factory=class_row(Receipt)) as cur:
        cur.execute("""select %(rid)s::text as request_id, l.created_at, l.mode, l.status, l.provider, l.model,
                              l.task, l.key_source, l.tokens_in, l.tokens_out, l.usage_source, l.credits,
                              l.multiplier, l.fallback_path, l.stream, l.error_code, l.latency_ms, l.output_limit,
                              l.shortfall, r.status as reservation_status, r.amount as reserved, r.charged,
                              coalesce(l.api_key_id, r.api_key_id)::text as api_key_id, k.name as api_key_name,
                              k.prefix as api_key_prefix, coalesce(l.team_id, r.team_id)::text as team_id,
                              l.cached_tokens, l.cache_write_tokens, l.reasoning_tokens
                       from (select 1) one
                       left join public.llm_request_logs l on l.request_id = %(rid)s and l.user_id = %(uid)s
                       left join public.credit_reservations r on r.request_id = %(rid)s and r.user_id = %(uid)s
                       left join public.api_keys k on k.id = coalesce(l.api_key_id, r.api_key_id)
                                                  and k.user_id = %(uid)s
                       where l.request_id is not null or r.request_id is not null""",
                    {"rid": request_id, "uid": user_id})
        return cur.fetchone()

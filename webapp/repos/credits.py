"""Credit accounts and ledger. Writes only through the SQL functions (service role)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

INSUFFICIENT = "P0402"
CAP_REACHED = "P0403"
KEY_CAP_REACHED = "P0406"  # a personal API key's monthly credit cap


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
                 cap: int | None, api_key_id: str | None = None, key_cap: int | None = None) -> tuple[int, str | None]:
    row = conn.execute("select public.credits_reserve_flex(%s, %s, %s, %s, %s, %s, %s)",
                       [user_id, request_id, minimum, maximum, cap, api_key_id, key_cap]).fetchone()
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


def settle(conn: psycopg.Connection, request_id: str, actual: int) -> int:
    row = conn.execute("select public.credits_settle(%s, %s)", [request_id, actual]).fetchone()
    assert row is not None
    return int(row[0])


def refund(conn: psycopg.Connection, request_id: str) -> int:
    row = conn.execute("select public.credits_refund(%s)", [request_id]).fetchone()
    assert row is not None
    return int(row[0])

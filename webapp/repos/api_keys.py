"""public.api_keys: personal API keys (metadata; the hash column is service_role's only) and their use this month.

Reads run as the owner under RLS (or as an admin); writes run as service_role inside the caller's transaction, with
the owner in the WHERE clause."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class ApiKey:
    id: str
    user_id: str
    name: str
    prefix: str
    mode: str
    allow: list[str]
    monthly_credit_cap: int | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    requests_month: int = 0
    credits_month: int = 0


@dataclass(frozen=True)
class KeyScope:
    """What a key-authenticated request may do, from public.api_key_principal's verdict."""

    id: str
    name: str
    mode: str  # "user" (the owner's mode), "member" or "byok"
    allow: tuple[str, ...]  # provider slugs or slug/model; empty: everything the owner may call
    monthly_credit_cap: int | None

    @classmethod
    def from_verdict(cls, verdict: dict[str, Any] | None) -> KeyScope | None:
        key = (verdict or {}).get("api_key")
        if not isinstance(key, dict):
            return None
        cap = key.get("monthly_credit_cap")
        return cls(str(key["id"]), str(key.get("name") or ""), str(key.get("mode") or "user"),
                   tuple(str(a) for a in key.get("allow") or ()), int(cap) if cap is not None else None)

    def allows(self, slug: str, model: str) -> bool:
        return not self.allow or slug in self.allow or f"{slug}/{model}" in self.allow

    def allows_provider(self, slug: str) -> bool:
        return not self.allow or any(a == slug or a.startswith(slug + "/") for a in self.allow)


_COLS = """k.id::text as id, k.user_id::text as user_id, k.name, k.prefix, k.mode, k.allow, k.monthly_credit_cap,
       k.expires_at, k.revoked_at, k.last_used_at, k.created_at"""
# This month's (UTC) requests and credits per key, from the daily rollup (index on api_key_id, day).
_WITH_MONTH = f"""select {_COLS},
       coalesce(m.requests, 0)::int as requests_month, coalesce(m.credits, 0)::bigint as credits_month
  from public.api_keys k
  left join lateral (select sum(u.requests) as requests, sum(u.credits) as credits from public.usage_daily u
                     where u.api_key_id = k.id
                       and u.day >= date_trunc('month', now() at time zone 'utc')::date) m on true"""


def list_for_user(conn: psycopg.Connection, user_id: str, *, include_revoked: bool = False) -> list[ApiKey]:
    where = "k.user_id = %s" + ("" if include_revoked else " and k.revoked_at is null")
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        cur.execute(f"{_WITH_MONTH} where {where} order by k.created_at desc, k.id", [user_id])
        return cur.fetchall()


def get(conn: psycopg.Connection, key_id: str, user_id: str | None = None) -> ApiKey | None:
    """One key (with this month's use), of `user_id` when given."""
    sql = f"{_WITH_MONTH} where k.id = %s" + (" and k.user_id = %s" if user_id else "")
    with conn.cursor(row_factory=class_row(ApiKey)) as cur:
        cur.execute(sql, [key_id, user_id] if user_id else [key_id])
        return cur.fetchone()


def names(conn: psycopg.Connection, user_id: str) -> dict[str, str]:
    """id → name of every key of the user, revoked ones included (the log keeps their requests)."""
    rows = conn.execute("select id::text, name from public.api_keys where user_id = %s", [user_id]).fetchall()
    return {r[0]: r[1] for r in rows}


def count_active(conn: psycopg.Connection, user_id: str) -> int:
    row = conn.execute("select count(*) from public.api_keys where user_id = %s and revoked_at is null",
                       [user_id]).fetchone()
    return int(row[0]) if row else 0


def insert(conn: psycopg.Connection, user_id: str, prefix: str, digest: str, values: dict[str, Any]) -> str:
    """Service role. Returns the new key's id."""
    row = conn.execute(
        """insert into public.api_keys (user_id, name, prefix, hash, mode, allow, monthly_credit_cap, expires_at)
           values (%s, %s, %s, %s, %s, %s, %s, %s) returning id::text""",
        [user_id, values["name"], prefix, digest, values.get("mode", "user"), values.get("allow", []),
         values.get("monthly_credit_cap"), values.get("expires_at")]).fetchone()
    assert row is not None
    return str(row[0])


EDITABLE = ("name", "mode", "allow", "monthly_credit_cap", "expires_at")


def update(conn: psycopg.Connection, key_id: str, user_id: str, values: dict[str, Any]) -> bool:
    """Service role. Only a live key of `user_id` changes."""
    sets = [(k, v) for k, v in values.items() if k in EDITABLE]
    if not sets:  # nothing to change: still only a live key "changes"
        key = get(conn, key_id, user_id)
        return key is not None and key.revoked_at is None
    assignments = ", ".join(f"{k} = %s" for k, _ in sets)
    cur = conn.execute(f"update public.api_keys set {assignments} where id = %s and user_id = %s"
                       " and revoked_at is null", [*(v for _, v in sets), key_id, user_id])
    return cur.rowcount == 1


def revoke(conn: psycopg.Connection, key_id: str, user_id: str | None = None) -> bool:
    """Service role. Soft delete: the row stays so the log keeps the key's name. Idempotent."""
    sql = "update public.api_keys set revoked_at = coalesce(revoked_at, now()) where id = %s"
    cur = conn.execute(sql + (" and user_id = %s" if user_id else ""), [key_id, user_id] if user_id else [key_id])
    return cur.rowcount == 1

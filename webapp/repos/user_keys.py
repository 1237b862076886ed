"""user_provider_keys: the user's stored BYOK keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class UserKeyInfo:
    """What the owner may see: never the ciphertext."""

    id: str
    provider_id: str
    last4: str
    base_url: str | None
    enabled: bool
    priority: int
    last_used_at: datetime | None


@dataclass(frozen=True)
class UserKeySecret:
    id: str
    user_id: str
    provider_id: str
    ciphertext: str
    key_id: str
    base_url: str | None
    priority: int


def list_for_owner(conn: psycopg.Connection, user_id: str) -> list[UserKeyInfo]:
    with conn.cursor(row_factory=class_row(UserKeyInfo)) as cur:
        cur.execute("select id::text as id, provider_id::text as provider_id, last4, base_url, enabled, priority,"
                    " last_used_at from public.user_provider_keys where user_id = %s order by priority, created_at",
                    [user_id])
        return cur.fetchall()


def upsert(conn: psycopg.Connection, user_id: str, provider_id: str, ciphertext: str, key_id: str, last4: str,
           base_url: str | None) -> None:
    # Update-then-insert rather than ON CONFLICT: that form needs SELECT on the columns it reads through
    # `excluded`, and `authenticated` may never select the ciphertext column.
    cur = conn.execute(
        """update public.user_provider_keys set ciphertext = %s, key_id = %s, last4 = %s, base_url = %s,
               enabled = true
           where user_id = %s and provider_id = %s""",
        [ciphertext, key_id, last4, base_url, user_id, provider_id],
    )
    if cur.rowcount == 0:
        conn.execute(
            """insert into public.user_provider_keys (user_id, provider_id, ciphertext, key_id, last4, base_url)
               values (%s, %s, %s, %s, %s, %s)""",
            [user_id, provider_id, ciphertext, key_id, last4, base_url],
        )


def delete(conn: psycopg.Connection, user_id: str, provider_id: str) -> bool:
    cur = conn.execute("delete from public.user_provider_keys where user_id = %s and provider_id = %s",
                       [user_id, provider_id])
    return cur.rowcount > 0


def secrets_for_user(conn: psycopg.Connection, user_id: str) -> list[UserKeySecret]:
    """Service role only (the ciphertext column is not granted to `authenticated`)."""
    with conn.cursor(row_factory=class_row(UserKeySecret)) as cur:
        cur.execute("select id::text as id, user_id::text as user_id, provider_id::text as provider_id, ciphertext,"
                    " key_id, base_url, priority from public.user_provider_keys"
                    " where user_id = %s and enabled order by priority, created_at", [user_id])
        return cur.fetchall()


def touch_last_used(conn: psycopg.Connection, key_row_id: str) -> None:
    conn.execute("update public.user_provider_keys set last_used_at = now() where id = %s", [key_row_id])

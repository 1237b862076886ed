"""public.user_notices: what an admin change did to a user's settings, until the user dismisses it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class Notice:
    id: str
    kind: str
    message: str
    created_at: datetime


def open_notices(conn: psycopg.Connection, user_id: str, limit: int = 20) -> list[Notice]:
    """The user's notices not yet dismissed, newest first (RLS: the owner's rows only)."""
    with conn.cursor(row_factory=class_row(Notice)) as cur:
        cur.execute("select id::text as id, kind, message, created_at from public.user_notices"
                    " where user_id = %s and dismissed_at is null order by created_at desc, id limit %s",
                    [user_id, limit])
        return cur.fetchall()


def dismiss(conn: psycopg.Connection, user_id: str, notice_id: str) -> bool:
    cur = conn.execute("update public.user_notices set dismissed_at = now()"
                       " where id = %s and user_id = %s and dismissed_at is null", [notice_id, user_id])
    return cur.rowcount > 0

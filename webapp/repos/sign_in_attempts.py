"""Failed sign-in counts per key (an account, a client address), shared by every worker (service role only)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg


def wait_seconds(conn: psycopg.Connection, keys: Sequence[str], limits: Sequence[int], window: int) -> int:
    """Seconds until every key is below its limit again; 0 when sign-in may go ahead."""
    row = conn.execute("select public.sign_in_wait(%s, %s, %s)", [list(keys), list(limits), window]).fetchone()
    return int(row[0]) if row else 0


def record_failure(conn: psycopg.Connection, keys: Sequence[str], window: int) -> None:
    conn.execute("select public.sign_in_failed(%s, %s)", [list(keys), window])


def clear(conn: psycopg.Connection, key: str) -> None:
    conn.execute("delete from public.sign_in_attempts where key = %s", [key])

"""Request counts of the local Supabase Auth API per key (sign-ups, token refreshes per client address), shared by
every worker (service role only; migration 20261202200100)."""

from __future__ import annotations

import psycopg


def hit(conn: psycopg.Connection, key: str, limit: int, window_seconds: int) -> int:
    """Count one request against `key`: 0 when it is within `limit` of the key's window, else the seconds until
    that window ends."""
    row = conn.execute("select public.auth_rate_hit(%s, %s, %s)", [key, limit, window_seconds]).fetchone()
    return int(row[0]) if row else 0

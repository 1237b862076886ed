"""The single row of site settings (credits at sign-up, a credit's display value, the low-balance threshold)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class Display:
    """What any signed-in user may read: how to show a credit in money, and when to warn."""

    currency_code: str
    currency_symbol: str
    credit_value: int  # millionths of the currency unit per credit
    low_balance_threshold: int  # micro-credits


@dataclass(frozen=True)
class SiteSettings(Display):
    signup_grant: int  # micro-credits
    updated_at: datetime
    updated_by_email: str | None


DEFAULT_DISPLAY = Display("USD", "$", 1_000_000, 1_000_000)


def display(conn: psycopg.Connection) -> Display:
    """As the user (column grants: only these columns are readable by `authenticated`)."""
    with conn.cursor(row_factory=class_row(Display)) as cur:
        cur.execute("select currency_code, currency_symbol, credit_value, low_balance_threshold"
                    " from public.site_settings where id")
        return cur.fetchone() or DEFAULT_DISPLAY


def get(conn: psycopg.Connection) -> SiteSettings:
    """Service role (the whole row and the editor's email from auth.users)."""
    with conn.cursor(row_factory=class_row(SiteSettings)) as cur:
        cur.execute("""select s.currency_code, s.currency_symbol, s.credit_value, s.low_balance_threshold,
                              s.signup_grant, s.updated_at, u.email as updated_by_email
                       from public.site_settings s left join auth.users u on u.id = s.updated_by
                       where s.id""")
        row = cur.fetchone()
    assert row is not None, "the site_settings row is created by its migration"
    return row


def update(conn: psycopg.Connection, values: dict[str, object], actor_id: str) -> None:
    """Service role. `values` holds only known column names (the service builds it)."""
    cols = ("signup_grant", "currency_code", "currency_symbol", "credit_value", "low_balance_threshold")
    assert set(values) <= set(cols)
    sets = ", ".join(f"{c} = %({c})s" for c in cols if c in values)
    conn.execute(f"update public.site_settings set {sets}, updated_at = now(), updated_by = %(actor)s where id",
                 {**values, "actor": actor_id})

"""user_preferences."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class Preferences:
    user_id: str
    username: str | None = None
    first_name: str = ""
    last_name: str = ""
    email_notifications: bool = True
    marketing_emails: bool = False
    llm_mode: str = "member"
    default_provider: str | None = None
    fallbacks_enabled: bool = True
    never_spend_credits: bool = False
    provider_priorities: list[str] = field(default_factory=list)
    task_overrides: dict[str, Any] = field(default_factory=dict)
    monthly_credit_cap: int | None = None
    allow_dearer_fallbacks: bool = False  # a fallback may cost more than the route the request reserved for


_COLS = ("user_id::text as user_id, username, first_name, last_name, email_notifications, marketing_emails,"
         " llm_mode, default_provider, fallbacks_enabled, never_spend_credits, provider_priorities,"
         " task_overrides, monthly_credit_cap, allow_dearer_fallbacks")
EDITABLE = ("username", "first_name", "last_name", "email_notifications", "marketing_emails", "llm_mode",
            "default_provider", "fallbacks_enabled", "never_spend_credits", "provider_priorities",
            "task_overrides", "monthly_credit_cap", "allow_dearer_fallbacks")


def get(conn: psycopg.Connection, user_id: str) -> Preferences:
    """The user's row, or defaults when none exists yet."""
    with conn.cursor(row_factory=class_row(Preferences)) as cur:
        cur.execute(f"select {_COLS} from public.user_preferences where user_id = %s", [user_id])
        row = cur.fetchone()
    return row or Preferences(user_id=user_id)


def upsert(conn: psycopg.Connection, user_id: str, values: dict[str, Any]) -> Preferences:
    cols = [c for c in EDITABLE if c in values]
    params = [Jsonb(values[c]) if c == "task_overrides" else values[c] for c in cols]
    col_sql = ", ".join(["user_id", *cols])
    placeholders = ", ".join(["%s"] * (len(cols) + 1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols) or "user_id = excluded.user_id"
    with conn.cursor(row_factory=class_row(Preferences)) as cur:
        cur.execute(
            f"insert into public.user_preferences ({col_sql}) values ({placeholders})"
            f" on conflict (user_id) do update set {updates} returning {_COLS}",
            [user_id, *params],
        )
        row = cur.fetchone()
    assert row is not None
    return row

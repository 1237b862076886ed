"""llm_providers, llm_model_rates and llm_admin_keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class Provider:
    id: str
    slug: str
    name: str
    api_style: str
    base_url: str
    default_model: str
    enabled: bool
    credit_multiplier: Decimal
    byok_allowed: bool
    custom_base_url_allowed: bool
    sort_order: int
    free_for_byok: bool = False  # a keyless engine may serve BYOK requests at its own address
    # Sent upstream with every request: [[name, value], ...] (validated by services/provider_admin.py).
    extra_headers: list[Any] = field(default_factory=list)
    needs_key: bool = True
    archived_at: datetime | None = None
    responses_api: bool = False  # serves OpenAI's Responses API at {base_url}/responses (/v1/responses passes through)

    @property
    def header_pairs(self) -> tuple[tuple[str, str], ...]:
        """The extra headers as (name, value) pairs, ready for an adapter's Target."""
        return tuple((str(h[0]), str(h[1])) for h in self.extra_headers
                     if isinstance(h, list | tuple) and len(h) == 2)


@dataclass(frozen=True)
class ModelRate:
    provider_id: str
    model: str
    input_rate: int
    output_rate: int
    context_window: int
    max_output_tokens: int = 4096
    cached_input_rate: int | None = None  # None: cached input tokens cost the input rate
    enabled: bool = True
    cache_write_rate: int | None = None  # None: prompt-cache writes cost the input rate
    kind: str = "chat"  # "chat" or "embedding" (/v1/embeddings)


@dataclass(frozen=True)
class AdminKey:
    id: str
    provider_id: str
    ciphertext: str
    key_id: str
    last4: str
    label: str


_PROVIDER_COLS = ("id::text as id, slug, name, api_style, base_url, default_model, enabled, credit_multiplier,"
                  " byok_allowed, custom_base_url_allowed, sort_order, free_for_byok, extra_headers, needs_key,"
                  " archived_at, responses_api")


def list_providers(conn: psycopg.Connection) -> list[Provider]:
    """Every provider the current role may see (RLS: enabled ones for users, all for admins)."""
    with conn.cursor(row_factory=class_row(Provider)) as cur:
        cur.execute(f"select {_PROVIDER_COLS} from public.llm_providers order by sort_order, slug")
        return cur.fetchall()


@dataclass(frozen=True)
class PublicProvider:
    """What anyone may read of a provider: no base_url (anon has no grant on it)."""

    id: str
    slug: str
    name: str
    api_style: str
    default_model: str
    credit_multiplier: Decimal
    byok_allowed: bool


def list_public_providers(conn: psycopg.Connection) -> list[PublicProvider]:
    """The providers the current role may see, in the columns `anon` is granted (the pricing page)."""
    with conn.cursor(row_factory=class_row(PublicProvider)) as cur:
        cur.execute("select id::text as id, slug, name, api_style, default_model, credit_multiplier, byok_allowed"
                    " from public.llm_providers order by sort_order, slug")
        return cur.fetchall()


def list_rates(conn: psycopg.Connection) -> list[ModelRate]:
    with conn.cursor(row_factory=class_row(ModelRate)) as cur:
        cur.execute("select provider_id::text as provider_id, model, input_rate, output_rate, context_window,"
                    " max_output_tokens, cached_input_rate, enabled, cache_write_rate, kind from public.llm_model_rates"
                    " order by model")
        return cur.fetchall()


def active_admin_keys(conn: psycopg.Connection) -> list[AdminKey]:
    """Service role only: the newest active key per provider first."""
    with conn.cursor(row_factory=class_row(AdminKey)) as cur:
        cur.execute("select id::text as id, provider_id::text as provider_id, ciphertext, key_id, last4, label"
                    " from public.llm_admin_keys where active and revoked_at is null order by created_at desc")
        return cur.fetchall()


# -- the admin's provider lifecycle (run as the admin through RLS, or as service_role where noted) ---------------

CREATE_COLS = ("slug", "name", "api_style", "base_url", "default_model", "enabled", "credit_multiplier",
               "byok_allowed", "custom_base_url_allowed", "sort_order", "free_for_byok", "extra_headers",
               "needs_key", "responses_api")


def _param(col: str, value: Any) -> Any:
    return Jsonb(value) if col == "extra_headers" else value


def insert_provider(conn: psycopg.Connection, values: dict[str, Any]) -> Provider | None:
    """Insert a provider; None when RLS refused nothing visibly (never for an admin)."""
    cols = [c for c in CREATE_COLS if c in values]
    with conn.cursor(row_factory=class_row(Provider)) as cur:
        cur.execute(f"insert into public.llm_providers ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))})"
                    f" returning {_PROVIDER_COLS}", [_param(c, values[c]) for c in cols])
        return cur.fetchone()


def slug_taken(conn: psycopg.Connection, slug: str) -> bool:
    return conn.execute("select 1 from public.llm_providers where slug = %s", [slug]).fetchone() is not None


def has_history(conn: psycopg.Connection, slug: str) -> bool:
    """Whether any receipt names the provider (request logs are the only rows that reference it by name;
    reservations and the ledger point at a request id, whose log row carries the provider)."""
    # The platform rollup keeps every day's providers (even past log retention) and is small: no scan of the log.
    row = conn.execute("select exists (select 1 from public.usage_daily_platform where provider = %s)",
                       [slug]).fetchone()
    return bool(row and row[0])


def delete_provider(conn: psycopg.Connection, provider_id: str) -> bool:
    return conn.execute("delete from public.llm_providers where id = %s", [provider_id]).rowcount > 0


def archive_provider(conn: psycopg.Connection, provider_id: str) -> bool:
    cur = conn.execute("update public.llm_providers set enabled = false, archived_at = now()"
                       " where id = %s and archived_at is null", [provider_id])
    return cur.rowcount > 0


@dataclass(frozen=True)
class RoutingRef:
    """What one user's settings say about a provider (read as service_role: every user's row)."""

    user_id: str
    default_provider: str | None
    provider_priorities: list[str]
    task_overrides: dict[str, Any]


def routing_refs(conn: psycopg.Connection, slug: str) -> list[RoutingRef]:
    """Service role: every user whose default provider, priorities or task overrides name the slug (locked)."""
    with conn.cursor(row_factory=class_row(RoutingRef)) as cur:
        cur.execute(
            """select user_id::text as user_id, default_provider, provider_priorities, task_overrides
               from public.user_preferences
               where default_provider = %(s)s or %(s)s = any(provider_priorities)
                  or exists (select 1 from jsonb_each(task_overrides) t
                             where jsonb_typeof(t.value) = 'object' and t.value ->> 'provider' = %(s)s)
               order by user_id for update""", {"s": slug})
        return cur.fetchall()


def set_routing(conn: psycopg.Connection, user_id: str, default_provider: str | None, priorities: list[str],
                task_overrides: dict[str, Any]) -> None:
    """Service role: write back a user's cleaned routing."""
    conn.execute("update public.user_preferences set default_provider = %s, provider_priorities = %s,"
                 " task_overrides = %s where user_id = %s",
                 [default_provider, priorities, Jsonb(task_overrides), user_id])


def byok_key_owners(conn: psycopg.Connection, provider_id: str) -> list[str]:
    """Service role: the users who stored their own key for the provider."""
    rows = conn.execute("select distinct user_id::text from public.user_provider_keys where provider_id = %s",
                        [provider_id]).fetchall()
    return [str(r[0]) for r in rows]


def insert_notice(conn: psycopg.Connection, user_id: str, kind: str, message: str) -> None:
    """Service role: leave the user a notice their settings page shows until dismissed."""
    conn.execute("insert into public.user_notices (user_id, kind, message) values (%s, %s, %s)",
                 [user_id, kind, message[:1000]])


BULK_COLUMNS = ("input_rate", "output_rate", "cached_input_rate", "context_window", "max_output_tokens", "enabled",
                "cache_write_rate")


def set_models_field(conn: psycopg.Connection, provider_id: str, rate_ids: list[str], column: str,
                     value: Any) -> int:
    """Set one column of several of a provider's model rates; the number of rows changed."""
    if column not in BULK_COLUMNS:
        raise ValueError(f"not a bulk-editable column: {column!r}")
    cur = conn.execute(f"update public.llm_model_rates set {column} = %s"
                       " where provider_id = %s and id = any(%s::uuid[])", [value, provider_id, rate_ids])
    return cur.rowcount

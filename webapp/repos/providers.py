"""llm_providers, llm_model_rates and llm_admin_keys."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg.rows import class_row


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


@dataclass(frozen=True)
class ModelRate:
    provider_id: str
    model: str
    input_rate: int
    output_rate: int
    context_window: int
    max_output_tokens: int = 4096


@dataclass(frozen=True)
class AdminKey:
    id: str
    provider_id: str
    ciphertext: str
    key_id: str
    last4: str
    label: str


_PROVIDER_COLS = ("id::text as id, slug, name, api_style, base_url, default_model, enabled, credit_multiplier,"
                  " byok_allowed, custom_base_url_allowed, sort_order, free_for_byok")


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
                    " max_output_tokens from public.llm_model_rates order by model")
        return cur.fetchall()


def active_admin_keys(conn: psycopg.Connection) -> list[AdminKey]:
    """Service role only: the newest active key per provider first."""
    with conn.cursor(row_factory=class_row(AdminKey)) as cur:
        cur.execute("select id::text as id, provider_id::text as provider_id, ciphertext, key_id, last4, label"
                    " from public.llm_admin_keys where active and revoked_at is null order by created_at desc")
        return cur.fetchall()

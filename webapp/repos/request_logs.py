"""llm_request_logs: one receipt row per gateway request (no key, no prompt text)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.rows import class_row


@dataclass
class RequestLog:
    request_id: str
    user_id: str
    mode: str
    status: int
    provider: str | None = None
    model: str | None = None
    task: str | None = None
    key_source: str | None = None
    admin_key_id: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    usage_source: str | None = None
    credits: int = 0
    multiplier: Decimal | None = None
    fallback_path: list[str] | None = None
    stream: bool = False
    error_code: str | None = None
    latency_ms: int = 0
    output_limit: int | None = None
    shortfall: int = 0
    api_key_id: str | None = None  # the personal API key the request came with
    team_id: str | None = None  # the team the request was billed to
    cached_tokens: int = 0  # of tokens_in: read from the provider's prompt cache (cached-input rate)
    cache_write_tokens: int = 0  # of tokens_in: written to the provider's prompt cache (cache-write rate)
    reasoning_tokens: int = 0  # of tokens_out: hidden reasoning (already inside tokens_out, never charged twice)


@dataclass(frozen=True)
class LogRow:
    request_id: str
    mode: str
    provider: str | None
    model: str | None
    tokens_in: int
    tokens_out: int
    usage_source: str | None
    credits: int
    status: int
    error_code: str | None
    created_at: datetime
    api_key_id: str | None = None


_FIELDS = [f.name for f in fields(RequestLog)]


def insert_many(conn: psycopg.Connection, rows: list[RequestLog]) -> None:
    cols = ", ".join(_FIELDS)
    marks = ", ".join(["%s"] * len(_FIELDS))
    with conn.cursor() as cur:
        cur.executemany(
            f"insert into public.llm_request_logs ({cols}) values ({marks}) on conflict (request_id) do nothing",
            [[getattr(r, f) if f != "fallback_path" else (r.fallback_path or []) for f in _FIELDS] for r in rows],
        )


def insert_reject(conn: psycopg.Connection, row: RequestLog, reason: str) -> None:
    """Keep a receipt row the log table refused, with why."""
    conn.execute("insert into public.request_log_rejects (request_id, row_data, reason) values (%s, %s::jsonb, %s)",
                 [row.request_id, json.dumps(asdict(row), default=str), reason[:200]])


def recent(conn: psycopg.Connection, user_id: str, limit: int = 50, api_key_id: str | None = None) -> list[LogRow]:
    """The user's latest requests (of one personal API key when `api_key_id` is given)."""
    key_filter = " and api_key_id = %s" if api_key_id else ""
    with conn.cursor(row_factory=class_row(LogRow)) as cur:
        cur.execute("select request_id::text as request_id, mode, provider, model, tokens_in, tokens_out,"
                    " usage_source, credits, status, error_code, created_at, api_key_id::text as api_key_id"
                    f" from public.llm_request_logs where user_id = %s{key_filter} order by created_at desc limit %s",
                    [user_id, *([api_key_id] if api_key_id else []), limit])
        return cur.fetchall()

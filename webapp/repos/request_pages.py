"""Reading the request log row by row: a user's requests a keyset page at a time, and every row of an export
through a server-side cursor (fetched in batches, never all at once). Newest first: (created_at, id) descending."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from webapp.repos import admin as admin_repo

BATCH = 2000  # rows per FETCH of an export's server-side cursor


@dataclass(frozen=True)
class UserRequest:
    id: str
    request_id: str
    created_at: datetime
    mode: str
    provider: str | None
    model: str | None
    task: str | None
    tokens_in: int
    tokens_out: int
    cached_tokens: int  # of tokens_in, served from the provider's prompt cache
    cache_write_tokens: int  # of tokens_in, written to it
    reasoning_tokens: int  # of tokens_out, hidden reasoning
    usage_source: str | None
    credits: int
    status: int
    error_code: str | None
    latency_ms: int
    api_key_id: str | None
    team_id: str | None


_USER_SELECT = """select l.id::text as id, l.request_id::text as request_id, l.created_at, l.mode, l.provider,
       l.model, l.task, l.tokens_in, l.tokens_out, l.cached_tokens, l.cache_write_tokens, l.reasoning_tokens,
       l.usage_source, l.credits, l.status, l.error_code, l.latency_ms,
       l.api_key_id::text as api_key_id, l.team_id::text as team_id
  from public.llm_request_logs l"""


def _user_where(user_id: str, since: datetime, until: datetime, api_key_id: str | None) -> tuple[str, list[Any]]:
    # user_id explicitly, not only RLS: a team admin may read the team's rows too, and "my requests" are mine.
    where = "l.user_id = %s and l.created_at >= %s and l.created_at < %s"
    params: list[Any] = [user_id, since, until]
    if api_key_id:
        where += " and l.api_key_id = %s"
        params.append(api_key_id)
    return where, params


def user_page(conn: psycopg.Connection, user_id: str, since: datetime, until: datetime, limit: int,
              cursor: tuple[datetime, str] | None = None, newer: bool = False,
              api_key_id: str | None = None) -> list[UserRequest]:
    """Up to `limit` of the user's requests in [since, until), newest first: older than `cursor` (a row's
    (created_at, id)), or with `newer`, the ones just newer than it."""
    where, params = _user_where(user_id, since, until, api_key_id)
    order = "desc"
    if cursor is not None:
        # The plain bound on created_at lets the (user_id, created_at) index start at the cursor; the row
        # comparison then breaks ties on id.
        op = ">" if newer else "<"
        where += f" and l.created_at {op}= %s and (l.created_at, l.id) {op} (%s, %s::uuid)"
        params += [cursor[0], cursor[0], cursor[1]]
        order = "asc" if newer else "desc"
    with conn.cursor(row_factory=class_row(UserRequest)) as cur:
        cur.execute(f"{_USER_SELECT} where {where} order by l.created_at {order}, l.id {order} limit %s",
                    [*params, limit])
        rows = cur.fetchall()
    return rows[::-1] if order == "asc" else rows


def stream_user_requests(conn: psycopg.Connection, user_id: str, since: datetime, until: datetime,
                         api_key_id: str | None = None) -> Iterator[UserRequest]:
    """Every one of the user's requests in [since, until), newest first, BATCH rows per round trip. The caller
    holds the transaction open while it iterates."""
    where, params = _user_where(user_id, since, until, api_key_id)
    with conn.cursor("user_requests_export", row_factory=class_row(UserRequest)) as cur:
        cur.itersize = BATCH
        cur.execute(f"{_USER_SELECT} where {where} order by l.created_at desc, l.id desc", params)
        yield from cur


def stream_admin_logs(conn: psycopg.Connection, f: admin_repo.LogFilter) -> Iterator[admin_repo.LogEntry]:
    """Service role (emails). Every log row matching the admin filter, newest first, BATCH rows per round trip."""
    where, params = admin_repo._log_where(f)
    with conn.cursor("admin_logs_export", row_factory=class_row(admin_repo.LogEntry)) as cur:
        cur.itersize = BATCH
        cur.execute(f"{admin_repo._LOG_SELECT} where {where} order by l.created_at desc, l.id", params)
        yield from cur

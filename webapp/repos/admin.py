"""SQL for the admin panel and admin API: provider edits, admin keys, user search, credits, request logs,
analytics and the audit log.

Admin work runs in a transaction opened with `db.as_user(admin claims)`, so provider and key writes pass the
tables' RLS policies exactly as a PostgREST call would. Three things only `service_role` may do (read auth.users,
call credits_adjust, insert into admin_audit_log); for those the caller steps up with `service_role(conn)` inside
the same transaction, after `is_admin(conn)` confirmed the claims, and steps back down afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from webapp.repos.providers import Provider

PROVIDER_COLS = ("id::text as id, slug, name, api_style, base_url, default_model, enabled, credit_multiplier,"
                 " byok_allowed, custom_base_url_allowed, sort_order, free_for_byok, extra_headers, needs_key,"
                 " archived_at, responses_api")
PROVIDER_EDITABLE = ("name", "api_style", "base_url", "default_model", "enabled", "credit_multiplier",
                     "byok_allowed", "custom_base_url_allowed", "sort_order", "free_for_byok", "extra_headers",
                     "needs_key", "responses_api")


# -- role ---------------------------------------------------------------------------------------------------------

def is_admin(conn: psycopg.Connection) -> bool:
    """What the database itself thinks of the transaction's claims (public.is_admin(), as the policies use)."""
    row = conn.execute("select public.is_admin()").fetchone()
    return bool(row and row[0])


@contextmanager
def service_role(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Run the block as service_role inside the caller's transaction, then return to the previous role."""
    row = conn.execute("select current_setting('role')").fetchone()
    previous = str(row[0]) if row else "authenticated"
    conn.execute("select set_config('role', 'service_role', true)")
    try:
        yield conn
    finally:
        # An aborted transaction rolls back the role with everything else; only a live one needs restoring.
        if conn.info.transaction_status != pq.TransactionStatus.INERROR:
            conn.execute("select set_config('role', %s, true)", [previous])


# -- providers and rates ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    id: str
    provider_id: str
    model: str
    input_rate: int
    output_rate: int
    context_window: int
    max_output_tokens: int
    cached_input_rate: int | None = None  # None: the input rate
    enabled: bool = True
    kind: str = "chat"  # "chat" or "embedding"
    cache_write_rate: int | None = None  # None: the input rate


def get_provider(conn: psycopg.Connection, provider_id: str, *, lock: bool = False) -> Provider | None:
    with conn.cursor(row_factory=class_row(Provider)) as cur:
        cur.execute(f"select {PROVIDER_COLS} from public.llm_providers where id = %s"
                    + (" for update" if lock else ""), [provider_id])
        return cur.fetchone()


def update_provider(conn: psycopg.Connection, provider_id: str, values: dict[str, Any]) -> Provider | None:
    """Update the given editable columns; None when RLS (or a missing row) left nothing to update."""
    cols = [c for c in PROVIDER_EDITABLE if c in values]
    if not cols:
        return get_provider(conn, provider_id)
    assignments = ", ".join(f"{c} = %s" for c in cols)
    params = [Jsonb(values[c]) if c == "extra_headers" else values[c] for c in cols]
    with conn.cursor(row_factory=class_row(Provider)) as cur:
        cur.execute(f"update public.llm_providers set {assignments} where id = %s returning {PROVIDER_COLS}",
                    [*params, provider_id])
        return cur.fetchone()


def rates(conn: psycopg.Connection, provider_id: str | None = None) -> list[Rate]:
    where = "where provider_id = %s" if provider_id else ""
    with conn.cursor(row_factory=class_row(Rate)) as cur:
        cur.execute("select id::text as id, provider_id::text as provider_id, model, input_rate, output_rate,"
                    " context_window, max_output_tokens, cached_input_rate, enabled, kind, cache_write_rate"
                    f" from public.llm_model_rates {where} order by model",
                    [provider_id] if provider_id else [])
        return cur.fetchall()


def upsert_rate(conn: psycopg.Connection, provider_id: str, model: str, input_rate: int, output_rate: int,
                context_window: int, max_output_tokens: int, cached_input_rate: int | None = None,
                enabled: bool = True, kind: str = "chat", cache_write_rate: int | None = None,
                set_cache_write: bool = False) -> None:
    """Add or change a model's rates. cache_write_rate is written only when set_cache_write (a model added without
    it costs the input rate for cache writes; a changed one keeps the rate it had)."""
    conn.execute(
        """insert into public.llm_model_rates as r (provider_id, model, input_rate, output_rate, context_window,
               max_output_tokens, cached_input_rate, enabled, kind, cache_write_rate)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           on conflict (provider_id, model) do update set input_rate = excluded.input_rate,
               output_rate = excluded.output_rate, context_window = excluded.context_window,
               max_output_tokens = excluded.max_output_tokens, cached_input_rate = excluded.cached_input_rate,
               enabled = excluded.enabled, kind = excluded.kind,
               cache_write_rate = case when %s then excluded.cache_write_rate else r.cache_write_rate end""",
        [provider_id, model, input_rate, output_rate, context_window, max_output_tokens, cached_input_rate,
         enabled, kind, cache_write_rate if set_cache_write else None, set_cache_write])


def delete_rate(conn: psycopg.Connection, provider_id: str, rate_id: str) -> bool:
    cur = conn.execute("delete from public.llm_model_rates where id = %s and provider_id = %s",
                       [rate_id, provider_id])
    return cur.rowcount > 0


def delete_rates_except(conn: psycopg.Connection, provider_id: str, keep_models: Sequence[str]) -> None:
    conn.execute("delete from public.llm_model_rates where provider_id = %s and not (model = any(%s))",
                 [provider_id, list(keep_models)])


# -- admin keys ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdminKeyInfo:
    """What an admin may see of a stored key: never the ciphertext."""

    id: str
    provider_id: str
    key_id: str
    last4: str
    label: str
    active: bool
    created_at: datetime
    revoked_at: datetime | None
    requests: int
    last_used_at: datetime | None

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.active else "superseded"


_KEY_COLS = ("k.id::text as id, k.provider_id::text as provider_id, k.key_id, k.last4, k.label, k.active,"
             " k.created_at, k.revoked_at,"
             " coalesce((select sum(u.requests) from public.usage_admin_keys u where u.admin_key_id = k.id), 0)::int"
             " as requests,"
             " (select max(u.last_at) from public.usage_admin_keys u where u.admin_key_id = k.id) as last_used_at")


def admin_keys(conn: psycopg.Connection, provider_id: str | None = None) -> list[AdminKeyInfo]:
    """Newest first; the request counts and last use come from the usage_admin_keys rollup."""
    where = "where k.provider_id = %s" if provider_id else ""
    with conn.cursor(row_factory=class_row(AdminKeyInfo)) as cur:
        cur.execute(f"select {_KEY_COLS} from public.llm_admin_keys k {where} order by k.created_at desc, k.id",
                    [provider_id] if provider_id else [])
        return cur.fetchall()


def admin_key(conn: psycopg.Connection, provider_id: str, key_row_id: str) -> AdminKeyInfo | None:
    with conn.cursor(row_factory=class_row(AdminKeyInfo)) as cur:
        cur.execute(f"select {_KEY_COLS} from public.llm_admin_keys k where k.id = %s and k.provider_id = %s",
                    [key_row_id, provider_id])
        return cur.fetchone()


def insert_admin_key(conn: psycopg.Connection, provider_id: str, ciphertext: str, kid: str, last4: str,
                     label: str, created_by: str) -> str:
    row = conn.execute(
        """insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label, active, created_by)
           values (%s, %s, %s, %s, %s, true, %s) returning id::text""",
        [provider_id, ciphertext, kid, last4, label, created_by]).fetchone()
    assert row is not None
    return str(row[0])


def supersede_keys(conn: psycopg.Connection, provider_id: str, keep_id: str) -> list[str]:
    """Mark every other active key of the provider inactive (kept, no longer served, until revoked)."""
    rows = conn.execute(
        """update public.llm_admin_keys set active = false
           where provider_id = %s and id <> %s and active and revoked_at is null returning id::text""",
        [provider_id, keep_id]).fetchall()
    return [str(r[0]) for r in rows]


def revoke_key(conn: psycopg.Connection, provider_id: str, key_row_id: str) -> bool:
    cur = conn.execute(
        """update public.llm_admin_keys set active = false, revoked_at = now()
           where id = %s and provider_id = %s and revoked_at is null""", [key_row_id, provider_id])
    return cur.rowcount > 0


def env_key_requests(conn: psycopg.Connection) -> dict[str, int]:
    """Requests served with a key from the environment, by provider slug."""
    rows = conn.execute("select provider, sum(requests)::bigint from public.usage_admin_keys"
                        " where key_source = 'admin_env' and provider <> '' group by provider").fetchall()
    return {str(r[0]): int(r[1]) for r in rows if r[0]}


# -- users and credits (service role) -----------------------------------------------------------------------------

@dataclass(frozen=True)
class UserRow:
    id: str
    email: str
    is_admin: bool
    balance: int
    created_at: datetime | None
    last_sign_in_at: datetime | None


@dataclass(frozen=True)
class LedgerRow:
    id: int
    kind: str
    delta: int
    balance_after: int
    request_id: str | None
    reason: str
    actor_email: str | None
    created_at: datetime


_USER_COLS = ("u.id::text as id, coalesce(u.email, '') as email,"
              " coalesce(u.raw_app_meta_data ->> 'role', '') = 'admin' as is_admin,"
              " coalesce(c.balance, 0) as balance, u.created_at, u.last_sign_in_at")


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_users(conn: psycopg.Connection, query: str, limit: int) -> list[UserRow]:
    """Service role: users whose email contains `query` (all users, newest first, when it is empty)."""
    with conn.cursor(row_factory=class_row(UserRow)) as cur:
        cur.execute(f"""select {_USER_COLS} from auth.users u left join public.credit_accounts c on c.user_id = u.id
                        where u.deleted_at is null and (%(q)s = '' or u.email ilike %(like)s)
                        order by (lower(u.email) = lower(%(q)s)) desc,
                                 case when %(q)s = '' then u.created_at end desc nulls last, u.email
                        limit %(limit)s""",
                    {"q": query, "like": _like(query), "limit": limit})
        return cur.fetchall()


def get_user(conn: psycopg.Connection, user_id: str) -> UserRow | None:
    """Service role."""
    with conn.cursor(row_factory=class_row(UserRow)) as cur:
        cur.execute(f"""select {_USER_COLS} from auth.users u left join public.credit_accounts c on c.user_id = u.id
                        where u.id = %s and u.deleted_at is null""", [user_id])
        return cur.fetchone()


def user_ids_by_email(conn: psycopg.Connection, email: str) -> list[str]:
    """Service role."""
    rows = conn.execute("select id::text from auth.users where email ilike %s", [_like(email)]).fetchall()
    return [str(r[0]) for r in rows]


def ledger(conn: psycopg.Connection, user_id: str, limit: int) -> list[LedgerRow]:
    """Service role (the actor's email comes from auth.users)."""
    with conn.cursor(row_factory=class_row(LedgerRow)) as cur:
        cur.execute("""select l.id, l.kind, l.delta, l.balance_after, l.request_id::text as request_id, l.reason,
                              a.email as actor_email, l.created_at
                       from public.credit_ledger l left join auth.users a on a.id = l.actor_id
                       where l.user_id = %s order by l.id desc limit %s""", [user_id, limit])
        return cur.fetchall()


# -- request logs -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogFilter:
    user_ids: list[str] | None = None  # None: any user; []: nobody matched the user filter
    provider: str | None = None
    mode: str | None = None
    status: str | None = None  # "ok", "error" or a three-digit status
    start: date | None = None
    end_exclusive: date | None = None
    api_key_id: str | None = None  # requests made with this personal API key


@dataclass(frozen=True)
class LogEntry:
    id: str
    request_id: str
    user_id: str
    email: str | None
    mode: str
    provider: str | None
    model: str | None
    task: str | None
    key_source: str | None
    admin_key_id: str | None
    admin_key_last4: str | None
    admin_key_label: str | None
    tokens_in: int
    tokens_out: int
    usage_source: str | None
    credits: int
    multiplier: Decimal | None
    fallback_path: list[str]
    stream: bool
    status: int
    error_code: str | None
    latency_ms: int
    created_at: datetime
    api_key_id: str | None = None  # the personal API key the request came with
    api_key_name: str | None = None
    api_key_prefix: str | None = None
    cached_tokens: int = 0  # of tokens_in: read from the provider's cache
    cache_write_tokens: int = 0  # of tokens_in: written to the provider's cache
    reasoning_tokens: int = 0  # of tokens_out: hidden reasoning


_LOG_SELECT = """select l.id::text as id, l.request_id::text as request_id, l.user_id::text as user_id,
       u.email, l.mode, l.provider, l.model, l.task, l.key_source, l.admin_key_id::text as admin_key_id,
       k.last4 as admin_key_last4, k.label as admin_key_label, l.tokens_in, l.tokens_out, l.usage_source,
       l.credits, l.multiplier, l.fallback_path, l.stream, l.status, l.error_code, l.latency_ms, l.created_at,
       l.api_key_id::text as api_key_id, ak.name as api_key_name, ak.prefix as api_key_prefix,
       l.cached_tokens, l.cache_write_tokens, l.reasoning_tokens
  from public.llm_request_logs l
  left join auth.users u on u.id = l.user_id
  left join public.llm_admin_keys k on k.id = l.admin_key_id
  left join public.api_keys ak on ak.id = l.api_key_id"""


def _log_where(f: LogFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = ["true"]
    params: list[Any] = []
    if f.user_ids is not None:
        clauses.append("l.user_id = any(%s::uuid[])")
        params.append(f.user_ids)
    if f.provider:
        clauses.append("l.provider = %s")
        params.append(f.provider)
    if f.mode:
        clauses.append("l.mode = %s")
        params.append(f.mode)
    if f.api_key_id:
        clauses.append("l.api_key_id = %s")
        params.append(f.api_key_id)
    if f.status == "ok":
        clauses.append("l.status < 400")
    elif f.status == "error":
        clauses.append("l.status >= 400")
    elif f.status:  # a literal (three digits, checked): a 4xx/5xx then matches the partial errors index's predicate
        clauses.append(f"l.status = {int(f.status)}")
    if f.start:
        clauses.append("l.created_at >= %s")
        params.append(f.start)
    if f.end_exclusive:
        clauses.append("l.created_at < %s")
        params.append(f.end_exclusive)
    return " and ".join(clauses), params


COUNT_CAP = 10_000  # beyond this many matches a page says "10,000+" instead of counting every row


def count_logs(conn: psycopg.Connection, f: LogFilter) -> int:
    """Rows matching the filter, counted exactly up to COUNT_CAP; COUNT_CAP + 1 means more."""
    where, params = _log_where(f)
    row = conn.execute(f"select count(*) from (select 1 from public.llm_request_logs l where {where}"
                       f" limit {COUNT_CAP + 1}) c", params).fetchone()
    return int(row[0]) if row else 0


def search_logs(conn: psycopg.Connection, f: LogFilter, limit: int, offset: int = 0, *,
                before: tuple[datetime, str] | None = None, after: tuple[datetime, str] | None = None
                ) -> tuple[list[LogEntry], int]:
    """Service role (emails). Newest first, (created_at, id) descending: the rows older than the `before` cursor,
    or newer than `after`, or from `offset`; with the count of matches (capped: see count_logs)."""
    where, params = _log_where(f)
    order = "l.created_at desc, l.id desc"
    if before is not None:
        where, params = f"{where} and (l.created_at, l.id) < (%s, %s::uuid)", [*params, *before]
    elif after is not None:
        where, params, order = f"{where} and (l.created_at, l.id) > (%s, %s::uuid)", [*params, *after], \
            "l.created_at, l.id"
    with conn.cursor(row_factory=class_row(LogEntry)) as cur:
        cur.execute(f"{_LOG_SELECT} where {where} order by {order} limit %s offset %s",
                    [*params, limit, 0 if before or after else offset])
        rows = cur.fetchall()
    if after is not None:
        rows.reverse()
    return rows, count_logs(conn, f)


def get_log(conn: psycopg.Connection, request_id: str) -> LogEntry | None:
    """Service role."""
    with conn.cursor(row_factory=class_row(LogEntry)) as cur:
        cur.execute(f"{_LOG_SELECT} where l.request_id = %s", [request_id])
        return cur.fetchone()


def log_providers(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("select slug from public.llm_providers order by sort_order, slug").fetchall()
    return [str(r[0]) for r in rows]


# -- analytics ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DayTotals:
    day: date
    requests: int
    tokens: int
    credits: int
    errors: int


@dataclass(frozen=True)
class GroupTotals:
    key: str
    requests: int
    tokens_in: int
    tokens_out: int
    credits: int
    errors: int


@dataclass(frozen=True)
class UserTotals:
    user_id: str
    email: str | None
    requests: int
    tokens: int
    credits: int


@dataclass(frozen=True)
class Shortfalls:
    requests: int
    uncollected: int  # micro-credits the settles could not collect (usage above reservation and balance)
    corrected: int  # requests whose upstream usage numbers could not be true and were replaced


# The analytics themselves read the rollups: webapp/repos/rollups.py.


# -- audit --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditEntry:
    id: int
    actor_id: str | None
    actor_email: str | None
    action: str
    target: str
    before: Any
    after: Any
    created_at: datetime


def insert_audit(conn: psycopg.Connection, actor_id: str | None, action: str, target: str, before: Any,
                 after: Any) -> None:
    """Only service_role may insert audit rows: step up for this one statement, in the caller's transaction."""
    with service_role(conn):
        conn.execute("""insert into public.admin_audit_log (actor_id, action, target, before, after)
                        values (%s, %s, %s, %s::jsonb, %s::jsonb)""",
                     [actor_id, action, target, _json(before), _json(after)])


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


def audit_entries(conn: psycopg.Connection, limit: int, offset: int, action: str | None = None
                  ) -> tuple[list[AuditEntry], int]:
    """Service role (actor emails). Newest first."""
    where = "where a.action like %s" if action else ""
    params: list[Any] = [action.replace("%", "") + "%"] if action else []
    total = conn.execute(f"select count(*) from public.admin_audit_log a {where}", params).fetchone()
    with conn.cursor(row_factory=class_row(AuditEntry)) as cur:
        cur.execute(f"""select a.id, a.actor_id::text as actor_id, u.email as actor_email, a.action, a.target,
                               a.before, a.after, a.created_at
                        from public.admin_audit_log a left join auth.users u on u.id = a.actor_id
                        {where} order by a.id desc limit %s offset %s""", [*params, limit, offset])
        rows = cur.fetchall()
    return rows, int(total[0]) if total else 0


# -- encryption-key rotation (service role) -----------------------------------------------------------------------

@dataclass(frozen=True)
class StoredSecret:
    # "llm_admin_keys", "user_provider_keys", "webhook_endpoints" (a signing secret) or "webhook_endpoints.previous"
    # (the secret a rotation replaced, still signing for a day)
    table: str
    id: str
    provider_id: str | None
    user_id: str | None
    ciphertext: str


def stored_secrets(conn: psycopg.Connection) -> list[StoredSecret]:
    """Service role: every stored key, admin and BYOK, locked until the transaction ends."""
    out: list[StoredSecret] = []
    for r in conn.execute("select id::text, provider_id::text, ciphertext from public.llm_admin_keys"
                          " order by created_at, id for update").fetchall():
        out.append(StoredSecret("llm_admin_keys", r[0], r[1], None, r[2]))
    for r in conn.execute("select id::text, provider_id::text, user_id::text, ciphertext from"
                          " public.user_provider_keys order by created_at, id for update").fetchall():
        out.append(StoredSecret("user_provider_keys", r[0], r[1], r[2], r[3]))
    for r in conn.execute("select id::text, secret_ciphertext, case when previous_secret_expires_at > now()"
                          " then previous_secret_ciphertext end from public.webhook_endpoints"
                          " order by created_at, id for update").fetchall():
        out.append(StoredSecret("webhook_endpoints", r[0], None, None, r[1]))
        if r[2]:
            out.append(StoredSecret("webhook_endpoints.previous", r[0], None, None, r[2]))
    return out


def replace_ciphertext(conn: psycopg.Connection, secret: StoredSecret, ciphertext: str, kid: str) -> None:
    if secret.table == "webhook_endpoints":
        conn.execute("update public.webhook_endpoints set secret_ciphertext = %s, secret_key_id = %s where id = %s",
                     [ciphertext, kid, secret.id])
        return
    if secret.table == "webhook_endpoints.previous":
        conn.execute("update public.webhook_endpoints set previous_secret_ciphertext = %s where id = %s",
                     [ciphertext, secret.id])
        return
    table = {"llm_admin_keys": "public.llm_admin_keys", "user_provider_keys": "public.user_provider_keys"}
    conn.execute(f"update {table[secret.table]} set ciphertext = %s, key_id = %s where id = %s",
                 [ciphertext, kid, secret.id])

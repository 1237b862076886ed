"""What migrations 20261202100000/100100 changed for the hot path's Postgres time, held to the same behaviour: the
wallet lock still makes a missing account; the receipt row (request_log_insert, now PL/pgSQL) keeps every field and
is written once per request id; the ledger's readers still read one index range in order after its unused index was
dropped; no function on the member path is LANGUAGE sql (a SQL function called from PL/pgSQL is planned on every
call); the rollups a receipt row cannot touch stay untouched and the ones it can are exact."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import psycopg

from webapp.db import Database
from webapp.repos import credits
from webapp.repos import users as users_repo

HOT_PATH = ("gateway_begin", "gateway_close", "gateway_admit", "principal_status", "api_key_principal",
            "credits_reserve_flex", "credits_settle", "credits_settle_logged", "credits_refund_logged",
            "credits_lock_account", "team_credits_lock", "credits_cap_used", "request_log_insert",
            "usage_rollup_row", "usage_rollup_apply", "cap_tally_on_reservation", "cap_tally_add",
            "notify_caps_on_settle", "notify_low_balance")


def new_user(db: Database) -> str:
    with db.as_service() as conn:
        return users_repo.create(conn, f"hpc-{uuid.uuid4().hex[:12]}@example.test", "correct horse battery").id


def test_the_wallet_lock_makes_a_missing_account_once(db: Database, admin_conn: psycopg.Connection) -> None:
    uid = new_user(db)
    admin_conn.execute("delete from public.credit_accounts where user_id = %s", [uid])
    with db.as_service() as conn:
        assert conn.execute("select public.credits_lock_account(%s)", [uid]).fetchone() == (0,)
        assert conn.execute("select public.credits_lock_account(%s)", [uid]).fetchone() == (0,)
    rows = admin_conn.execute("select balance from public.credit_accounts where user_id = %s", [uid]).fetchall()
    assert rows == [(0,)]
    with db.as_service() as conn:
        credits.adjust(conn, uid, 7, "grant", None)
        assert conn.execute("select public.credits_lock_account(%s)", [uid]).fetchone() == (7,)


def test_the_receipt_row_keeps_every_field_and_is_written_once(db: Database, admin_conn: psycopg.Connection) -> None:
    uid = new_user(db)
    request_id = str(uuid.uuid4())
    log = {"request_id": request_id, "user_id": uid, "mode": "member", "status": 200, "provider": "p'; --",
           "model": "m", "task": "code", "key_source": "admin_env", "admin_key_id": None, "tokens_in": 11,
           "tokens_out": 7, "usage_source": "corrected", "credits": 999, "multiplier": "1.2500",
           "fallback_path": ["a:502", "b:ok"], "stream": True, "error_code": None, "latency_ms": 42,
           "output_limit": 64, "shortfall": 999, "api_key_id": None, "team_id": None, "cached_tokens": 3,
           "cache_write_tokens": 2, "reasoning_tokens": 5}
    with db.as_service() as conn:
        conn.execute("select public.request_log_insert(%s::jsonb, 120, 4)", [json.dumps(log)])
        conn.execute("select public.request_log_insert(%s::jsonb, 500, 0)", [json.dumps({**log, "status": 502})])
    rows = admin_conn.execute(
        """select user_id::text, mode, status, provider, model, task, key_source, admin_key_id, tokens_in, tokens_out,
                  usage_source, credits, multiplier, fallback_path, stream, error_code, latency_ms, output_limit,
                  shortfall, cached_tokens, cache_write_tokens, reasoning_tokens
           from public.llm_request_logs where request_id = %s""", [request_id]).fetchall()
    assert rows == [(uid, "member", 200, "p'; --", "m", "code", "admin_env", None, 11, 7, "corrected", 120,
                     Decimal("1.2500"), ["a:502", "b:ok"], True, None, 42, 64, 4, 3, 2, 5)]
    daily = admin_conn.execute("select sum(requests), sum(credits) from public.usage_daily where user_id = %s",
                               [uid]).fetchone()
    assert daily == (1, 120)


def test_a_member_success_touches_only_its_rollups(db: Database, admin_conn: psycopg.Connection) -> None:
    uid = new_user(db)
    day_codes = admin_conn.execute("select count(*), coalesce(sum(requests), 0) from public.usage_daily_errors"
                                   ).fetchone()
    byok = admin_conn.execute("select count(*), coalesce(sum(requests), 0) from public.usage_daily_byok_models"
                              ).fetchone()
    teams = admin_conn.execute("select count(*), coalesce(sum(requests), 0) from public.usage_daily_teams").fetchone()
    base = {"user_id": uid, "mode": "member", "provider": "p", "model": "m", "key_source": "admin_env",
            "tokens_in": 1, "tokens_out": 1, "latency_ms": 1, "stream": False, "usage_source": "measured",
            "shortfall": 0, "credits": 0}
    with db.as_service() as conn:
        conn.execute("select public.request_log_insert(%s::jsonb, 3, 0)",
                     [json.dumps({**base, "request_id": str(uuid.uuid4()), "status": 200})])
    assert admin_conn.execute("select count(*), coalesce(sum(requests), 0) from public.usage_daily_errors"
                              ).fetchone() == day_codes
    assert admin_conn.execute("select count(*), coalesce(sum(requests), 0) from public.usage_daily_byok_models"
                              ).fetchone() == byok
    assert admin_conn.execute("select count(*), coalesce(sum(requests), 0) from public.usage_daily_teams"
                              ).fetchone() == teams
    # ... and a failed one counts under its code, once.
    with db.as_service() as conn:
        conn.execute("select public.request_log_insert(%s::jsonb, 0, 0)",
                     [json.dumps({**base, "request_id": str(uuid.uuid4()), "status": 503,
                                  "error_code": f"hpc_{uuid.uuid4().hex[:8]}"})])
    after = admin_conn.execute("select count(*), coalesce(sum(requests), 0) from public.usage_daily_errors"
                               ).fetchone()
    assert after is not None and day_codes is not None
    assert (after[0] - day_codes[0], after[1] - day_codes[1]) == (1, 1)


def test_the_ledger_readers_read_one_index_range_in_order(admin_conn: psycopg.Connection) -> None:
    indexes = {r[0] for r in admin_conn.execute(
        "select indexname from pg_indexes where schemaname = 'public' and tablename = 'credit_ledger'")}
    assert "credit_ledger_user_idx" not in indexes
    assert "credit_ledger_user_id_idx" in indexes
    for cursor in (None, 2**62):  # the first page, and a page before a cursor
        with admin_conn.transaction():
            # A test database is too small for the planner to need an index: forbid what a big ledger rules out.
            admin_conn.execute("set local enable_seqscan = off; set local enable_bitmapscan = off;"
                               " set local enable_sort = off")
            plan = "\n".join(r[0] for r in admin_conn.execute(
                """explain select id, kind, delta, balance_after, request_id::text, reason, uncollected, created_at
                   from public.credit_ledger where user_id = %s and (%s::bigint is null or id < %s::bigint)
                   order by id desc limit 50""", [str(uuid.uuid4()), cursor, cursor]))
        assert "credit_ledger_user_id_idx" in plan and "Sort" not in plan, plan


def test_no_function_on_the_member_path_is_planned_per_call(admin_conn: psycopg.Connection) -> None:
    rows = admin_conn.execute(
        """select p.proname, l.lanname from pg_proc p join pg_language l on l.oid = p.prolang
           join pg_namespace n on n.oid = p.pronamespace
           where n.nspname in ('public', 'private') and p.proname = any(%s)""", [list(HOT_PATH)]).fetchall()
    assert {name for name, _ in rows} == set(HOT_PATH)
    assert [name for name, lang in rows if lang != "plpgsql"] == []


def test_the_stream_count_reads_the_index_not_every_dead_row(admin_conn: psycopg.Connection) -> None:
    """gateway_admit keeps `enable_bitmapscan = off` (migration 20261202100200): a `create or replace` that drops the
    setting would bring back a bitmap scan that visits every dead stream row of the user on every request."""
    row = admin_conn.execute("select proconfig from pg_proc where oid = 'public.gateway_admit(uuid, integer, uuid,"
                             " integer, integer)'::regprocedure").fetchone()
    assert row is not None and "enable_bitmapscan=off" in row[0]
    with admin_conn.transaction():
        admin_conn.execute("set local enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in admin_conn.execute(
            "explain select count(*) from public.active_streams where user_id = %s", [str(uuid.uuid4())]))
    assert "Index" in plan and "Bitmap" not in plan

"""Usage rollups: the migration backfills a database that already holds log rows, and the trigger keeps every
rollup equal to a GROUP BY of the log on both write paths (the member receipt and the BYOK log writer)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.support.dbsetup import admin_base
from webapp import migrate

ROLLUPS = "20261201100000"

# What each rollup must equal, as a GROUP BY of the log (ordered, so two runs compare as lists).
EXPECTED = {
    "usage_daily": """
        select (created_at at time zone 'utc')::date, user_id, team_id, api_key_id, coalesce(provider, ''),
               coalesce(model, ''), mode, (status / 100)::smallint, count(*), sum(tokens_in), sum(tokens_out),
               sum(credits), sum(latency_ms), sum(cached_tokens), sum(cache_write_tokens), sum(reasoning_tokens)
        from public.llm_request_logs group by 1, 2, 3, 4, 5, 6, 7, 8 order by 1, 2, 3, 4, 5, 6, 7, 8""",
    "usage_monthly_users": """
        select date_trunc('month', created_at at time zone 'utc')::date, user_id, count(*),
               sum(tokens_in + tokens_out), sum(credits)
        from public.llm_request_logs group by 1, 2 order by 1, 2""",
    "usage_daily_teams": """
        select (created_at at time zone 'utc')::date, team_id, count(*), sum(tokens_in), sum(tokens_out),
               sum(credits), count(*) filter (where status >= 400)
        from public.llm_request_logs where team_id is not null group by 1, 2 order by 1, 2""",
    "usage_daily_platform": """
        select (created_at at time zone 'utc')::date, coalesce(provider, ''), mode, (status / 100)::smallint,
               count(*), sum(tokens_in), sum(tokens_out), sum(credits), sum(latency_ms), sum(shortfall),
               count(*) filter (where shortfall > 0), count(*) filter (where usage_source = 'corrected'),
               sum(cached_tokens), sum(reasoning_tokens)
        from public.llm_request_logs group by 1, 2, 3, 4 order by 1, 2, 3, 4""",
    "usage_daily_errors": """
        select (created_at at time zone 'utc')::date, coalesce(error_code, 'http_' || status::text), count(*)
        from public.llm_request_logs where status >= 400 group by 1, 2 order by 1, 2""",
    "usage_daily_byok_models": """
        select (created_at at time zone 'utc')::date, provider, model, count(*), sum(tokens_in), sum(tokens_out)
        from public.llm_request_logs where mode = 'byok' and status < 400 and provider is not null
        group by 1, 2, 3 order by 1, 2, 3""",
    "usage_admin_keys": """
        select key_source, coalesce(provider, ''), admin_key_id, count(*), max(created_at)
        from public.llm_request_logs where key_source in ('admin_db', 'admin_env')
        group by 1, 2, 3 order by 1, 2, 3""",
}
ACTUAL = {
    "usage_daily": """
        select day, user_id, team_id, api_key_id, provider, model, mode, status_class, requests, tokens_in,
               tokens_out, credits, latency_ms, cached_tokens, cache_write_tokens, reasoning_tokens
        from public.usage_daily order by 1, 2, 3, 4, 5, 6, 7, 8""",
    "usage_monthly_users": "select month, user_id, requests, tokens, credits from public.usage_monthly_users"
                           " order by 1, 2",
    "usage_daily_teams": "select day, team_id, requests, tokens_in, tokens_out, credits, errors"
                         " from public.usage_daily_teams order by 1, 2",
    # The shards are summed away: they only spread row locks.
    "usage_daily_platform": """
        select day, provider, mode, status_class, sum(requests), sum(tokens_in), sum(tokens_out), sum(credits),
               sum(latency_ms), sum(shortfall), sum(shortfall_requests), sum(corrected_requests), sum(cached_tokens),
               sum(reasoning_tokens)
        from public.usage_daily_platform group by 1, 2, 3, 4 order by 1, 2, 3, 4""",
    "usage_daily_errors": "select day, code, requests from public.usage_daily_errors order by 1, 2",
    "usage_daily_byok_models": "select day, provider, model, requests, tokens_in, tokens_out"
                               " from public.usage_daily_byok_models order by 1, 2, 3",
    "usage_admin_keys": """
        select key_source, provider, admin_key_id, sum(requests), max(last_at) from public.usage_admin_keys
        group by 1, 2, 3 order by 1, 2, 3""",
}


def assert_rollups_match_log(conn: psycopg.Connection, *, last_use: bool = True) -> None:
    """last_use=False: a key's last use is a running maximum, not taken back when a receipt is moved earlier."""
    for table, expected in EXPECTED.items():
        want = [tuple(int(v) if hasattr(v, "as_integer_ratio") and not isinstance(v, float) else v for v in r)
                for r in conn.execute(expected).fetchall()]
        got = [tuple(int(v) if hasattr(v, "as_integer_ratio") and not isinstance(v, float) else v for v in r)
               for r in conn.execute(ACTUAL[table]).fetchall()]
        if table == "usage_admin_keys" and not last_use:
            got, want = [r[:-1] for r in got], [r[:-1] for r in want]
        assert got == want, table


@pytest.fixture()
def fresh_db(tmp_path: Path) -> Iterator[str]:
    """A database of its own with every migration before the rollups applied."""
    name = f"switchboard_rollups_{uuid.uuid4().hex[:8]}"
    base = admin_base()
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = f"{base}/{name}"
    before = tmp_path / "before"
    before.mkdir()
    for version, _name, path in migrate.migration_files():
        if version < ROLLUPS:
            shutil.copy(path, before / path.name)
    try:
        with migrate.connect_admin(url) as conn:
            migrate.apply_platform(conn)
            migrate.upgrade(conn, before)
        yield url
    finally:
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _user(conn: psycopg.Connection, email: str) -> str:
    row = conn.execute("insert into auth.users (id, email) values (gen_random_uuid(), %s) returning id::text",
                       [email]).fetchone()
    assert row is not None
    return str(row[0])


def _log_rows(conn: psycopg.Connection, users: list[str], team: str | None, key: str | None) -> None:
    """A spread of receipts over several days and months, every status class, both modes, null provider too."""
    rows: list[tuple[Any, ...]] = []
    for i in range(120):
        user = users[i % len(users)]
        status = (200, 200, 200, 402, 429, 502)[i % 6]
        rows.append((user, "member" if i % 3 else "byok", None if i == 7 else ("openai", "groq")[i % 2],
                     ("gpt-4o-mini", "llama")[i % 2], ("admin_db", "admin_env", "byok_stored")[i % 3],
                     10 + i, 5 + i, (i * 1000) if i % 3 else 0, status,
                     None if status < 400 else f"e{status}", 30 + i, 7 if i % 11 == 0 else 0,
                     "corrected" if i % 13 == 0 else "measured",
                     team if i % 4 == 0 else None, key if i % 5 == 0 else None, f"{i * 3 + i % 5} days"))
    with conn.cursor() as cur:
        cur.executemany(
            """insert into public.llm_request_logs (request_id, user_id, mode, provider, model, key_source,
                   tokens_in, tokens_out, credits, status, error_code, latency_ms, shortfall, usage_source,
                   team_id, api_key_id, created_at, cached_tokens, cache_write_tokens, reasoning_tokens)
               values (gen_random_uuid(), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                       now() - %s::interval, %s, %s, %s)""", [(*r, i % 4, i % 3, i % 5) for i, r in enumerate(rows)])


def test_migration_backfills_rollups_from_existing_log_rows(fresh_db: str) -> None:
    with migrate.connect_admin(fresh_db) as conn:
        users = [_user(conn, f"r{i}@example.test") for i in range(3)]
        team = conn.execute("insert into public.teams (slug, name) values ('rollup-team', 'Rollup team')"
                            " returning id::text").fetchone()
        key = conn.execute("insert into public.api_keys (user_id, name, prefix, hash) values (%s, 'k',"
                           " 'abcdefabcdef', repeat('a', 64)) returning id::text", [users[0]]).fetchone()
        assert team and key
        _log_rows(conn, users, str(team[0]), str(key[0]))
        assert ROLLUPS in migrate.upgrade(conn)
        assert conn.execute("select count(*) from public.usage_daily").fetchone() != (0,)
        assert_rollups_match_log(conn)
        # And from here on the trigger keeps them equal, a retried receipt (same request id) counted once.
        rid = str(uuid.uuid4())
        for _ in range(2):
            conn.execute("""insert into public.llm_request_logs (request_id, user_id, mode, provider, model,
                                status, tokens_in, tokens_out, credits, team_id)
                            values (%s, %s, 'member', 'openai', 'gpt-4o-mini', 200, 3, 4, 500, %s)
                            on conflict (request_id) do nothing""", [rid, users[1], team[0]])
        _log_rows(conn, users, str(team[0]), None)
        assert_rollups_match_log(conn)
        # A changed receipt (a deleted team's id set to null, a corrected day) moves between rollup rows.
        conn.execute("update public.llm_request_logs set created_at = created_at - interval '40 days',"
                     " credits = credits + 1 where tokens_in % 7 = 0")
        conn.execute("delete from public.teams where id = %s", [team[0]])
        assert_rollups_match_log(conn, last_use=False)
        assert conn.execute("select count(*) from public.usage_daily where requests = 0").fetchone() == (0,)

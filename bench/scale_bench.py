"""Scale benchmark (issue 13): every route and page that reads usage, logs, key counts or analytics, timed through
the app at N request-log rows (default 20 million over 365 days, 20,000 users, 500 teams, a personal API key each).

    .venv/bin/python bench/scale_bench.py                 # 20M rows (builds the database once, ~30-60 min here)
    .venv/bin/python bench/scale_bench.py --rows 200000   # a quick run
    .venv/bin/python bench/scale_bench.py --rebuild       # drop the generated database and build it again

It builds its own database (switchboard_bench_scale_<rows>) on the project's Postgres cluster through the project's
migrations and seed, generates the rows with one INSERT ... SELECT generate_series per million (indexes, foreign
keys and the rollup trigger suspended, then the indexes rebuilt and the rollups backfilled by the migration's own
public.usage_rollups_rebuild()), and reuses that database on the next run. Then it signs a heavy user (a team owner)
and an admin in through the real forms and tokens and times each route with Flask's test client: one warm-up, then
the median of --runs. It prints a table and the verdict "every route < 150 ms median".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.dbsetup import admin_base, test_environ  # noqa: E402
from webapp import create_app, migrate  # noqa: E402
from webapp.auth.tokens import mint_access_token  # noqa: E402
from webapp.config import load_settings  # noqa: E402
from webapp.db import Database  # noqa: E402
from webapp.repos import users as users_repo  # noqa: E402
from webapp.services.admin_reports import encode_cursor  # noqa: E402

TARGET_MS = 150.0
PASSWORD = "bench horse battery staple"  # noqa: S105 (the bench users' password, a throwaway database)
USERS, TEAMS, TEAM_SIZE = 20_000, 500, 20
CHUNK = 1_000_000

# One receipt row per generate_series value (`%%`: a modulo, the query has parameters). Users are skewed (user index
# = 20000 * random()^2: the heaviest makes ~0.7 % of all requests, a long tail makes a few a month); each user uses
# three neighbouring models of the seeded catalog; one user in five is a BYOK user; 7 % of requests fail (402, 429,
# 502, 500, 400); 40 % come with the user's personal API key; half of a team member's requests are billed to the
# team; spread uniformly over `days` days.
GENERATE = """
insert into public.llm_request_logs (request_id, user_id, mode, provider, model, task, key_source, admin_key_id,
    tokens_in, tokens_out, usage_source, credits, multiplier, stream, status, error_code, latency_ms, created_at,
    api_key_id, team_id, cached_tokens, reasoning_tokens)
select gen_random_uuid(), u.id, t.mode, m.slug, m.model, 'chat', t.key_source,
       case when t.key_source = 'admin_db' then ak.id end, t.tokens_in, t.tokens_out,
       case when t.r8 < 0.9 then 'measured' else 'estimated' end,
       case when t.mode = 'member' and t.status = 200 then (t.tokens_in + 3 * t.tokens_out) * 2 else 0 end,
       case when t.mode = 'member' then 1.0 end, t.r8 < 0.5, t.status,
       case t.status when 402 then 'insufficient_credits' when 429 then 'rate_limited'
                     when 502 then 'upstream_unavailable' when 500 then 'upstream_error'
                     when 400 then 'invalid_request' end,
       50 + (t.r7 * 3000)::int, now() - t.r9 * make_interval(days => %(days)s),
       case when t.r10 < 0.4 then u.key_id end, case when t.r11 < 0.5 then u.team_id end,
       (t.tokens_in * 0.2 * t.r8)::int, (t.tokens_out * 0.1 * t.r7)::int
from (select s.*, case when s.idx %% 5 = 0 then 'byok' else 'member' end as mode,
             case when s.idx %% 5 <> 0 then case when s.r4 < 0.7 then 'admin_db' else 'admin_env' end
                  else case when s.r4 < 0.5 then 'byok_stored' else 'byok_header' end end as key_source,
             case when s.r5 < 0.93 then 200 when s.r5 < 0.95 then 402 when s.r5 < 0.97 then 429
                  when s.r5 < 0.985 then 502 when s.r5 < 0.995 then 500 else 400 end as status,
             10 + (s.r6 * s.r6 * 4000)::int as tokens_in,
             case when s.r5 < 0.93 then 1 + (s.r7 * 1500)::int else 0 end as tokens_out,
             1 + (s.idx * 7 + (s.r3 * 2.999)::int) %% (select count(*) from bench.models)::int as k
        from (select r.*, least(%(users)s - 1, (%(users)s * r.r1 * r.r1)::int) as idx
                from (select g, random() r1, random() r3, random() r4, random() r5, random() r6, random() r7,
                             random() r8, random() r9, random() r10, random() r11
                        from generate_series(1, %(n)s) g) r) s) t
join bench.users u on u.idx = t.idx
join bench.models m on m.n = t.k
left join bench.admin_keys ak on ak.slug = m.slug
"""


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


# -- the database ------------------------------------------------------------------------------------------------

def ensure_database(name: str, rebuild: bool) -> tuple[str, str]:
    """Create (or reuse) the bench database with every migration and the seed; (admin_url, app_url)."""
    base = admin_base()
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if rebuild:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        if not conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    admin_url = f"{base}/{name}"
    login, password = f"{name}_login", "bench-login-password"
    with migrate.connect_admin(admin_url) as conn:
        migrate.apply_platform(conn)
        exists = conn.execute("select 1 from pg_roles where rolname = %s", [login]).fetchone()
        conn.execute(sql.SQL(("alter" if exists else "create") + " role {} with login noinherit password {}")
                     .format(sql.Identifier(login), sql.Literal(password)))
        conn.execute(sql.SQL("grant anon, authenticated, service_role to {}").format(sql.Identifier(login)))
        applied = migrate.upgrade(conn)
        if applied:
            say(f"applied {len(applied)} migration(s)")
        migrate.seed(conn)
    return admin_url, f"postgresql://{login}:{password}@{base.split('@', 1)[1]}/{name}"


def _people(conn: psycopg.Connection, db: Database) -> None:
    """The bench's users (index 0 = the signed-in heavy user, a team owner), teams, API keys and admin keys."""
    conn.execute("create schema if not exists bench")
    conn.execute("create table bench.users (idx int primary key, id uuid not null, key_id uuid, team_id uuid)")
    with db.as_service() as svc:
        me = users_repo.create(svc, "bench-user@example.test", PASSWORD)
        users_repo.create(svc, "bench-admin@example.test", PASSWORD, admin=True)
    password_hash = conn.execute("select encrypted_password from auth.users where id = %s", [me.id]).fetchone()
    assert password_hash
    conn.execute("insert into bench.users (idx, id) values (0, %s)", [me.id])
    conn.execute("""insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                        raw_app_meta_data, raw_user_meta_data, confirmation_token, recovery_token,
                        email_change_token_new, email_change, created_at, updated_at)
                    select '00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated',
                           'authenticated', 'bench-' || g || '@example.test', %s, now(),
                           '{"provider": "email", "providers": ["email"]}', '{}', '', '', '', '', now(), now()
                    from generate_series(1, %s) g""", [password_hash[0], USERS - 1])
    conn.execute("""insert into bench.users (idx, id)
                    select substring(email from 'bench-([0-9]+)@')::int, id from auth.users
                    where email ~ '^bench-[0-9]+@example.test$'""")
    with conn.transaction():  # a team: one owner (the first of its 20 users), the rest members, and its wallet
        conn.execute("""insert into public.teams (id, name, slug, created_by)
                        select gen_random_uuid(), 'Bench team ' || t, 'bench-team-' || t, u.id
                        from generate_series(0, %s - 1) t join bench.users u on u.idx = t * %s""",
                     [TEAMS, TEAM_SIZE])
        conn.execute("""update bench.users b set team_id = t.id from public.teams t
                        where t.slug = 'bench-team-' || (b.idx / %s) and b.idx < %s""", [TEAM_SIZE, TEAMS * TEAM_SIZE])
        conn.execute("""insert into public.team_members (team_id, user_id, role)
                        select team_id, id, case when idx %% %s = 0 then 'owner' else 'member' end
                        from bench.users where team_id is not null""", [TEAM_SIZE])
        conn.execute("insert into public.team_credit_accounts (team_id) select id from public.teams"
                     " where slug like 'bench-team-%' on conflict do nothing")
    conn.execute("""insert into public.api_keys (id, user_id, name, prefix, hash)
                    select gen_random_uuid(), id, 'bench key', substr(md5(idx::text || 'p'), 1, 12),
                           md5(idx::text || 'h1') || md5(idx::text || 'h2') from bench.users""")
    conn.execute("update bench.users b set key_id = k.id from public.api_keys k where k.user_id = b.id")
    conn.execute("""create table bench.models as
                    select row_number() over (order by p.slug, r.model)::int n, p.slug, r.model
                    from public.llm_model_rates r join public.llm_providers p on p.id = r.provider_id
                    where p.enabled""")
    conn.execute("create table bench.admin_keys (slug text primary key, id uuid not null)")
    for slug, pid in conn.execute("select slug, id from public.llm_providers where enabled").fetchall():
        row = conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label, active)
                              values (%s, 'bench-not-a-key', 'k1', 'b3nc', 'bench', false) returning id""",
                           [pid]).fetchone()
        assert row
        conn.execute("insert into bench.admin_keys values (%s, %s)", [slug, row[0]])
    conn.execute("analyze bench.users")


def _log_indexes(conn: psycopg.Connection) -> list[tuple[str, str, bool]]:
    """(name, definition, is_constraint) of every index on the log."""
    return conn.execute("""select i.relname, case when c.conname is not null
                                   then 'alter table public.llm_request_logs add constraint ' || c.conname || ' '
                                        || pg_get_constraintdef(c.oid)
                                   else pg_get_indexdef(i.oid) end, c.conname is not null
                           from pg_index x join pg_class i on i.oid = x.indexrelid
                           left join pg_constraint c on c.conindid = x.indexrelid and c.contype in ('p', 'u')
                           where x.indrelid = 'public.llm_request_logs'::regclass""").fetchall()


def generate(admin_url: str, app_db: Database, rows: int, days: int) -> None:
    """Fill the log up to `rows` rows (resuming a partial fill), then the indexes and the rollups."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_namespace where nspname = 'bench'").fetchone():
            say("creating 20,000 users, 500 teams, 20,000 API keys")
            _people(conn, app_db)
        have = conn.execute("select count(*) from public.llm_request_logs").fetchone()
        have_rows = int(have[0]) if have else 0
        if have_rows >= rows:
            return
        conn.execute("create table if not exists bench.indexes (name text primary key, def text, is_con boolean)")
        saved = conn.execute("select name, def, is_con from bench.indexes").fetchall()
        if not saved:
            saved = _log_indexes(conn)
            for name, definition, is_con in saved:
                conn.execute("insert into bench.indexes values (%s, %s, %s)", [name, definition, is_con])
        for name, _definition, is_con in _log_indexes(conn):
            if is_con:
                conn.execute(sql.SQL("alter table public.llm_request_logs drop constraint {}")
                             .format(sql.Identifier(name)))
            else:
                conn.execute(sql.SQL("drop index public.{}").format(sql.Identifier(name)))
        conn.execute("set session_replication_role = replica")  # no FK checks, no rollup trigger: rebuilt below
        started = time.monotonic()
        while have_rows < rows:
            n = min(CHUNK, rows - have_rows)
            conn.execute(GENERATE, {"n": n, "days": days, "users": USERS})
            have_rows += n
            rate = have_rows / max(time.monotonic() - started, 1e-9)
            say(f"{have_rows:,} log rows ({rate:,.0f}/s)")
        conn.execute("set session_replication_role = origin")
        conn.execute("set maintenance_work_mem = '1GB'")
        for name, definition, _is_con in saved:
            say(f"index {name}")
            conn.execute(definition)
        conn.execute("drop table bench.indexes")
        say("vacuum analyze the log")
        conn.execute("vacuum analyze public.llm_request_logs")
        say("rollups: public.usage_rollups_rebuild()")
        conn.execute("set work_mem = '256MB'")
        conn.execute("select public.usage_rollups_rebuild()")
        for table in ("usage_daily", "usage_daily_platform", "usage_daily_errors", "usage_daily_byok_models",
                      "usage_monthly_users", "usage_daily_teams", "usage_admin_keys"):
            conn.execute(sql.SQL("vacuum analyze public.{}").format(sql.Identifier(table)))
        say("generated")


# -- timing ------------------------------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    path: str
    status: int
    times_ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)


def time_route(name: str, call: Callable[[], Any], path: str, runs: int) -> Result:
    resp = call()  # warm-up (and the status we report)
    status = resp.status_code
    resp.close()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        resp = call()
        resp.get_data()
        times.append((time.perf_counter() - t0) * 1000)
        resp.close()
    return Result(name, path, status, times)


def csrf_token(client: Any, path: str) -> str:
    import re

    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(r'"X-CSRFToken": "([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(app: Any, email: str) -> Any:
    client = app.test_client()
    resp = client.post("/auth/sign-in", data={"email": email, "password": PASSWORD,
                                              "csrf_token": csrf_token(client, "/auth/sign-in")})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    return client


def bearer(settings: Any, db: Database, email: str) -> dict[str, str]:
    with db.as_service() as conn:
        row = conn.execute("select id::text, raw_app_meta_data from auth.users where email = %s", [email]).fetchone()
        assert row
        session_id = users_repo.create_session(conn, row[0])
    token = mint_access_token(settings, user_id=row[0], email=email, app_metadata=row[1], user_metadata={},
                              session_id=session_id)
    return {"Authorization": f"Bearer {token}"}


def routes(app: Any, settings: Any, db: Database, admin_url: str) -> list[tuple[str, Callable[[], Any], str]]:
    user_web, admin_web = sign_in(app, "bench-user@example.test"), sign_in(app, "bench-admin@example.test")
    user_api, admin_api = app.test_client(), app.test_client()
    uh, ah = bearer(settings, db, "bench-user@example.test"), bearer(settings, db, "bench-admin@example.test")
    today = datetime.now(UTC).date()
    d30, d366 = (today - timedelta(days=29)).isoformat(), (today - timedelta(days=365)).isoformat()
    week = (today - timedelta(days=100)).isoformat(), (today - timedelta(days=94)).isoformat()
    with psycopg.connect(admin_url) as conn:
        me = conn.execute("select u.id::text, u.key_id::text, t.slug from bench.users u"
                          " join public.teams t on t.id = u.team_id where u.idx = 0").fetchone()
        tail = conn.execute("select id::text, key_id::text from bench.users where idx = 15000").fetchone()
        deep = conn.execute("select created_at, id::text from public.llm_request_logs"
                            " where created_at < now() - interval '200 days' order by created_at desc, id desc"
                            " limit 1").fetchone()
    assert me and tail and deep
    user_id, key_id, slug = me
    cursor = encode_cursor(deep[0], deep[1])
    hx = {"HX-Request": "true"}

    def get(client: Any, path: str, headers: dict[str, str] | None = None) -> Callable[[], Any]:
        return lambda: client.get(path, headers=headers or {})

    table: list[tuple[str, str, Any]] = [
        ("user usage 30 d (API)", f"/api/user/llm/usage?from={d30}&to={today}", (user_api, uh)),
        ("user usage 366 d (API)", f"/api/user/llm/usage?from={d366}&to={today}", (user_api, uh)),
        ("user usage 366 d by model, key", f"/api/user/llm/usage?from={d366}&to={today}&group_by=model,api_key",
         (user_api, uh)),
        ("user requests, first page (API)", "/api/user/llm/requests", (user_api, uh)),
        ("user API keys, month counts (API)", "/api/user/api-keys", (user_api, uh)),
        ("settings page", "/settings", (user_web, None)),
        ("settings usage fragment", "/settings/usage", (user_web, hx)),
        ("team usage per member (owner, API)", f"/api/teams/{slug}/usage?from={d30}&to={today}", (user_api, uh)),
        ("team usage fragment (owner page)", f"/teams/{slug}/usage", (user_web, hx)),
        ("admin analytics 30 d (API)", f"/api/admin/usage?from={d30}&to={today}", (admin_api, ah)),
        ("admin analytics 366 d (API)", f"/api/admin/usage?from={d366}&to={today}", (admin_api, ah)),
        ("admin analytics 30 d (page)", f"/admin/analytics?from={d30}&to={today}", (admin_web, None)),
        ("admin analytics 366 d (page)", f"/admin/analytics?from={d366}&to={today}", (admin_web, None)),
        ("admin usage per team 366 d (API)", f"/api/admin/analytics/teams?from={d366}&to={today}",
         (admin_api, ah)),
        ("admin logs, no filter (API)", "/api/admin/logs", (admin_api, ah)),
        ("admin logs page, no filter", "/admin/logs", (admin_web, None)),
        ("admin logs: user = email fragment", "/api/admin/logs?user=bench-15000@", (admin_api, ah)),
        ("admin logs: user = id (heavy)", f"/api/admin/logs?user={user_id}", (admin_api, ah)),
        ("admin logs: user = id (light)", f"/api/admin/logs?user={tail[0]}", (admin_api, ah)),
        ("admin logs: provider", "/api/admin/logs?provider=openai", (admin_api, ah)),
        ("admin logs: mode = byok", "/api/admin/logs?mode=byok", (admin_api, ah)),
        ("admin logs: status = error", "/api/admin/logs?status=error", (admin_api, ah)),
        ("admin logs: status = 502", "/api/admin/logs?status=502", (admin_api, ah)),
        ("admin logs: status = ok", "/api/admin/logs?status=ok", (admin_api, ah)),
        ("admin logs: one week", f"/api/admin/logs?from={week[0]}&to={week[1]}", (admin_api, ah)),
        ("admin logs: API key (light user)", f"/api/admin/logs?api_key={tail[1]}", (admin_api, ah)),
        ("admin logs: API key (heavy user)", f"/api/admin/logs?api_key={key_id}", (admin_api, ah)),
        ("admin logs: provider + byok + error", "/api/admin/logs?provider=openai&mode=byok&status=error",
         (admin_api, ah)),
        ("admin logs: deep page (200 d back)", f"/api/admin/logs?before={cursor}", (admin_api, ah)),
        ("admin logs: deep page + filter", f"/api/admin/logs?before={cursor}&status=error", (admin_api, ah)),
        ("admin providers page", "/admin/providers", (admin_web, None)),
        ("admin keys page (counts per key)", "/admin/keys", (admin_web, None)),
        ("admin providers (API)", "/api/admin/llm/providers", (admin_api, ah)),
        ("admin user detail (page)", f"/admin/users/{user_id}", (admin_web, None)),
        ("admin user detail (API)", f"/api/admin/users/{user_id}", (admin_api, ah)),
    ]
    return [(name, get(client, path, headers), path) for name, path, (client, headers) in table]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000, help="request-log rows (default 20,000,000)")
    parser.add_argument("--days", type=int, default=365, help="spread over this many days (default 365)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per route (median; default 7)")
    parser.add_argument("--rebuild", action="store_true", help="drop and regenerate the bench database")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to this file")
    args = parser.parse_args()
    name = f"switchboard_bench_scale_{args.rows}"
    admin_url, app_url = ensure_database(name, args.rebuild)
    env = test_environ(app_url, admin_url)
    settings = load_settings(env)
    db = Database(settings.database_url, 1, 4)
    db.open()
    try:
        generate(admin_url, db, args.rows, args.days)
    finally:
        db.close()
    with psycopg.connect(admin_url) as conn:
        counts = conn.execute("""select (select count(*) from public.llm_request_logs),
                                        (select count(*) from public.usage_daily),
                                        (select count(*) from public.usage_daily_platform),
                                        (select count(*) from public.usage_monthly_users),
                                        pg_size_pretty(pg_total_relation_size('public.llm_request_logs'))""").fetchone()
    assert counts
    app = create_app(settings)
    try:
        results = []
        for label, call, path in routes(app, settings, app.extensions["switchboard"].db, admin_url):
            results.append(time_route(label, call, path, args.runs))
            r = results[-1]
            say(f"{r.name:<40} {r.status}  median {r.median:7.1f} ms")
    finally:
        app.extensions["switchboard"].db.close()
    lines = [f"Scale benchmark: {counts[0]:,} request-log rows ({counts[4]}) over {args.days} days, {USERS:,} users,"
             f" {TEAMS} teams; rollups: usage_daily {counts[1]:,} rows, usage_daily_platform {counts[2]:,},"
             f" usage_monthly_users {counts[3]:,}. Median of {args.runs} runs after a warm-up (Flask test client).",
             "", "| route | status | median ms | max ms |", "|---|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.status} | {r.median:.1f} | {max(r.times_ms):.1f} |" for r in results]
    slow = [r for r in results if r.median >= TARGET_MS or r.status >= 400]
    verdict = ("PASS: every route < 150 ms median" if not slow else
               "FAIL: " + ", ".join(f"{r.name} ({r.median:.0f} ms, {r.status})" for r in slow))
    lines += ["", verdict]
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0 if not slow else 1


if __name__ == "__main__":
    raise SystemExit(main())

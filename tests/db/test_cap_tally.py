"""The monthly cap tally (private.cap_spend, migration 20261201700000): after any mix of reserve / settle (less or
more than held) / refund / sweeper refund / a reservation moved into last month / a team deleted, every scope's
(spent, held) equals a GROUP BY of its reservations; parallel reservations never pass a personal, member or API
key cap (the key's from two wallets at once); a new month starts from zero; a cap set mid-month counts what was
spent before it; the migration backfills a database that already holds reservations."""

from __future__ import annotations

import random
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.dbsetup import admin_base
from webapp import migrate
from webapp.db import Database
from webapp.repos import credits
from webapp.repos import teams as teams_repo
from webapp.repos import users as users_repo
from webapp.services import credits as credits_service

CREDIT = 1_000_000
TALLY = "20261201700000"
REFUSED = {credits.INSUFFICIENT, credits.CAP_REACHED, credits.KEY_CAP_REACHED, credits.TEAM_MEMBER_CAP_REACHED}

# What the tally must hold: per scope and UTC month, settled charges and open holds (refunds count nothing).
EXPECTED = """
    select scope, subject, month, sum(spent)::bigint, sum(held)::bigint from (
      select case when team_id is null then 'user' else 'team_member' end as scope,
             case when team_id is null then user_id::text else team_id::text || ':' || user_id::text end as subject,
             date_trunc('month', created_at at time zone 'utc') at time zone 'utc' as month,
             case when status = 'settled' then charged else 0 end as spent,
             case when status = 'reserved' then amount else 0 end as held
      from public.credit_reservations where user_id = any(%(users)s::uuid[])
      union all
      select 'api_key', api_key_id::text, date_trunc('month', created_at at time zone 'utc') at time zone 'utc',
             case when status = 'settled' then charged else 0 end, case when status = 'reserved' then amount else 0 end
      from public.credit_reservations where api_key_id = any(%(keys)s::uuid[])
    ) r group by 1, 2, 3 having sum(spent) <> 0 or sum(held) <> 0 order by 1, 2, 3"""
KEPT = """
    select scope, subject, month, spent, held from private.cap_spend
    where (spent <> 0 or held <> 0) and (subject = any(%(keys)s) or split_part(subject, ':', 1) = any(%(users)s)
                                         or split_part(subject, ':', 2) = any(%(users)s))
    order by 1, 2, 3"""


def assert_tally_matches(conn: psycopg.Connection, users: list[str], keys: list[str]) -> None:
    params = {"users": users, "keys": keys}
    expected = conn.execute(EXPECTED, params).fetchall()
    assert expected, "nothing was reserved"
    assert conn.execute(KEPT, params).fetchall() == expected


def new_user(db: Database, funds: int) -> str:
    with db.as_service() as conn:
        uid = users_repo.create(conn, f"ct-{uuid.uuid4().hex[:12]}@example.test", "correct horse battery").id
        if funds:
            credits.adjust(conn, uid, funds, "test grant", None)
    return uid


def new_team(db: Database, owner: str, member: str, funds: int) -> str:
    team = str(uuid.uuid4())
    with db.as_service() as conn:
        conn.execute("insert into public.teams (id, name, slug) values (%s, 'tally', %s)",
                     [team, f"t-{uuid.uuid4().hex[:10]}"])
        conn.execute("insert into public.team_members (team_id, user_id, role) values (%s, %s, 'owner'), (%s, %s,"
                     " 'member')", [team, owner, team, member])
        teams_repo.adjust(conn, team, funds, "test grant", None)
    return team


def new_key(db: Database, user: str) -> str:
    with db.as_service() as conn:
        row = conn.execute("insert into public.api_keys (user_id, name, prefix, hash) values (%s, 'tally', %s, %s)"
                           " returning id::text", [user, uuid.uuid4().hex[:12], uuid.uuid4().hex * 2]).fetchone()
    assert row is not None
    return str(row[0])


def sqlstate(fn: Callable[[], object]) -> str | None:
    try:
        fn()
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def test_a_random_mix_keeps_the_tally_equal_to_the_reservations(db: Database, admin_conn: psycopg.Connection) -> None:
    rng = random.Random(20261201)  # noqa: S311 (a reproducible mix)
    a, b = new_user(db, 40 * CREDIT), new_user(db, 40 * CREDIT)
    team = new_team(db, a, b, 60 * CREDIT)
    keys = [new_key(db, a), new_key(db, b)]
    owner = {keys[0]: a, keys[1]: b}
    open_: list[str] = []
    closed: list[str] = []
    outcomes: dict[str, int] = {}

    def reserve() -> None:
        user = rng.choice([a, b])
        key = rng.choice([None, *[k for k in keys if owner[k] == user]])
        wallet = rng.choice([None, team])
        if wallet and rng.random() < 0.5:
            admin_conn.execute("update public.team_members set monthly_credit_cap = %s where team_id = %s"
                               " and user_id = %s", [rng.choice([None, 5 * CREDIT]), team, user])
        rid, high = str(uuid.uuid4()), rng.randint(0, 3 * CREDIT)
        with db.as_service() as conn:
            credits.reserve_flex(conn, user, rid, rng.randint(0, high), high, rng.choice([None, 8 * CREDIT]), key,
                                 rng.choice([None, 6 * CREDIT]) if key else None, team=wallet)
        open_.append(rid)

    def close() -> None:
        rid = open_.pop(rng.randrange(len(open_)))
        with db.as_service() as conn:
            amount = conn.execute("select amount from public.credit_reservations where request_id = %s",
                                  [rid]).fetchone()
            assert amount is not None
            if rng.random() < 0.6:  # less, as much or more than held (more: the shortfall path)
                credits.settle(conn, rid, rng.randint(0, 2 * int(amount[0]) + 1))
            else:
                credits.refund(conn, rid)
        closed.append(rid)

    def sweep() -> None:  # a worker killed mid-request: its hold stays open until the sweeper refunds it
        rid = open_.pop(rng.randrange(len(open_)))
        admin_conn.execute("update public.credit_reservations set created_at = created_at - interval '3 hours'"
                           " where request_id = %s", [rid])
        credits_service.sweep(db, 2 * 3600)  # it may also close ours moved into last month earlier
        rows = admin_conn.execute("select request_id::text from public.credit_reservations where status = 'reserved'"
                                  " and request_id = any(%s::uuid[])", [[rid, *open_]]).fetchall()
        still = {r for (r,) in rows}
        assert rid not in still
        closed.extend([rid, *(r for r in open_ if r not in still)])
        open_[:] = [r for r in open_ if r in still]

    def again() -> None:  # a retried close changes nothing
        rid = rng.choice(closed)
        with db.as_service() as conn:
            credits.settle(conn, rid, CREDIT) if rng.random() < 0.5 else credits.refund(conn, rid)

    def last_month() -> None:  # a reservation of last month (open or closed) stays in last month's row
        rid = rng.choice(open_ + closed)
        admin_conn.execute("update public.credit_reservations set created_at = created_at - interval '1 month'"
                           " where request_id = %s", [rid])

    for step in range(220):
        ops = [reserve] * 5 + ([close] * 4 + [sweep] if open_ else []) + ([again] if closed else [])
        ops += [last_month] if open_ or closed else []
        op = rng.choice(ops)
        state = sqlstate(op)
        assert state is None or state in REFUSED, state
        name = op.__name__ + (f":{state}" if state else "")
        outcomes[name] = outcomes.get(name, 0) + 1
        if step % 20 == 19:
            assert_tally_matches(admin_conn, [a, b], keys)
    assert {"reserve", "close", "sweep", "again", "last_month"} <= set(outcomes), outcomes
    assert_tally_matches(admin_conn, [a, b], keys)
    # A deleted team's reservations become personal (team_id set null): they move to the users' rows.
    admin_conn.execute("delete from public.teams where id = %s", [team])
    assert_tally_matches(admin_conn, [a, b], keys)


def race(n_threads: int, per_thread: int, attempt: Callable[[int], None]) -> list[str]:
    results: list[str] = []

    def run(t: int) -> None:
        for _ in range(per_thread):
            results.append(sqlstate(lambda: attempt(t)) or "ok")

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_parallel_reserves_never_pass_a_cap(db: Database, admin_conn: psycopg.Connection) -> None:
    user, other = new_user(db, 100 * CREDIT), new_user(db, 0)
    team = new_team(db, other, user, 100 * CREDIT)
    key = new_key(db, user)
    quarter = CREDIT // 4

    def personal(_t: int) -> None:
        with db.as_service() as conn:
            credits.reserve_flex(conn, user, str(uuid.uuid4()), quarter, quarter, 3 * CREDIT)

    results = race(6, 8, personal)
    assert results.count("ok") == 12 and results.count(credits.CAP_REACHED) == 36

    # The key's cap holds while the key spends from two wallets at once (personal and the team's).
    def with_key(t: int) -> None:
        with db.as_service() as conn:
            credits.reserve_flex(conn, user, str(uuid.uuid4()), quarter, quarter, None, key, 2 * CREDIT,
                                 team=team if t % 2 else None)

    results = race(8, 5, with_key)  # (without the tally row's lock this overspent about one run in three)
    assert results.count("ok") == 8 and results.count(credits.KEY_CAP_REACHED) == 32
    # Settling the key's holds at half frees the other half: exactly four more quarters fit.
    with db.as_service() as conn:
        rids = conn.execute("select request_id::text from public.credit_reservations where api_key_id = %s",
                            [key]).fetchall()
        for (rid,) in rids:
            credits.settle(conn, rid, quarter // 2)
    results = race(4, 3, with_key)
    assert results.count("ok") == 4 and results.count(credits.KEY_CAP_REACHED) == 8
    row = admin_conn.execute("select sum(coalesce(charged, amount)) from public.credit_reservations"
                             " where api_key_id = %s and status <> 'refunded'", [key]).fetchone()
    assert row == (2 * CREDIT,)
    assert_tally_matches(admin_conn, [user], [key])


def reserve(db: Database, user: str, low: int, high: int, cap: int | None = None,
            team: str | None = None) -> tuple[int, str | None] | str | None:
    """One reservation in its own transaction: (amount, limited_by), or the refusal's SQLSTATE."""
    got: list[tuple[int, str | None]] = []

    def run() -> None:
        with db.as_service() as conn:
            got.append(credits.reserve_flex(conn, user, str(uuid.uuid4()), low, high, cap, team=team))

    return sqlstate(run) or got[0]


def test_a_new_month_starts_from_zero(db: Database, admin_conn: psycopg.Connection) -> None:
    user = new_user(db, 20 * CREDIT)
    cap = 2 * CREDIT
    # Last month: the cap fully spent, and a request still open at the month's end.
    old, late = str(uuid.uuid4()), str(uuid.uuid4())
    with db.as_service() as conn:
        for rid in (old, late):
            credits.reserve_flex(conn, user, rid, CREDIT, CREDIT, cap)
    admin_conn.execute("update public.credit_reservations set created_at = date_trunc('month', now(), 'UTC')"
                       " - interval '1 second' where request_id = any(%s::uuid[])", [[old, late]])
    with db.as_service() as conn:
        credits.settle(conn, old, CREDIT)
        rid = str(uuid.uuid4())
        assert credits.reserve_flex(conn, user, rid, cap, cap, cap) == (cap, None)  # this month: the whole cap
        credits.settle(conn, late, CREDIT // 2)  # closing last month's request moves last month's row only
    assert reserve(db, user, 1, 1, cap) == credits.CAP_REACHED
    with db.as_service() as conn:
        credits.refund(conn, rid)
    assert reserve(db, user, 1, 3 * CREDIT, cap) == (cap, "monthly_cap")
    months = admin_conn.execute(
        "select month = date_trunc('month', now(), 'UTC'), spent, held from private.cap_spend"
        " where scope = 'user' and subject = %s order by month", [user]).fetchall()
    assert months == [(False, CREDIT + CREDIT // 2, 0), (True, 0, cap)]
    assert_tally_matches(admin_conn, [user], [])


def test_a_cap_set_mid_month_counts_what_was_spent_before_it(db: Database, admin_conn: psycopg.Connection) -> None:
    owner, member = new_user(db, 0), new_user(db, 0)
    team = new_team(db, owner, member, 20 * CREDIT)
    with db.as_service() as conn:
        for _ in range(2):  # uncapped spending first
            rid = str(uuid.uuid4())
            credits.reserve_flex(conn, member, rid, CREDIT, CREDIT, None, team=team)
            credits.settle(conn, rid, CREDIT)
    set_cap = "update public.team_members set monthly_credit_cap = %s where team_id = %s and user_id = %s"
    admin_conn.execute(set_cap, [2 * CREDIT + CREDIT // 2, team, member])
    assert reserve(db, member, CREDIT, CREDIT, team=team) == credits.TEAM_MEMBER_CAP_REACHED
    assert reserve(db, member, 0, CREDIT, team=team) == (CREDIT // 2, "team_member_cap")
    admin_conn.execute(set_cap, [None, team, member])
    assert reserve(db, member, CREDIT, CREDIT, team=team) == (CREDIT, None)
    admin_conn.execute(set_cap, [CREDIT, team, member])  # lowered below what is spent: refused at once
    assert reserve(db, member, 0, 1, team=team) == (0, "team_member_cap")
    assert_tally_matches(admin_conn, [member], [])


@pytest.fixture()
def before_tally(tmp_path: Path) -> Iterator[str]:
    """A database of its own with every migration before the tally's applied."""
    name = f"switchboard_captally_{uuid.uuid4().hex[:8]}"
    base = admin_base()
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    before = tmp_path / "before"
    before.mkdir()
    for version, _name, path in migrate.migration_files():
        if version < TALLY:
            shutil.copy(path, before / path.name)
    try:
        with migrate.connect_admin(f"{base}/{name}") as conn:
            migrate.apply_platform(conn)
            migrate.upgrade(conn, before)
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def one(conn: psycopg.Connection, query: str, params: list[object]) -> str:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return str(row[0])


def test_the_migration_backfills_the_tally(before_tally: str) -> None:
    with migrate.connect_admin(before_tally) as conn:
        users = [one(conn, "insert into auth.users (id, email) values (gen_random_uuid(), %s) returning id",
                     [f"b{i}@example.test"]) for i in range(2)]
        team = one(conn, "insert into public.teams (slug, name) values ('backfill', 'B') returning id", [])
        key = one(conn, "insert into public.api_keys (user_id, name, prefix, hash) values (%s, 'k', 'abcdefabcdef',"
                  " repeat('a', 64)) returning id", [users[0]])
        rng = random.Random(7)  # noqa: S311
        for i in range(90):
            status = ("reserved", "settled", "settled", "refunded")[i % 4]
            amount = rng.randint(0, 5 * CREDIT)
            charged = {"reserved": None, "settled": rng.randint(0, 2 * amount), "refunded": 0}[status]
            conn.execute("insert into public.credit_reservations (request_id, user_id, amount, charged, status,"
                         " created_at, api_key_id, team_id) values (gen_random_uuid(), %s, %s, %s, %s,"
                         " now() - make_interval(days => %s), %s, %s)",
                         [users[i % 2], amount, charged, status, rng.randint(0, 70),
                          key if i % 2 == 0 and i % 3 else None, team if i % 5 == 0 else None])
        # The notifications' old partial tally (settled only, capped scopes only) is replaced, not added to.
        conn.execute("insert into private.cap_spend (scope, subject, month, spent) values ('user', %s,"
                     " date_trunc('month', now()), 123)", [users[1]])
        assert TALLY in migrate.upgrade(conn)
        assert_tally_matches(conn, users, [key])

""""Spent this month" on the pages reads the cap tally (migration 20261201800000): after a mix of reserves, settles
(below, at and above the hold), refunds and last month's reservations -- personal, on a team's wallet, with and
without an API key -- credits_month_spent and team_month_spent give exactly what the pages' old sums of
credit_reservations gave, to every caller, and nothing the caller could not read before (a member sees their own
team spending only, an outsider nothing, another user's personal spending is 0; site admins see all)."""

from __future__ import annotations

import random
import uuid
from typing import Any

import psycopg

from tests.db.test_cap_tally import CREDIT, REFUSED, new_key, new_team, sqlstate
from webapp.db import Database
from webapp.repos import credits
from webapp.repos import teams as teams_repo

# The pages' sums before the tally (webapp/repos/credits.py month_spent, webapp/repos/teams.py members), run as the
# caller under the reservations' policies.
OLD_USER = """select coalesce(sum(coalesce(charged, amount)), 0) from public.credit_reservations
              where user_id = %s and team_id is null and status <> 'refunded'
                and created_at >= date_trunc('month', now())"""
OLD_TEAM = """select m.user_id::text,
                     (select sum(coalesce(r.charged, r.amount)) from public.credit_reservations r
                      where r.team_id = m.team_id and r.user_id = m.user_id and r.status <> 'refunded'
                        and r.created_at >= date_trunc('month', now()))::bigint
              from public.team_members m where m.team_id = %s order by 1"""


def _one(conn: psycopg.Connection, query: str, params: list[Any]) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def _spend(db: Database, admin_conn: psycopg.Connection, owner: str, member: str, team: str,
           keys: dict[str, str]) -> dict[str, int]:
    """A reproducible mix for both users: personal and team reservations, with and without their keys, closed in
    every way or left open, some moved into last month."""
    rng = random.Random(20261201800)  # noqa: S311
    outcomes: dict[str, int] = {}
    for _ in range(120):
        user = rng.choice([owner, member])
        wallet = rng.choice([None, team])
        key = rng.choice([None, keys[user]])
        rid, high = str(uuid.uuid4()), rng.randint(0, 2 * CREDIT)

        def run(user: str = user, rid: str = rid, high: int = high, key: str | None = key,
                wallet: str | None = wallet) -> None:
            with db.as_service() as conn:
                amount, _ = credits.reserve_flex(conn, user, rid, 0, high, rng.choice([None, 30 * CREDIT]), key,
                                                 rng.choice([None, 25 * CREDIT]) if key else None, team=wallet)
                roll = rng.random()
                if roll < 0.45:  # less, as much or more than held
                    credits.settle(conn, rid, rng.choice([0, amount, rng.randint(0, 2 * amount + 1)]))
                elif roll < 0.7:
                    credits.refund(conn, rid)
                # else: still in flight (held)

        state = sqlstate(run)
        assert state is None or state in REFUSED, state
        outcomes[state or ("team" if wallet else "personal") + (":key" if key else "")] = \
            outcomes.get(state or ("team" if wallet else "personal") + (":key" if key else ""), 0) + 1
        if state is None and rng.random() < 0.15:  # last month's: counted by neither
            admin_conn.execute("update public.credit_reservations set created_at = date_trunc('month', now(), 'UTC')"
                               " - interval '1 hour' where request_id = %s", [rid])
    return outcomes


def test_the_tally_reads_equal_the_old_sums_for_every_caller(db: Database, admin_conn: psycopg.Connection,
                                                              make_user: Any) -> None:
    owner, member, tadmin, outsider, siteadmin = make_user(), make_user(), make_user(), make_user(), \
        make_user(admin=True)
    for u in (owner, member):
        credits.adjust(admin_conn, u.id, 60 * CREDIT, "test grant", None)
    team = new_team(db, owner.id, member.id, 80 * CREDIT)
    admin_conn.execute("insert into public.team_members (team_id, user_id, role) values (%s, %s, 'admin')",
                       [team, tadmin.id])
    keys = {owner.id: new_key(db, owner.id), member.id: new_key(db, member.id)}
    outcomes = _spend(db, admin_conn, owner.id, member.id, team, keys)
    assert {"personal", "personal:key", "team", "team:key"} <= set(outcomes), outcomes

    # Every scope has spent, held and refunded money this month (the comparison below is not 0 == 0).
    for scope, subject in (("user", owner.id), ("user", member.id), ("team_member", f"{team}:{owner.id}"),
                           ("team_member", f"{team}:{member.id}")):
        row = admin_conn.execute("select spent, held from private.cap_spend where scope = %s and subject = %s"
                                 " and month = date_trunc('month', now(), 'UTC')", [scope, subject]).fetchone()
        assert row is not None and row[0] > 0 and row[1] > 0, (scope, row)

    everyone = {"owner": owner, "member": member, "tadmin": tadmin, "outsider": outsider, "siteadmin": siteadmin}
    seen_team: dict[str, dict[str, int | None]] = {}
    for name, caller in everyone.items():
        with db.as_user(caller.claims) as conn:
            for user in (owner, member):
                old = int(_one(conn, OLD_USER, [user.id]))
                assert credits.month_spent(conn, user.id) == old, (name, user.id)
                # Only the user's own (or a site admin) sees a number; the old sum under RLS was 0 for the others.
                assert (old > 0) == (caller.id == user.id or name == "siteadmin"), name
            old_roster = dict(conn.execute(OLD_TEAM, [team]).fetchall())
            roster = {m.user_id: m.month_spent for m in teams_repo.members(conn, team)}
        # The old sum was null for a member without visible reservations; the pages showed 0 for those whose spending
        # the caller may read (services/teams.py) -- the tally says 0 itself, and null only where the caller may not.
        visible = set(roster) if name in ("owner", "tadmin", "siteadmin") else {caller.id} & set(roster)
        assert roster == {u: (old_roster[u] or 0) if u in visible else None for u in old_roster}, name
        seen_team[name] = roster
    assert seen_team["owner"][owner.id] and seen_team["owner"][member.id]
    assert seen_team["member"] == {owner.id: None, member.id: seen_team["owner"][member.id], tadmin.id: None}
    assert seen_team["outsider"] == {}
    assert seen_team["siteadmin"] == seen_team["owner"] == seen_team["tadmin"]

    # With an API key's claims: the key's owner's own numbers, as before.
    claims = {**member.claims, "api_key_id": keys[member.id]}
    with db.as_user(claims) as conn:
        assert credits.month_spent(conn, member.id) == int(_one(conn, OLD_USER, [member.id]))
        assert credits.month_spent(conn, owner.id) == 0


def test_the_readers_return_nothing_of_others(db: Database, admin_conn: psycopg.Connection, make_user: Any) -> None:
    owner, member, outsider = make_user(), make_user(), make_user()
    credits.adjust(admin_conn, owner.id, 5 * CREDIT, "test grant", None)
    team = new_team(db, owner.id, member.id, 5 * CREDIT)
    with db.as_service() as conn:
        for user, wallet in ((owner.id, None), (owner.id, team), (member.id, team)):
            rid = str(uuid.uuid4())
            credits.reserve_flex(conn, user, rid, CREDIT, CREDIT, None, team=wallet)
            credits.settle(conn, rid, CREDIT // 2)
    with db.as_user(outsider.claims) as conn:
        assert _one(conn, "select public.credits_month_spent(%s)", [owner.id]) == 0
        assert conn.execute("select * from public.team_month_spent(%s)", [team]).fetchall() == []
    with db.as_user(member.claims) as conn:
        assert conn.execute("select user_id::text, month_spent from public.team_month_spent(%s)",
                            [team]).fetchall() == [(member.id, CREDIT // 2)]
    with db.as_user(owner.claims) as conn:
        assert _one(conn, "select public.credits_month_spent(%s)", [owner.id]) == CREDIT // 2
        assert sorted(conn.execute("select user_id::text, month_spent from public.team_month_spent(%s)",
                                   [team]).fetchall()) == sorted([(owner.id, CREDIT // 2), (member.id, CREDIT // 2)])
    # The anonymous role may not call them at all.
    assert not _one(admin_conn, "select has_function_privilege('anon', 'public.credits_month_spent(uuid)',"
                    " 'execute')", [])
    assert not _one(admin_conn, "select has_function_privilege('anon', 'public.team_month_spent(uuid)', 'execute')",
                    [])

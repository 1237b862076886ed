"""The team wallet through the one reservation function (credits_reserve_flex with p_team, credits_settle,
credits_refund) on real connections as service_role: arithmetic, idempotency, the member cap, an ex-member refused
under the wallet lock, and N members racing a small wallet: never below zero, ledger = balance, nothing spent twice."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter

import psycopg
import pytest

from webapp.db import Database
from webapp.repos import credits
from webapp.repos import teams as teams_repo
from webapp.repos import users as users_repo

CREDIT = 1_000_000


def new_user(db: Database) -> str:
    with db.as_service() as conn:
        return users_repo.create(conn, f"tw-{uuid.uuid4().hex[:12]}@example.test", "correct horse battery").id


def new_team(db: Database, owner: str, members: list[str], funds: int) -> str:
    team = str(uuid.uuid4())
    with db.as_service() as conn:
        conn.execute("insert into public.teams (id, name, slug) values (%s, 'wallet', %s)",
                     [team, f"w-{uuid.uuid4().hex[:10]}"])
        conn.execute("insert into public.team_members (team_id, user_id, role) values (%s, %s, 'owner')",
                     [team, owner])
        for m in members:
            conn.execute("insert into public.team_members (team_id, user_id) values (%s, %s)", [team, m])
        if funds:
            teams_repo.adjust(conn, team, funds, "test grant", None)
    return team


def wallet(db: Database, team: str) -> tuple[int, int]:
    with db.as_service() as conn:
        row = conn.execute("""select (select balance from public.team_credit_accounts where team_id = %(t)s),
                                     (select coalesce(sum(delta), 0) from public.team_credit_ledger
                                      where team_id = %(t)s)""", {"t": team}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_reserve_settle_refund_on_the_team_wallet(db: Database) -> None:
    owner, member = new_user(db), new_user(db)
    team = new_team(db, owner, [member], 10 * CREDIT)
    personal_before = 0
    r1, r2 = str(uuid.uuid4()), str(uuid.uuid4())
    with db.as_service() as conn:
        personal_before = credits.balance(conn, member)
        assert credits.reserve_flex(conn, member, r1, 1, 4 * CREDIT, None, team=team) == (4 * CREDIT, None)
        # Idempotent by request id.
        assert credits.reserve_flex(conn, member, r1, 1, 4 * CREDIT, None, team=team)[0] == 4 * CREDIT
        assert credits.settle(conn, r1, CREDIT) == CREDIT
        assert credits.settle(conn, r1, 2 * CREDIT) == CREDIT  # settling twice changes nothing
        assert credits.reserve_flex(conn, member, r2, 1, 20 * CREDIT, None, team=team) == (9 * CREDIT, "balance")
        assert credits.refund(conn, r2) == 9 * CREDIT
        assert credits.refund(conn, r2) == 0
        assert credits.balance(conn, member) == personal_before  # the member's own wallet never moves
    assert wallet(db, team) == (9 * CREDIT, 9 * CREDIT)


def test_member_cap_and_ex_member_are_checked_under_the_lock(db: Database) -> None:
    owner, member = new_user(db), new_user(db)
    team = new_team(db, owner, [member], 10 * CREDIT)
    with db.as_service() as conn:
        conn.execute("update public.team_members set monthly_credit_cap = %s where team_id = %s and user_id = %s",
                     [3 * CREDIT, team, member])
        assert credits.reserve_flex(conn, member, str(uuid.uuid4()), 1, 2 * CREDIT, None, team=team)[0] == 2 * CREDIT
        assert credits.reserve_flex(conn, member, str(uuid.uuid4()), 1, 5 * CREDIT, None,
                                    team=team) == (CREDIT, "team_member_cap")
    with pytest.raises(psycopg.Error) as capped, db.as_service() as conn:
        credits.reserve_flex(conn, member, str(uuid.uuid4()), 1, 5, None, team=team)
    assert capped.value.sqlstate == credits.TEAM_MEMBER_CAP_REACHED
    # The owner has no cap; the personal monthly cap does not apply to team spending.
    with db.as_service() as conn:
        assert credits.reserve_flex(conn, owner, str(uuid.uuid4()), 1, CREDIT, 0, team=team)[0] == CREDIT
        conn.execute("delete from public.team_members where team_id = %s and user_id = %s", [team, member])
    with pytest.raises(psycopg.Error) as gone, db.as_service() as conn:
        credits.reserve_flex(conn, member, str(uuid.uuid4()), 0, 1, None, team=team)
    assert gone.value.sqlstate == credits.NOT_TEAM_MEMBER
    balance, ledger = wallet(db, team)
    assert balance == ledger == 6 * CREDIT


def test_members_racing_a_small_wallet_never_overspend(db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    workers, per_worker = 12, 25
    owner = new_user(db)
    members = [new_user(db) for _ in range(workers)]
    granted = 7 * CREDIT
    team = new_team(db, owner, members, granted)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run(member: str) -> None:
        rng = random.Random(member)  # noqa: S311 (a test workload, not a secret)
        for _ in range(per_worker):
            request = str(uuid.uuid4())
            try:
                with db.as_service() as conn:
                    amount, _ = credits.reserve_flex(conn, member, request, CREDIT // 10, CREDIT // 2, None,
                                                     team=team)
                with db.as_service() as conn:
                    if rng.random() < 0.2:
                        credits.refund(conn, request)
                    else:  # sometimes more than reserved: the extra only as far as the wallet goes
                        credits.settle(conn, request, rng.choice([amount // 2, amount, amount + CREDIT // 5]))
                result = "ok"
            except psycopg.Error as exc:
                result = exc.sqlstate or "error"
            with lock:
                outcomes[result] += 1

    threads = [threading.Thread(target=run, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    balance, ledger = wallet(db, team)
    with db.as_service() as conn:
        row = conn.execute("""select coalesce(sum(charged), 0), count(*) filter (where status = 'reserved')
                              from public.credit_reservations where team_id = %s""", [team]).fetchone()
    assert row is not None
    charged, open_ = int(row[0]), int(row[1])
    with capsys.disabled():
        print(f"\nteam wallet (SQL): {workers} workers x {per_worker} = {sum(outcomes.values())} reservations; "
              f"{dict(outcomes)}; granted {granted}, charged {charged}, final {balance}, ledger sum {ledger}")
    assert sum(outcomes.values()) == workers * per_worker
    assert set(outcomes) <= {"ok", credits.INSUFFICIENT}
    assert outcomes[credits.INSUFFICIENT] > 0 and outcomes["ok"] > 0
    assert open_ == 0 and balance >= 0
    assert balance == ledger == granted - charged


def test_a_member_cap_holds_under_concurrency(db: Database) -> None:
    owner, member = new_user(db), new_user(db)
    team = new_team(db, owner, [member], 100 * CREDIT)
    cap = 3 * CREDIT
    with db.as_service() as conn:
        conn.execute("update public.team_members set monthly_credit_cap = %s where team_id = %s and user_id = %s",
                     [cap, team, member])
    results: list[str] = []

    def run() -> None:
        for _ in range(10):
            try:
                with db.as_service() as conn:
                    credits.reserve_flex(conn, member, str(uuid.uuid4()), CREDIT // 4, CREDIT // 4, None, team=team)
                results.append("ok")
            except psycopg.Error as exc:
                results.append(exc.sqlstate or "error")

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with db.as_service() as conn:
        row = conn.execute("select coalesce(sum(amount), 0) from public.credit_reservations"
                           " where team_id = %s and user_id = %s", [team, member]).fetchone()
    assert row is not None and int(row[0]) == cap  # exactly 12 quarter-credit holds fit, never a 13th
    assert results.count("ok") == 12 and results.count(credits.TEAM_MEMBER_CAP_REACHED) == 48
    balance, ledger = wallet(db, team)
    assert balance == ledger == 100 * CREDIT - cap

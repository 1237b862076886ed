"""Deleting a team while its members' requests are in flight (migration 20261201800100): the delete takes the team's
wallet and the members' personal wallets first, in the order every reservation, settle and refund takes them,
before its cascade moves the team's reservations (team_id set null) between the cap tally's rows -- so it waits for
a request holding a member's wallet instead of deadlocking with it."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg

from tests.db.test_cap_tally import CREDIT, assert_tally_matches, new_key, new_team, new_user
from webapp.db import Database
from webapp.repos import credits

RESERVE = "select public.credits_reserve_flex(%s, %s, 0, %s, %s, %s, %s)"


def _waiting(admin_conn: psycopg.Connection, pid: int) -> bool:
    row = admin_conn.execute("select wait_event_type from pg_stat_activity where pid = %s", [pid]).fetchone()
    return row is not None and row[0] == "Lock"


def test_deleting_a_team_waits_for_a_members_request_instead_of_deadlocking(
        db: Database, admin_conn: psycopg.Connection, database_urls: tuple[str, str]) -> None:
    owner, member = new_user(db, 10 * CREDIT), new_user(db, 0)
    team = new_team(db, owner, member, 10 * CREDIT)
    key = new_key(db, owner)
    with db.as_service() as conn:  # the owner spent from the team's wallet with the key: that month's rows exist
        rid = str(uuid.uuid4())
        credits.reserve_flex(conn, owner, rid, CREDIT, CREDIT, None, key, None, team=team)
        credits.settle(conn, rid, CREDIT)
    failures: list[BaseException] = []
    with psycopg.connect(database_urls[0]) as request, psycopg.connect(database_urls[0]) as deleter:
        # A personal request in flight: the owner's wallet and the tally's user row held (a personal cap).
        request.execute(RESERVE, [owner, str(uuid.uuid4()), CREDIT, 100 * CREDIT, None, None])
        pid = deleter.info.backend_pid

        def delete() -> None:
            try:
                deleter.execute("delete from public.teams where id = %s", [team])
                deleter.commit()
            except psycopg.Error as exc:  # a deadlock aborts one side
                failures.append(exc)
                deleter.rollback()

        thread = threading.Thread(target=delete)
        thread.start()
        deadline = time.monotonic() + 30
        while not _waiting(admin_conn, pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _waiting(admin_conn, pid), "the delete never waited for the request"
        # The same request now needs the key's tally row too. Without the wallet locks first, the delete's cascade
        # holds it while waiting for the user row the request holds: a deadlock.
        try:
            request.execute(RESERVE, [owner, str(uuid.uuid4()), CREDIT, 100 * CREDIT, key, 50 * CREDIT])
            request.commit()
        except psycopg.Error as exc:
            failures.append(exc)
            request.rollback()
        thread.join(60)
        assert not thread.is_alive()
    assert failures == []
    assert admin_conn.execute("select count(*) from public.teams where id = %s", [team]).fetchone() == (0,)
    # The team's reservations became the members' personal ones, and the tally moved with them.
    assert_tally_matches(admin_conn, [owner, member], [key])

"""The credit functions (credits_adjust / reserve / settle / refund) on real connections, as service_role: the
arithmetic, idempotency, the error codes, and the invariants under concurrent threads and processes:
balance >= 0 and balance == sum(credit_ledger.delta) for every account, every reservation closed exactly once."""

from __future__ import annotations

import multiprocessing
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from webapp.db import Database
from webapp.repos import credits
from webapp.repos import users as users_repo

CREDIT = 1_000_000  # micro-credits


def new_user(db: Database) -> str:
    with db.as_service() as conn:
        return users_repo.create(conn, f"credits-{uuid.uuid4().hex[:12]}@example.test", "correct horse battery").id


def funded_user(db: Database, amount: int) -> str:
    uid = new_user(db)
    with db.as_service() as conn:
        assert credits.adjust(conn, uid, amount, "test grant", None) == amount
    return uid


def rid() -> str:
    return str(uuid.uuid4())


def sqlstate_of(fn: Callable[[], Any]) -> str | None:
    try:
        fn()
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def state(db: Database, uid: str) -> dict[str, Any]:
    """Balance, the ledger (oldest first) and reservations of one user, read as service_role."""
    with db.as_service() as conn:
        balance = credits.balance(conn, uid)
        ledger = conn.execute(
            "select id, kind, delta, balance_after, request_id::text from public.credit_ledger where user_id = %s"
            " order by id", [uid]).fetchall()
        reservations = {
            row[0]: row[1:] for row in conn.execute(
                "select request_id::text, amount, charged, status, closed_at is not null"
                " from public.credit_reservations where user_id = %s", [uid]).fetchall()
        }
    return {"balance": balance, "ledger": ledger, "reservations": reservations}


def assert_invariants(db: Database, uid: str) -> dict[str, Any]:
    """balance >= 0, balance == sum(ledger.delta), and every ledger row's balance_after is the running sum (so the
    ledger order is the order the account was changed in, one writer at a time)."""
    st = state(db, uid)
    running = 0
    for _id, kind, delta, balance_after, _req in st["ledger"]:
        running += delta
        assert balance_after == running, f"ledger row {_id} ({kind}) balance_after {balance_after} != {running}"
        assert balance_after >= 0
    assert st["balance"] == running, f"balance {st['balance']} != sum(ledger.delta) {running}"
    assert st["balance"] >= 0
    return st


def kinds(st: dict[str, Any], request_id: str | None = None) -> Counter[str]:
    return Counter(row[1] for row in st["ledger"] if request_id is None or row[4] == request_id)


# --- Single-connection behaviour --------------------------------------------------------------------------------------

def test_grant_via_adjust(db: Database) -> None:
    uid = new_user(db)
    actor = new_user(db)
    with db.as_service() as conn:
        assert credits.balance(conn, uid) == 0
        assert credits.adjust(conn, uid, 5 * CREDIT, "welcome", actor) == 5 * CREDIT
        assert credits.adjust(conn, uid, 2 * CREDIT, "top-up", None) == 7 * CREDIT
        rows = conn.execute("select kind, delta, balance_after, reason, actor_id::text, request_id"
                            " from public.credit_ledger where user_id = %s order by id", [uid]).fetchall()
    assert rows == [("grant", 5 * CREDIT, 5 * CREDIT, "welcome", actor, None),
                    ("grant", 2 * CREDIT, 7 * CREDIT, "top-up", None, None)]
    assert assert_invariants(db, uid)["balance"] == 7 * CREDIT


def test_adjust_creates_a_missing_account(db: Database, admin_conn: psycopg.Connection) -> None:
    uid = new_user(db)
    admin_conn.execute("delete from public.credit_accounts where user_id = %s", [uid])
    with db.as_service() as conn:
        assert credits.adjust(conn, uid, 3, "grant", None) == 3
    assert assert_invariants(db, uid)["balance"] == 3


def test_deduct_below_zero_refused(db: Database) -> None:
    uid = funded_user(db, 1000)
    with db.as_service() as conn:
        assert credits.adjust(conn, uid, -400, "correction", None) == 600

    def deduct_too_much() -> None:
        with db.as_service() as conn:
            credits.adjust(conn, uid, -601, "too much", None)

    def zero() -> None:
        with db.as_service() as conn:
            credits.adjust(conn, uid, 0, "nothing", None)

    assert sqlstate_of(deduct_too_much) == "P0402"
    assert sqlstate_of(zero) == "22023"
    st = assert_invariants(db, uid)
    assert st["balance"] == 600
    assert [(r[1], r[2]) for r in st["ledger"]] == [("grant", 1000), ("deduct", -400)]
    with db.as_service() as conn:
        assert credits.adjust(conn, uid, -600, "to zero is fine", None) == 0
    assert assert_invariants(db, uid)["balance"] == 0


def test_reserve_decreases_balance_and_writes_ledger(db: Database) -> None:
    uid = funded_user(db, 10 * CREDIT)
    r = rid()
    with db.as_service() as conn:
        assert credits.reserve(conn, uid, r, 3 * CREDIT, None) == 7 * CREDIT
    st = assert_invariants(db, uid)
    assert st["balance"] == 7 * CREDIT
    assert st["ledger"][-1][1:] == ("reserve", -3 * CREDIT, 7 * CREDIT, r)
    assert st["reservations"] == {r: (3 * CREDIT, None, "reserved", False)}


def test_reserve_same_request_twice_reserves_once(db: Database) -> None:
    uid = funded_user(db, 10 * CREDIT)
    r = rid()
    with db.as_service() as conn:
        assert credits.reserve(conn, uid, r, 3 * CREDIT, None) == 7 * CREDIT
    with db.as_service() as conn:
        assert credits.reserve(conn, uid, r, 3 * CREDIT, None) == 7 * CREDIT
        # A retry with another amount still returns the first outcome.
        assert credits.reserve(conn, uid, r, 5 * CREDIT, None) == 7 * CREDIT
    st = assert_invariants(db, uid)
    assert kinds(st, r) == Counter({"reserve": 1})
    assert len(st["reservations"]) == 1


def test_reserve_with_another_users_request_id_refused(db: Database) -> None:
    a, b = funded_user(db, CREDIT), funded_user(db, CREDIT)
    r = rid()
    with db.as_service() as conn:
        credits.reserve(conn, a, r, 100, None)

    def steal() -> None:
        with db.as_service() as conn:
            credits.reserve(conn, b, r, 100, None)

    assert sqlstate_of(steal) == "22023"
    assert assert_invariants(db, b)["balance"] == CREDIT


def test_reserve_short_balance_p0402(db: Database) -> None:
    uid = funded_user(db, 2 * CREDIT)
    r = rid()

    def reserve() -> None:
        with db.as_service() as conn:
            credits.reserve(conn, uid, r, 2 * CREDIT + 1, None)

    assert sqlstate_of(reserve) == "P0402"
    st = assert_invariants(db, uid)
    assert st["balance"] == 2 * CREDIT
    assert st["reservations"] == {}
    with db.as_service() as conn:  # exactly the balance is fine
        assert credits.reserve(conn, uid, r, 2 * CREDIT, None) == 0


def test_reserve_negative_amount_refused(db: Database) -> None:
    uid = funded_user(db, CREDIT)

    def reserve() -> None:
        with db.as_service() as conn:
            credits.reserve(conn, uid, rid(), -1, None)

    assert sqlstate_of(reserve) == "22023"


def test_monthly_cap_p0403(db: Database) -> None:
    uid = funded_user(db, 10 * CREDIT)
    cap = 2 * CREDIT
    r1, r2, r3, r4 = rid(), rid(), rid(), rid()
    with db.as_service() as conn:
        credits.reserve(conn, uid, r1, 1_500_000, cap)

    def over_cap(request_id: str, amount: int) -> Callable[[], None]:
        def run() -> None:
            with db.as_service() as conn:
                credits.reserve(conn, uid, request_id, amount, cap)
        return run

    assert sqlstate_of(over_cap(r2, 600_000)) == "P0403"
    assert assert_invariants(db, uid)["balance"] == 8_500_000
    with db.as_service() as conn:  # settled cost counts instead of the reservation: 1.5M -> 1.0M spent
        assert credits.settle(conn, r1, CREDIT) == CREDIT
        credits.reserve(conn, uid, r2, 600_000, cap)              # 1.6M spent
    assert sqlstate_of(over_cap(r3, 500_000)) == "P0403"          # 2.1M > cap
    with db.as_service() as conn:  # refunded reservations do not count
        assert credits.refund(conn, r2) == 600_000
        credits.reserve(conn, uid, r3, CREDIT, cap)               # 2.0M spent: exactly the cap
    assert sqlstate_of(over_cap(r4, 1)) == "P0403"
    with db.as_service() as conn:  # no cap: the same reservation goes through
        credits.reserve(conn, uid, r4, 1, None)
    st = assert_invariants(db, uid)
    assert st["balance"] == 10 * CREDIT - CREDIT - CREDIT - 1


def test_short_balance_is_reported_before_the_cap(db: Database) -> None:
    uid = funded_user(db, 100)

    def reserve() -> None:
        with db.as_service() as conn:
            credits.reserve(conn, uid, rid(), 200, 50)

    assert sqlstate_of(reserve) == "P0402"


def test_settle_below_reservation_returns_difference(db: Database) -> None:
    uid = funded_user(db, 10 * CREDIT)
    r = rid()
    with db.as_service() as conn:
        credits.reserve(conn, uid, r, 3 * CREDIT, None)
        assert credits.settle(conn, r, 1_250_000) == 1_250_000
    st = assert_invariants(db, uid)
    assert st["balance"] == 10 * CREDIT - 1_250_000
    assert st["ledger"][-1][1:] == ("settle", 1_750_000, 10 * CREDIT - 1_250_000, r)
    assert st["reservations"][r] == (3 * CREDIT, 1_250_000, "settled", True)


def test_settle_exactly_the_reservation_writes_no_extra_row(db: Database) -> None:
    uid = funded_user(db, 10 * CREDIT)
    r = rid()
    with db.as_service() as conn:
        credits.reserve(conn, uid, r, 3 * CREDIT, None)
        assert credits.settle(conn, r, 3 * CREDIT) == 3 * CREDIT
    st = assert_invariants(db, uid)
    assert kinds(st, r) == Counter({"reserve": 1})
    assert st["reservations"][r] == (3 * CREDIT, 3 * CREDIT, "settled", True)


def test_settle_above_reservation_takes_extra_from_balance(db: Database) -> None:
    uid = funded_user(db, 10 * CREDIT)
    r = rid()
    with db.as_service() as conn:
        credits.reserve(conn, uid, r, 3 * CREDIT, None)
        assert credits.settle(conn, r, 4 * CREDIT) == 4 * CREDIT
    st = assert_invariants(db, uid)
    assert st["balance"] == 6 * CREDIT
    assert st["ledger"][-1][1:] == ("settle", -CREDIT, 6 * CREDIT, r)


def test_settle_above_reservation_takes_at_most_the_balance(db: Database) -> None:
    uid = funded_user(db, 1000)
    r = rid()
    with db.as_service() as conn:
        assert credits.reserve(conn, uid, r, 600, None) == 400
        assert credits.settle(conn, r, 5000) == 1000  # reservation 600 + the remaining balance 400
    st = assert_invariants(db, uid)
    assert st["balance"] == 0
    assert st["ledger"][-2][1:] == ("settle", -400, 0, r)
    # What could not be collected is recorded, never written off silently.
    assert st["ledger"][-1][1:] == ("shortfall", 0, 0, r)
    with db.as_service() as conn:
        row = conn.execute("select uncollected from public.credit_ledger where request_id = %s and kind = "
                           "'shortfall'", [r]).fetchone()
        res = conn.execute("select shortfall from public.credit_reservations where request_id = %s", [r]).fetchone()
    assert row == (4000,) and res == (4000,)
    assert st["reservations"][r] == (600, 1000, "settled", True)


def test_settle_twice_is_idempotent(db: Database) -> None:
    uid = funded_user(db, 10 * CREDIT)
    r = rid()
    with db.as_service() as conn:
        credits.reserve(conn, uid, r, 3 * CREDIT, None)
        assert credits.settle(conn, r, CREDIT) == CREDIT
    before = assert_invariants(db, uid)
    with db.as_service() as conn:
        assert credits.settle(conn, r, CREDIT) == CREDIT
        assert credits.settle(conn, r, 2 * CREDIT) == CREDIT  # a different amount changes nothing either
    after = assert_invariants(db, uid)
    assert after == before
    assert kinds(after, r) == Counter({"reserve": 1, "settle": 1})


def test_refund_twice_is_idempotent(db: Database) -> None:
    uid = funded_user(db, 10 * CREDIT)
    r = rid()
    with db.as_service() as conn:
        credits.reserve(conn, uid, r, 3 * CREDIT, None)
        assert credits.refund(conn, r) == 3 * CREDIT
    before = assert_invariants(db, uid)
    assert before["balance"] == 10 * CREDIT
    with db.as_service() as conn:
        assert credits.refund(conn, r) == 0
    after = assert_invariants(db, uid)
    assert after == before
    assert kinds(after, r) == Counter({"reserve": 1, "refund": 1})
    assert after["reservations"][r] == (3 * CREDIT, 0, "refunded", True)


def test_refund_after_settle_changes_nothing(db: Database) -> None:
    uid = funded_user(db, 10 * CREDIT)
    r = rid()
    with db.as_service() as conn:
        credits.reserve(conn, uid, r, 3 * CREDIT, None)
        credits.settle(conn, r, 2 * CREDIT)
    before = assert_invariants(db, uid)
    with db.as_service() as conn:
        assert credits.refund(conn, r) == 0
    assert assert_invariants(db, uid) == before


def test_settle_after_refund_changes_nothing(db: Database) -> None:
    uid = funded_user(db, 10 * CREDIT)
    r = rid()
    with db.as_service() as conn:
        credits.reserve(conn, uid, r, 3 * CREDIT, None)
        credits.refund(conn, r)
    before = assert_invariants(db, uid)
    with db.as_service() as conn:
        assert credits.settle(conn, r, 2 * CREDIT) == 0
    assert assert_invariants(db, uid) == before


def test_settle_unknown_request_p0404_and_refund_unknown_is_zero(db: Database) -> None:
    def settle() -> None:
        with db.as_service() as conn:
            credits.settle(conn, rid(), 1)

    assert sqlstate_of(settle) == "P0404"
    with db.as_service() as conn:
        assert credits.refund(conn, rid()) == 0


def test_reserve_retry_after_settle_does_not_reserve_again(db: Database) -> None:
    """A retried reserve after the request was settled must not reserve a second time."""
    uid = funded_user(db, 10 * CREDIT)
    r = rid()
    with db.as_service() as conn:
        credits.reserve(conn, uid, r, 3 * CREDIT, None)
        credits.settle(conn, r, CREDIT)
        assert credits.reserve(conn, uid, r, 3 * CREDIT, None) == 9 * CREDIT
    st = assert_invariants(db, uid)
    assert kinds(st, r) == Counter({"reserve": 1, "settle": 1})


# --- Concurrency: threads, each with its own connection ---------------------------------------------------------------

@pytest.fixture(scope="module")
def big_db(database_urls: tuple[str, str]) -> Iterator[Database]:
    """A second pool (the app's login role) with room for 45 simultaneous connections."""
    database = Database(database_urls[1], min_size=45, max_size=45)
    database.open()
    database.pool.wait(timeout=60)
    yield database
    database.close()


class BalanceWatcher:
    """Reads the balance over and over from its own connection while a test runs; remembers the minimum."""

    def __init__(self, url: str, uid: str) -> None:
        self.url, self.uid = url, uid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                with conn.transaction():
                    conn.execute("select set_config('role', 'service_role', true)")
                    row = conn.execute("select balance from public.credit_accounts where user_id = %s",
                                       [self.uid]).fetchone()
                self.samples.append(int(row[0]) if row else 0)
                self._ready.set()

    def __enter__(self) -> BalanceWatcher:
        self._thread.start()
        assert self._ready.wait(timeout=30), "balance watcher did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def run_together(n: int, work: Callable[[int, psycopg.Connection], Any], db: Database) -> tuple[list[Any], float]:
    """Run work(i, conn) in n threads, each inside its own as_service transaction on its own connection; all
    threads hold their connection before any starts. Returns the results (value or ('error', sqlstate)) and the
    seconds from the common start to the last finish."""
    barrier = threading.Barrier(n + 1)

    def one(i: int) -> Any:
        try:
            with db.as_service() as conn:
                barrier.wait(timeout=60)
                return work(i, conn)
        except psycopg.Error as exc:
            return ("error", exc.sqlstate)

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        barrier.wait(timeout=60)
        start = time.perf_counter()
        results = [f.result(timeout=120) for f in futures]
        elapsed = time.perf_counter() - start
    return results, elapsed


def test_concurrent_reserve_then_settle_and_refund(big_db: Database, database_urls: tuple[str, str]) -> None:
    n = 40
    uid = funded_user(big_db, 10_500_000)
    requests = [rid() for _ in range(n)]

    # Phase 1: 40 threads reserve 1,000,000 each at once against 10,500,000.
    with BalanceWatcher(database_urls[1], uid) as watcher:
        results, elapsed = run_together(n, lambda i, conn: credits.reserve(conn, uid, requests[i], CREDIT, None),
                                        big_db)
    ok = {requests[i]: r for i, r in enumerate(results) if not isinstance(r, tuple)}
    failed = [r for r in results if isinstance(r, tuple)]
    print(f"\n[credits] {n} concurrent reserves on one account: {elapsed * 1000:.1f} ms "
          f"({n / elapsed:.0f} reserve calls/s), {len(ok)} succeeded, {len(failed)} refused; "
          f"balance sampled {len(watcher.samples)} times, min {min(watcher.samples, default=None)}")
    assert len(ok) == 10, results
    assert failed == [("error", "P0402")] * 30
    # The balances the winners saw are all different: the account row serialised them.
    assert sorted(ok.values()) == [500_000 + k * CREDIT for k in range(10)]
    assert min(watcher.samples) >= 0
    st = assert_invariants(big_db, uid)
    assert st["balance"] == 500_000
    assert kinds(st) == Counter({"grant": 1, "reserve": 10})
    assert set(st["reservations"]) == set(ok)

    # Phase 2: close them concurrently, with duplicates. Every reservation is settled three times at once; four of
    # them also race two refunds against those settles; two refunds hit an unknown request id.
    winners = sorted(ok)
    actual = dict(zip(winners, [0, 100_000, 500_000, 999_999, CREDIT, 1_200_000, 2_000_000, 300_000, CREDIT,
                                700_000], strict=True))
    tasks: list[tuple[str, str]] = [("settle", r) for r in winners for _ in range(3)]
    tasks += [("refund", r) for r in winners[6:] for _ in range(2)]
    tasks += [("refund", rid()) for _ in range(2)]
    random.Random(7).shuffle(tasks)  # noqa: S311 - test ordering only

    def close(i: int, conn: psycopg.Connection) -> int:
        op, r = tasks[i]
        return credits.settle(conn, r, actual[r]) if op == "settle" else credits.refund(conn, r)

    with BalanceWatcher(database_urls[1], uid) as watcher:
        results, elapsed = run_together(len(tasks), close, big_db)
    print(f"[credits] {len(tasks)} concurrent settle/refund calls (30 settles of 10 reservations, 10 refunds): "
          f"{elapsed * 1000:.1f} ms ({len(tasks) / elapsed:.0f} calls/s); balance min {min(watcher.samples)}")
    assert not [r for r in results if isinstance(r, tuple)], results
    assert min(watcher.samples) >= 0

    st = assert_invariants(big_db, uid)
    by_request: dict[str, list[tuple[str, int]]] = {}
    for (op, r), value in zip(tasks, results, strict=True):
        by_request.setdefault(r, []).append((op, value))
    for r in winners:
        amount, charged, status, closed = st["reservations"][r]
        calls = by_request[r]
        assert closed and status in ("settled", "refunded"), (r, status)
        closing = kinds(st, r)
        assert closing["reserve"] == 1
        assert closing["settle"] + closing["refund"] <= 1, f"{r} closed more than once: {closing}"
        if status == "settled":
            assert all(v == charged for op, v in calls if op == "settle"), calls
            assert all(v == 0 for op, v in calls if op == "refund"), calls
            assert charged <= actual[r]
            assert closing["settle"] == (1 if charged != amount else 0)
            assert closing["shortfall"] == (1 if charged < actual[r] else 0)  # never written off silently
            assert closing["refund"] == 0
            if charged < actual[r] and charged != amount:  # capped: the balance went to zero for it
                row = next(x for x in st["ledger"] if x[4] == r and x[1] == "settle")
                assert row[3] == 0
            # (capped with the balance already at zero: the charge is exactly the reservation, so no settle row)
        else:
            assert charged == 0
            assert sorted(v for op, v in calls if op == "refund") == [0, amount]
            assert all(v == 0 for op, v in calls if op == "settle"), calls
            assert closing == Counter({"reserve": 1, "refund": 1})
    # Money is conserved: what is left is the grant minus what was finally charged.
    assert st["balance"] == 10_500_000 - sum(v[1] or 0 for v in st["reservations"].values())
    outcome = Counter(st["reservations"][r][2] for r in winners)
    print(f"[credits] closed: {dict(outcome)}; final balance {st['balance']}")


def test_concurrent_overruns_never_take_the_balance_below_zero(big_db: Database,
                                                              database_urls: tuple[str, str]) -> None:
    """Ten reservations of 1,000,000 each settled at 1,200,000 (three times each, all at once) with only 500,000
    left over: the overruns share out exactly the 500,000 (200k, 200k, 100k, then nothing) and the balance ends at 0."""
    uid = funded_user(big_db, 10_500_000)
    requests = [rid() for _ in range(10)]
    with big_db.as_service() as conn:
        for r in requests:
            credits.reserve(conn, uid, r, CREDIT, None)
    tasks = [r for r in requests for _ in range(3)]
    random.Random(11).shuffle(tasks)  # noqa: S311 - test ordering only
    with BalanceWatcher(database_urls[1], uid) as watcher:
        results, elapsed = run_together(len(tasks), lambda i, conn: credits.settle(conn, tasks[i], 1_200_000),
                                        big_db)
    print(f"\n[credits] {len(tasks)} concurrent over-budget settles: {elapsed * 1000:.1f} ms; "
          f"balance min {min(watcher.samples)}")
    assert not [r for r in results if isinstance(r, tuple)], results
    st = assert_invariants(big_db, uid)
    assert st["balance"] == 0
    charged = {r: st["reservations"][r][1] for r in requests}
    assert sorted(charged.values()) == [CREDIT] * 7 + [1_100_000, 1_200_000, 1_200_000]
    for r, value in zip(tasks, results, strict=True):
        assert value == charged[r], "a duplicate settle returned a different charge"
    # Seven settles found no balance left and one found only 100k of its 200k: eight shortfall rows.
    assert kinds(st) == Counter({"grant": 1, "reserve": 10, "settle": 3, "shortfall": 8})
    assert min(watcher.samples) >= 0


def test_reservation_throughput(big_db: Database) -> None:
    """Not a benchmark gate: records how many reservations per second one contended account and 40 independent
    accounts take, and checks the invariants afterwards."""
    threads, per_thread, amount = 40, 25, 1000
    shared = funded_user(big_db, threads * per_thread * amount)
    separate = [funded_user(big_db, per_thread * amount) for _ in range(threads)]

    def run(user_for: Callable[[int], str]) -> float:
        barrier = threading.Barrier(threads + 1)

        def worker(i: int) -> None:
            barrier.wait(timeout=60)
            for _ in range(per_thread):
                with big_db.as_service() as conn:
                    credits.reserve(conn, user_for(i), rid(), amount, None)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(worker, i) for i in range(threads)]
            barrier.wait(timeout=60)
            start = time.perf_counter()
            for f in futures:
                f.result(timeout=120)
            return time.perf_counter() - start

    total = threads * per_thread
    t_shared = run(lambda i: shared)
    t_separate = run(lambda i: separate[i])
    print(f"\n[credits] {total} reservations, {threads} threads, one account: {t_shared:.2f} s "
          f"({total / t_shared:.0f}/s); {threads} separate accounts: {t_separate:.2f} s ({total / t_separate:.0f}/s)")
    st = assert_invariants(big_db, shared)
    assert st["balance"] == 0
    assert kinds(st) == Counter({"grant": 1, "reserve": total})
    for uid in separate:
        assert assert_invariants(big_db, uid)["balance"] == 0


# --- Concurrency: separate processes --------------------------------------------------------------------------------

def _process_reserver(url: str, uid: str, count: int, amount: int, barrier: Any, out: Any) -> None:
    """Runs in a spawned process: its own pool and connection, `count` reservations one after another."""
    database = Database(url, min_size=1, max_size=1)
    database.open()
    results: list[Any] = []
    try:
        database.pool.wait(timeout=60)
        barrier.wait(timeout=120)
        start = time.perf_counter()
        for _ in range(count):
            try:
                with database.as_service() as conn:
                    results.append(credits.reserve(conn, uid, str(uuid.uuid4()), amount, None))
            except psycopg.Error as exc:
                results.append(("error", exc.sqlstate))
        out.put(("ok", results, time.perf_counter() - start))
    except Exception as exc:  # report instead of dying silently
        out.put(("crash", repr(exc), 0.0))
    finally:
        database.close()


def test_multiprocess_reservations_on_one_account(db: Database, database_urls: tuple[str, str]) -> None:
    processes, per_process = 4, 10
    uid = funded_user(db, 30 * CREDIT + 500_000)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_reserver, args=(database_urls[1], uid, per_process, CREDIT, barrier, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    reports = []
    try:
        for _ in range(processes):
            reports.append(out.get(timeout=180))
    except queue.Empty:
        pytest.fail(f"only {len(reports)} of {processes} processes reported")
    finally:
        for p in procs:
            p.join(timeout=60)
    assert all(status == "ok" for status, _, _ in reports), reports
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    results = [r for _, rs, _ in reports for r in rs]
    ok = [r for r in results if not isinstance(r, tuple)]
    failed = [r for r in results if isinstance(r, tuple)]
    slowest = max(t for _, _, t in reports)
    print(f"\n[credits] {processes} processes x {per_process} reservations on one account: {slowest * 1000:.1f} ms "
          f"({len(results) / slowest:.0f} reserve calls/s), {len(ok)} succeeded, {len(failed)} refused")
    assert len(ok) == 30
    assert failed == [("error", "P0402")] * 10
    assert sorted(ok) == [500_000 + k * CREDIT for k in range(30)]
    st = assert_invariants(db, uid)
    assert st["balance"] == 500_000
    assert kinds(st) == Counter({"grant": 1, "reserve": 30})

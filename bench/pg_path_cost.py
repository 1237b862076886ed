"""Postgres server time of one member request's two statements (public.gateway_begin + public.gateway_close), and
where it goes (each function and trigger function they run), measured on an otherwise idle connection.

    .venv/bin/python bench/pg_path_cost.py [-n 2000] [--rounds 5] [--modes json-jwt,json-key,stream-jwt,stream-key]
                                           [--clients K] [--explain] [--sql FILE ... [--ab]]

1. Recreates the database `switchboard_bench_pgcost` (BENCH_DATABASE_NAME picks another) seeded exactly as
   bench/proxy_bench.py seeds it (provider `bench` on bench/fast_upstream.py, rates, an admin key, a member-mode
   user with plenty of credits, a live session and a personal API key), starts the fast upstream.
2. Drives the real Flask app in process (test client) for each mode (JSON / streaming, JWT / API key) until its
   context is held, and captures the two statements the gateway sends for one request, verbatim (role/claims
   prefix, arguments, receipt JSON).
3. Replays each mode's pair N times per round on one connection of the app's role (autocommit, no prepared
   statements: as the app sends them), with a fresh request id each time (reservation, stream slot, receipt):
   - timing rounds (track_functions off): client wall time of each statement;
   - breakdown rounds (track_functions = 'all' for the database): pg_stat_user_functions deltas, i.e. the server
     time of gateway_begin / gateway_close and self/total time of every function and trigger function below them.
   With --clients K the pairs run on K connections at once (one user: the contention of proxy_bench's 20
   connections on the user's rate window and wallet); CPU is then summed over the K backends.
   Medians over the rounds are printed. --sql FILE applies a candidate change after the set-up; with --ab a second
   database without it is measured in alternating rounds (same machine noise for both). With --explain, one more
   pair runs under auto_explain (nested statements, ANALYZE, BUFFERS) and its plans are printed.
The rows the replays write are real (ledger, reservations, receipts, rollups): the accounting check at the end
verifies ledger reserves = settles = receipts for the user.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("BENCH_DATABASE_NAME", "switchboard_bench_pgcost")

import proxy_bench  # noqa: E402
import psycopg  # noqa: E402

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MODES = ("json-jwt", "json-key", "stream-jwt", "stream-key")

Captured = tuple[type, str, Any]  # (cursor class, query, params)


def capture(fx: Any, mode: str) -> tuple[Captured, Captured]:
    """The gateway_begin and gateway_close statements of one warm member request of this mode, as sent."""
    import json
    import threading

    from webapp import create_app

    stream = mode.startswith("stream")
    auth = fx.api_keys[0] if mode.endswith("key") else fx.tokens[0]
    body: dict[str, Any] = {"model": "bench/echo-1", "messages": proxy_bench.MESSAGES, "max_tokens": 64}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    main = threading.get_ident()
    seen: list[Captured] = []
    orig = psycopg.ClientCursor.execute

    def spy(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        if threading.get_ident() == main and isinstance(query, str) and (
                "gateway_begin(" in query or "gateway_close(" in query):
            seen.append((type(self), query, list(params) if isinstance(params, list) else dict(params or {})))
        return orig(self, query, params, **kw)

    app = create_app(fx.env)
    client = app.test_client()
    psycopg.ClientCursor.execute = spy  # type: ignore[method-assign]
    try:
        for _ in range(5):
            seen.clear()
            r = client.post("/v1/chat/completions", data=json.dumps(body),
                            headers={"Authorization": f"Bearer {auth}", "Content-Type": "application/json"})
            r.get_data()
            if r.status_code != 200:
                raise RuntimeError(f"{mode}: HTTP {r.status_code} {r.get_data()[:300]!r}")
    finally:
        psycopg.ClientCursor.execute = orig  # type: ignore[method-assign]
        app.extensions["switchboard"].logs.flush()
        app.extensions["switchboard"].db.close()
    begins = [c for c in seen if "gateway_begin(" in c[1]]
    closes = [c for c in seen if "gateway_close(" in c[1]]
    if len(begins) != 1 or len(closes) != 1 or len(seen) != 2:
        raise RuntimeError(f"{mode}: expected one gateway_begin and one gateway_close, saw "
                           f"{[c[1][-60:] for c in seen]}")
    return begins[0], closes[0]


def request_id_of(close: Captured) -> str:
    params = close[2]
    values = params.values() if isinstance(params, dict) else params
    for v in values:
        if isinstance(v, str) and UUID_RE.match(v):
            return v
    raise RuntimeError("no request id among gateway_close's arguments")


def substitute(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, bytes):
        return value.replace(old.encode(), new.encode())
    return value


def with_id(stmt: Captured, old: str, new: str) -> Captured:
    cls, query, params = stmt
    if isinstance(params, dict):
        return cls, query, {k: substitute(v, old, new) for k, v in params.items()}
    return cls, query, [substitute(v, old, new) for v in params]


def run_pair(conn: psycopg.Connection, begin: Captured, close: Captured, old: str) -> tuple[float, float]:
    new = str(uuid.uuid4())
    out = []
    for stmt in (begin, close):
        cls, query, params = with_id(stmt, old, new)
        cur = cls(conn)
        t0 = time.perf_counter()
        cur.execute(query, params)
        while cur.nextset():
            pass
        rows = cur.fetchall()
        out.append((time.perf_counter() - t0) * 1000)
        if "gateway_begin(" in query and '"reserve": {' not in str(rows[-1][0]).replace("'", '"'):
            raise RuntimeError(f"gateway_begin did not reserve in the same statement: {str(rows)[:300]}")
    return out[0], out[1]


def function_stats(admin: psycopg.Connection) -> dict[str, tuple[int, float, float]]:
    rows = admin.execute("select schemaname || '.' || funcname, calls, total_time, self_time "
                         "from pg_stat_user_functions").fetchall()
    out: dict[str, tuple[int, float, float]] = {}
    for name, calls, total, self_ in rows:  # overloads: summed
        c, t, s = out.get(name, (0, 0.0, 0.0))
        out[name] = (c + calls, t + total, s + self_)
    return out


def set_tracking(admin_url: str, db: str, on: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as a:
        if on:
            a.execute(f'alter database "{db}" set track_functions = \'all\'')
        else:
            a.execute(f'alter database "{db}" reset track_functions')


def backend_cpu_ms(pid: int) -> float:
    """CPU time (user + system) the Postgres backend has used, from /proc (same machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def one_round(fx: Any, begin: Captured, close: Captured, n: int, tracked: bool, clients: int = 1) -> dict[str, Any]:
    """n pairs on `clients` connections at once (each its own thread, the same user: the gateway's contention on the
    user's rows), after a warm-up; CPU is the sum of those backends' CPU per pair."""
    from concurrent.futures import ThreadPoolExecutor

    old = request_id_of(close)
    app_url = fx.env["DATABASE_URL"]
    conns = [psycopg.connect(app_url, autocommit=True, prepare_threshold=None) for _ in range(clients)]
    try:
        for conn in conns:
            for _ in range(50):  # plans cached, pages warm
                run_pair(conn, begin, close, old)
            conn.execute("select pg_stat_force_next_flush()")
            conn.execute("select 1")
        pids = [conn.info.backend_pid for conn in conns]
        with psycopg.connect(fx.admin_url, autocommit=True) as admin, ThreadPoolExecutor(clients) as pool:
            before = function_stats(admin) if tracked else {}
            cpu0 = sum(backend_cpu_ms(pid) for pid in pids)
            per = n // clients
            parts = pool.map(lambda c: [run_pair(c, begin, close, old) for _ in range(per)], conns)
            walls = [w for part in parts for w in part]
            cpu = (sum(backend_cpu_ms(pid) for pid in pids) - cpu0) / len(walls)
            for conn in conns:
                conn.execute("select pg_stat_force_next_flush()")
                conn.execute("select 1")
            after = function_stats(admin) if tracked else {}
    finally:
        for conn in conns:
            conn.close()
    funcs = {}
    for name, (c, t, s) in after.items():
        c0, t0, s0 = before.get(name, (0, 0.0, 0.0))
        if c - c0:
            funcs[name] = ((c - c0) / len(walls), (t - t0) / len(walls), (s - s0) / len(walls))
    return {"begin": statistics.mean(w[0] for w in walls), "close": statistics.mean(w[1] for w in walls),
            "begin_p50": statistics.median(w[0] for w in walls), "close_p50": statistics.median(w[1] for w in walls),
            "cpu": cpu, "funcs": funcs}


def explain_once(fx: Any, begin: Captured, close: Captured) -> str:
    """One pair under auto_explain (ANALYZE, BUFFERS, nested statements), its plans returned as notices."""
    old = request_id_of(close)
    plans: list[str] = []
    with psycopg.connect(fx.admin_url, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
        conn.execute("load 'auto_explain'")
        for k, v in (("log_min_duration", "0"), ("log_analyze", "on"), ("log_buffers", "on"),
                     ("log_nested_statements", "on"), ("log_timing", "on"), ("log_level", "notice")):
            conn.execute(f"set auto_explain.{k} = {v}")
        run_pair(conn, begin, close, old)  # plans cached, as on a warm connection
        plans.clear()
        run_pair(conn, begin, close, old)
    return "\n".join(plans)


def accounting(fx: Any) -> dict[str, int]:
    return proxy_bench.accounting(fx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=2000, help="member requests per round and mode")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", default="json-jwt,json-key,stream-jwt,stream-key")
    ap.add_argument("--explain", action="store_true")
    ap.add_argument("--sql", action="append", default=[],
                    help="an SQL file run as the superuser after the set-up (a candidate migration)")
    ap.add_argument("--base-sql", action="append", default=[],
                    help="an SQL file applied to both databases of --ab (before --sql)")
    ap.add_argument("--ab", action="store_true",
                    help="A/B: a second database without the --sql files, rounds alternating between the two")
    ap.add_argument("--ab-labels", default="A (without --sql),B (with --sql)",
                    help="the two databases' names in the report, e.g. 'after,before' with --sql reverting a change")
    ap.add_argument("--clients", type=int, default=1,
                    help="connections replaying at once (one user, as proxy_bench's 20 connections contend)")
    ap.add_argument("--top", type=int, default=14, help="functions listed in the breakdown")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= set(MODES):
        ap.error(f"modes: {', '.join(MODES)}")
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / ".local" / "tiktoken"))
    stack = proxy_bench.Stack(Path(tempfile.mkdtemp(prefix="pgcost-")))
    try:
        upstream = proxy_bench.start_upstream(stack)
        base = proxy_bench.DB_NAME
        variants: dict[str, tuple[str, Any]] = {}
        pre = args.base_sql
        label_a, label_b = args.ab_labels.split(",", 1)
        for label, db, sql in (([label_a, base + "_a", pre], [label_b, base, pre + args.sql])
                               if args.ab else [["", base, pre + args.sql]]):
            proxy_bench.DB_NAME = db
            fx = proxy_bench.prepare_database(upstream, 1)
            for path in sql:
                with psycopg.connect(fx.admin_url, autocommit=True) as a:
                    a.execute(Path(path).read_text())  # type: ignore[call-overload]
                print(f"{db}: applied {path}")
            variants[label] = (db, fx)
        print(f"pg_path_cost: databases {', '.join(db for db, _ in variants.values())}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}; {args.n} member requests x {args.rounds} rounds per mode "
              "(medians of the rounds' means)", flush=True)
        captured = {(label, m): capture(fx, m) for label, (_, fx) in variants.items() for m in modes}
        ok = True
        for mode in modes:
            results: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {v: ([], []) for v in variants}
            for _ in range(args.rounds):
                for label, (db, fx) in variants.items():
                    begin, close = captured[(label, mode)]
                    set_tracking(fx.admin_url, db, False)
                    results[label][0].append(one_round(fx, begin, close, args.n, False, args.clients))
                    set_tracking(fx.admin_url, db, True)
                    results[label][1].append(one_round(fx, begin, close, args.n, True, args.clients))
                    set_tracking(fx.admin_url, db, False)
            for label, (timing, breakdown) in results.items():
                report(f"{mode} {label}".strip(), timing, breakdown, args.top)
            if args.explain:
                for label, (_, fx) in variants.items():
                    begin, close = captured[(label, mode)]
                    print(f"  auto_explain, one pair ({label or 'this database'}):")
                    print(explain_once(fx, begin, close))
        for db, fx in variants.values():
            acc = accounting(fx)
            exact = acc["reserve"] == acc["settle"] + acc["refund"] == acc["log_all"]
            ok = ok and exact
            print(f"accounting {db}: {acc} -> {'exact' if exact else 'MISMATCH'}")
        return 0 if ok else 1
    finally:
        stack.stop_all()


def med(values: list[float]) -> float:
    return statistics.median(values)


def report(mode: str, timing: list[dict[str, Any]], breakdown: list[dict[str, Any]], top: int) -> None:
    wb, wc = med([r["begin"] for r in timing]), med([r["close"] for r in timing])
    walls = [r["begin"] + r["close"] for r in timing]
    fb = [r["funcs"] for r in breakdown]

    def total(name: str) -> float:
        return med([f.get(name, (0, 0.0, 0.0))[1] for f in fb])

    sb, sc = total("public.gateway_begin"), total("public.gateway_close")
    print(f"\n{mode}: client wall (track_functions off) begin {wb:.3f} + close {wc:.3f} = {wb + wc:.3f} ms "
          f"(p50 {med([r['begin_p50'] for r in timing]):.3f} + {med([r['close_p50'] for r in timing]):.3f}); "
          f"rounds {' '.join(f'{x:.2f}' for x in walls)}")
    both = [f.get("public.gateway_begin", (0, 0.0, 0.0))[1] + f.get("public.gateway_close", (0, 0.0, 0.0))[1]
            for f in fb]
    cpus = [r["cpu"] for r in timing]
    print(f"  backend CPU per request (track_functions off): {med(cpus):.3f} ms; rounds "
          f"{' '.join(f'{x:.2f}' for x in cpus)}")
    print(f"  server (track_functions): gateway_begin {sb:.3f} + gateway_close {sc:.3f} = {sb + sc:.3f} ms "
          f"per request; rounds {' '.join(f'{x:.2f}' for x in both)}")
    names = sorted({n for f in fb for n in f}, key=lambda n: -total(n))
    print(f"  {'calls':>6} {'total ms':>9} {'self ms':>8}  function (per request, medians)")
    for name in names[:top]:
        calls = med([f.get(name, (0, 0.0, 0.0))[0] for f in fb])
        self_ = med([f.get(name, (0, 0.0, 0.0))[2] for f in fb])
        print(f"  {calls:6.2f} {total(name):9.3f} {self_:8.3f}  {name}")


if __name__ == "__main__":
    sys.exit(main())

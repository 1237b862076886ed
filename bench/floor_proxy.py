"""The floor of exact per-request accounting: bench/bare_proxy.py plus the least Postgres work any design that
charges each request exactly and durably must do, and nothing else (no authentication, no rate limit, no caps, no
log, no rollups, no routing). Before forwarding, one autocommitted statement holds the request's bound on the
caller's wallet row (refused when the balance cannot cover it); after the answer, one autocommitted statement
settles it and writes the receipt. The proxy benchmark (bench/proxy_bench.py) serves it as a third reference
beside the bare pass-through: Switchboard cannot be faster than this floor while it keeps its guarantees.

Serve with `gunicorn -c gunicorn.conf.py --pythonpath bench floor_proxy:app`; BARE_UPSTREAM is the upstream's /v1,
FLOOR_DATABASE_URL a database where this module may create its two tables (`floor_wallets`, `floor_receipts`)."""

import os
import uuid

import requests
from flask import Flask, Response, request
from psycopg_pool import ConnectionPool
from requests.adapters import HTTPAdapter

UPSTREAM = os.environ.get("BARE_UPSTREAM", "http://127.0.0.1:9/v1").rstrip("/") + "/chat/completions"
HOLD = 5_000  # the request's bound, in micro-credits
CHARGE = 1_234  # what it settles at

SCHEMA = """
create table if not exists floor_wallets (id int primary key, balance bigint not null, held bigint not null);
create table if not exists floor_receipts (request_id uuid primary key, wallet int not null, amount bigint not null,
    created_at timestamptz not null default now());
insert into floor_wallets values (1, 1000000000000000, 0) on conflict (id) do nothing;
"""
HOLD_SQL = "update floor_wallets set held = held + %s where id = 1 and balance - held >= %s returning id"
SETTLE_SQL = """
with w as (update floor_wallets set held = held - %(hold)s, balance = balance - %(amount)s where id = 1)
insert into floor_receipts (request_id, wallet, amount) values (%(rid)s, 1, %(amount)s)
"""

app = Flask(__name__)
session = requests.Session()
session.trust_env = False
session.mount("http://", HTTPAdapter(pool_connections=8, pool_maxsize=64, max_retries=0))  # as Switchboard's
pool = ConnectionPool(os.environ.get("FLOOR_DATABASE_URL", ""), min_size=4, max_size=16, open=False,
                      kwargs={"autocommit": True})


def _open() -> None:
    if pool.closed:
        pool.open(wait=True)
        with pool.connection() as conn:
            conn.execute("select pg_advisory_lock(4242)")
            try:
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
            finally:
                conn.execute("select pg_advisory_unlock(4242)")


def _settle(rid: uuid.UUID) -> None:
    with pool.connection() as conn:
        conn.execute(SETTLE_SQL, {"hold": HOLD, "amount": CHARGE, "rid": rid})


@app.post("/v1/chat/completions")
def chat_completions() -> Response:
    _open()
    with pool.connection() as conn:
        if conn.execute(HOLD_SQL, (HOLD, HOLD)).fetchone() is None:
            return Response('{"error":"insufficient credits"}', status=402, content_type="application/json")
    rid = uuid.uuid4()
    headers = {"Content-Type": "application/json", "Authorization": request.headers.get("Authorization", "")}
    try:
        up = session.post(UPSTREAM, data=request.get_data(), headers=headers, stream=True, timeout=(5, 120))
    except requests.RequestException:
        _settle_zero(rid)
        raise
    ctype = up.headers.get("Content-Type", "application/json")
    if not ctype.startswith("text/event-stream"):
        with up:
            body = up.content
        _settle(rid)
        return Response(body, status=up.status_code, content_type=ctype)

    def relay():
        try:
            with up:
                while data := up.raw.read1(16 * 1024):
                    yield data
        finally:  # a client that goes away mid-stream is still charged
            _settle(rid)

    return Response(relay(), status=up.status_code, content_type=ctype)


def _settle_zero(rid: uuid.UUID) -> None:
    with pool.connection() as conn:
        conn.execute(SETTLE_SQL, {"hold": HOLD, "amount": 0, "rid": rid})


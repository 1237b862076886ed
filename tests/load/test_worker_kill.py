"""Issue 14: `kill -9` of the gunicorn workers while member requests are in flight (a JSON request waiting for its
upstream and a stream stalled after its first chunks, both holding a credit reservation, the stream also a stream
slot). Afterwards: the master has replaced the workers, which serve again; the sweeper refunds exactly the two open
reservations; a late settle of a killed request changes nothing (never charged twice); ledger = balance; every
settled reservation has exactly one receipt row; and the dead stream's slot no longer counts once it is stale."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.load.harness import GunicornServer, add_provider, make_user
from tests.load.pgcluster import free_port
from tests.support import dbsetup
from tests.support.upstreams import start_openai_upstream
from webapp.config import load_settings
from webapp.crypto import KeyRing
from webapp.db import Database
from webapp.services import credits as credits_service

pytestmark = pytest.mark.timeout(180)

KEY = "sk-canary-kill-admin-7c1d9e3f5a2b"
GRANT = 1_000_000_000


def _chat(url: str, token: str, model: str, stream: bool, timeout: float = 30.0) -> requests.Response:
    return requests.post(f"{url}/v1/chat/completions", timeout=timeout, stream=stream,
                         headers={"Authorization": f"Bearer {token}"},
                         json={"model": model, "stream": stream, "max_tokens": 40,
                               "messages": [{"role": "user", "content": "Say the pangram"}]})


def _open_reservations(conn: psycopg.Connection, user_id: str) -> list[str]:
    rows = conn.execute("select request_id::text from public.credit_reservations where user_id = %s"
                        " and status = 'reserved' order by created_at", [user_id]).fetchall()
    return [r[0] for r in rows]


def _books(conn: psycopg.Connection, user_id: str) -> dict[str, Any]:
    row = conn.execute(
        """select (select balance from public.credit_accounts where user_id = %(u)s),
                  (select coalesce(sum(delta), 0) from public.credit_ledger where user_id = %(u)s),
                  (select count(*) from public.credit_reservations where user_id = %(u)s and status = 'settled'),
                  (select coalesce(sum(charged), 0) from public.credit_reservations where user_id = %(u)s),
                  (select count(*) from public.credit_reservations r where user_id = %(u)s and status = 'settled'
                     and (select count(*) from public.llm_request_logs l where l.request_id = r.request_id) = 1),
                  (select coalesce(sum(credits), 0) from public.llm_request_logs where user_id = %(u)s)""",
        {"u": user_id}).fetchone()
    assert row is not None
    return {"balance": int(row[0]), "ledger": int(row[1]), "settled": int(row[2]), "charged": int(row[3]),
            "settled_with_one_receipt": int(row[4]), "receipts_credits": int(row[5])}


def _in_background(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # the connection dies with the worker: that is the point
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_kill_9_of_workers_mid_request(tmp_path: Path) -> None:
    name = os.environ.get("TEST_DATABASE_NAME", "switchboard_test") + "_kill"
    admin_url, app_url = dbsetup.create_test_database(name)
    up = start_openai_upstream(api_key=KEY)
    up.hang_seconds = 60.0  # far beyond the kill; stop() cuts it short
    env = dbsetup.test_environ(app_url, admin_url, UPSTREAM_READ_TIMEOUT="60", RATE_LIMIT_PER_MINUTE="0",
                               MAX_CONCURRENT_STREAMS="1", STREAM_STALE_SECONDS="60")
    settings = load_settings(env)
    server = GunicornServer(env, tmp_path / "gunicorn.log", free_port(), workers=2, threads=4)
    db = Database(admin_url)
    db.open()
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            add_provider(conn, KeyRing(settings.encryption_keys), "kill", "openai", up.base_url, "1.0", 1, KEY,
                         ("echo-1", "echo-1@hang", "echo-1@stall:2"))
            user = make_user(conn, settings, "killed", "member", GRANT)
        server.start()
        for _ in range(4):  # both workers hold the user's context now (the one-statement path)
            with _chat(server.url, user.token, "kill/echo-1", False) as r:
                assert r.status_code == 200, r.text
        with psycopg.connect(admin_url, autocommit=True) as conn:
            before = _books(conn, user.id)
            assert before["settled"] == 4 and before["balance"] == GRANT - before["charged"]

            # In flight: a JSON request waiting for its upstream, and a stream stalled after two chunks.
            json_thread, _ = _in_background(lambda: _chat(server.url, user.token, "kill/echo-1@hang", False).close())
            first_chunk = threading.Event()

            def stream() -> None:
                with _chat(server.url, user.token, "kill/echo-1@stall:2", True) as r:
                    for _ in r.iter_content(chunk_size=None):
                        first_chunk.set()

            stream_thread, _ = _in_background(stream)
            assert first_chunk.wait(20), "the stream did not start"
            deadline = time.monotonic() + 20
            while len(open_ids := _open_reservations(conn, user.id)) < 2:
                assert time.monotonic() < deadline, f"reservations in flight: {open_ids}"
                time.sleep(0.05)
            held = conn.execute("select coalesce(sum(amount), 0) from public.credit_reservations"
                                " where user_id = %s and status = 'reserved'", [user.id]).fetchone()
            assert held is not None and held[0] > 0
            slots = conn.execute("select count(*) from public.active_streams where user_id = %s",
                                 [user.id]).fetchone()
            assert slots is not None and slots[0] == 1

            # kill -9 of every worker: nothing of theirs runs any more (no finally, no refund)
            victims = server.worker_pids()
            assert len(victims) == 2
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            json_thread.join(30)
            stream_thread.join(30)
            assert not json_thread.is_alive() and not stream_thread.is_alive()
            assert sorted(_open_reservations(conn, user.id)) == sorted(open_ids)  # nobody closed them
            after_kill = _books(conn, user.id)
            assert after_kill["balance"] == before["balance"] - int(held[0])

            # The master replaces the workers; they serve. The dead stream's slot blocks a new stream only until
            # it is stale (STREAM_STALE_SECONDS), never for good.
            deadline = time.monotonic() + 30
            while not (server.worker_pids() and not server.worker_pids() & victims
                       and len(server.worker_pids()) == 2):
                assert time.monotonic() < deadline, "the workers were not replaced"
                time.sleep(0.2)
            with _chat(server.url, user.token, "kill/echo-1", False) as r:
                assert r.status_code == 200, r.text
            with _chat(server.url, user.token, "kill/echo-1", True) as r:  # the dead stream still counts
                assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_streams", r.text
            conn.execute("update public.active_streams set started_at = now() - interval '61 seconds'"
                         " where user_id = %s", [user.id])  # a minute later
            with _chat(server.url, user.token, "kill/echo-1", True) as r:
                assert r.status_code == 200, r.text
                assert r.content.rstrip().endswith(b"data: [DONE]")

            # The sweeper closes exactly the two reservations the dead workers left.
            assert credits_service.sweep(db, 0) == 2
            assert _open_reservations(conn, user.id) == []
            statuses = conn.execute("select status, charged from public.credit_reservations"
                                    " where request_id = any(%s::uuid[])", [open_ids]).fetchall()
            assert sorted(statuses) == [("refunded", 0), ("refunded", 0)]
            # A late settle of a killed request (its worker come back from the dead) charges nothing: never twice.
            for rid in open_ids:
                assert credits_service.settle(db, rid, 10**6) == 0
                assert credits_service.refund(db, rid) == 0
            assert credits_service.sweep(db, 0) == 0

            final = _books(conn, user.id)
            assert final["settled"] == 6  # the 4 before, the 2 after: the killed ones are refunded
            assert final["balance"] == GRANT - final["charged"]  # not a micro-credit lost or charged twice
            assert final["ledger"] == final["balance"]  # the ledger adds up to the balance
            assert final["settled_with_one_receipt"] == final["settled"]  # every charge has one receipt
            assert final["receipts_credits"] == final["charged"]
    finally:
        server.stop()
        up.stop()
        db.close()
        with contextlib.suppress(Exception), psycopg.connect(dbsetup.admin_base() + "/postgres",
                                                              autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')

"""Issue 14: the member request path in two statements, with every guarantee exact.

A worker keeps each caller's last context only as a guess to price the next reservation from; Postgres makes that
reservation only when the context it reads in the same statement has the same fingerprint. These tests change what
the guess was made from between two requests (an admin's price change, the user's cap, a signed-out session, a
revoked key, a ban) and check that the very next request sees the change."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.client_cursor
import psycopg.cursor
import pytest
from flask.testing import FlaskClient

from tests.support.upstreams import FakeUpstream, start_openai_upstream
from webapp.config import Settings
from webapp.crypto import KeyRing, admin_aad
from webapp.repos import credits as credits_repo
from webapp.services import api_keys

KEY = "sk-canary-hotpath-admin-4e2a8c1d9b7f"
RATE_IN, RATE_OUT = 1_000_000, 2_000_000


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = start_openai_upstream(api_key=KEY)
    yield up
    up.stop()


@pytest.fixture()
def provider(upstream: FakeUpstream, settings: Settings, database_urls: tuple[str, str]) -> Iterator[str]:
    """A provider of its own (last in every order, disabled afterwards): requests pin it as `<slug>/echo-1`."""
    slug = f"hot-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        row = conn.execute(
            """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
                   credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order)
               values (%s, %s, 'openai', %s, 'echo-1', true, 1.0, false, false, 990) returning id::text""",
            [slug, slug, upstream.base_url]).fetchone()
        assert row is not None
        conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate,
                        context_window) values (%s, 'echo-1', %s, %s, 8192)""", [row[0], RATE_IN, RATE_OUT])
        ciphertext, kid = KeyRing(settings.encryption_keys).encrypt(KEY, admin_aad(row[0]))
        conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label)
                        values (%s, %s, %s, %s, 'hot')""", [row[0], ciphertext, kid, KEY[-4:]])
    yield slug
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("update public.llm_providers set enabled = false where slug = %s", [slug])


@pytest.fixture()
def member(make_user: Any, db: Any) -> Any:
    user = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, 100_000_000, "hot path test grant", None)
    return user


@contextlib.contextmanager
def counting_statements() -> Iterator[list[int]]:
    """Statements this thread sends to Postgres (each one network round trip)."""
    me, count, patched = threading.get_ident(), [0], []
    for cls in (psycopg.cursor.Cursor, psycopg.client_cursor.ClientCursor):
        orig = cls._execute_send

        def counted(self: Any, *a: Any, _orig: Any = orig, **k: Any) -> Any:
            if threading.get_ident() == me:
                count[0] += 1
            return _orig(self, *a, **k)

        patched.append((cls, orig))
        cls._execute_send = counted  # type: ignore[method-assign]
    try:
        yield count
    finally:
        for cls, orig in patched:
            cls._execute_send = orig  # type: ignore[method-assign]


def chat(client: FlaskClient, token: str, slug: str, stream: bool = False, max_tokens: int | None = None) -> Any:
    body: dict[str, Any] = {"model": f"{slug}/echo-1", "messages": [{"role": "user", "content": "Say the pangram"}]}
    if stream:
        body["stream"] = True
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    resp = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"})
    resp.get_data()
    return resp


def books(db: Any, user_id: str) -> dict[str, int]:
    with db.as_service() as conn:
        row = conn.execute(
            """select (select balance from public.credit_accounts where user_id = %(u)s),
                      (select coalesce(sum(delta), 0) from public.credit_ledger where user_id = %(u)s),
                      (select count(*) from public.credit_ledger where user_id = %(u)s and kind = 'reserve'),
                      (select count(*) from public.credit_reservations where user_id = %(u)s and status = 'reserved'),
                      (select count(*) from public.llm_request_logs where user_id = %(u)s)""",
            {"u": user_id}).fetchone()
    assert row is not None
    return {"balance": int(row[0]), "ledger": int(row[1]), "reserves": int(row[2]), "open": int(row[3]),
            "receipts": int(row[4])}


def credits_of(resp: Any) -> int:
    return round(float(resp.headers["X-Switchboard-Credits"]) * 1_000_000)


def test_a_member_request_is_two_statements(client: FlaskClient, member: Any, provider: str, db: Any) -> None:
    assert chat(client, member.token, provider).status_code == 200  # the worker now holds the context
    for stream in (False, True):
        with counting_statements() as count:
            resp = chat(client, member.token, provider, stream)
        assert resp.status_code == 200
        assert count[0] == 2, f"{'stream' if stream else 'json'}: {count[0]} statements"
    b = books(db, member.id)
    assert b["reserves"] == 3 and b["receipts"] == 3 and b["open"] == 0 and b["ledger"] == b["balance"]


def test_an_admin_price_change_applies_to_the_next_request(client: FlaskClient, member: Any, provider: str,
                                                           db: Any, database_urls: tuple[str, str]) -> None:
    first = chat(client, member.token, provider)
    assert first.status_code == 200
    same = chat(client, member.token, provider)
    assert credits_of(same) == credits_of(first) > 0
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("""update public.llm_model_rates set input_rate = input_rate * 3, output_rate = output_rate * 3
                        where provider_id = (select id from public.llm_providers where slug = %s)""", [provider])
    with counting_statements() as count:
        dearer = chat(client, member.token, provider)
    assert dearer.status_code == 200
    assert credits_of(dearer) == 3 * credits_of(first)
    # The guess was stale: priced again from the fresh context (the catalog reloaded), reserved on its own.
    assert count[0] > 2
    b = books(db, member.id)
    assert b["reserves"] == 3 and b["receipts"] == 3 and b["open"] == 0 and b["ledger"] == b["balance"]


def test_a_lowered_cap_applies_to_the_next_request(client: FlaskClient, member: Any, provider: str, db: Any) -> None:
    assert chat(client, member.token, provider).status_code == 200
    with db.as_service() as conn:
        conn.execute("update public.user_preferences set monthly_credit_cap = 1 where user_id = %s", [member.id])
    resp = chat(client, member.token, provider)
    assert resp.status_code == 402
    assert resp.get_json()["error"]["code"] == "monthly_cap_reached"
    b = books(db, member.id)
    assert b["reserves"] == 1 and b["open"] == 0 and b["ledger"] == b["balance"]


def test_a_refusal_for_want_of_credits_through_the_one_statement_path(client: FlaskClient, make_user: Any,
                                                                      provider: str, db: Any) -> None:
    user = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, 200_000, "just enough for one answer", None)
    assert chat(client, user.token, provider).status_code == 200
    before = books(db, user.id)
    with counting_statements() as count:
        resp = chat(client, user.token, provider, max_tokens=4000)  # a client-set limit is reserved in full
    assert resp.status_code == 402
    err = resp.get_json()["error"]
    assert err["code"] == "insufficient_credits" and "max_tokens" in err["message"]
    assert int(resp.headers["X-Switchboard-Max-Tokens-Fit"]) > 0
    assert count[0] == 1  # refused inside the statement that admitted it
    with counting_statements() as count:
        resp = chat(client, user.token, provider, stream=True, max_tokens=4000)
    assert resp.status_code == 402 and resp.get_json()["error"]["code"] == "insufficient_credits"
    assert count[0] == 2  # admitted (stream slot taken) and refused in one statement, the slot released in another
    after = books(db, user.id)
    assert after["balance"] == before["balance"] and after["reserves"] == before["reserves"]
    assert after["ledger"] == after["balance"] and after["open"] == 0
    with db.as_service() as conn:
        slots = conn.execute("select count(*) from public.active_streams where user_id = %s", [user.id]).fetchone()
    assert slots is not None and slots[0] == 0


def test_a_signed_out_session_is_refused_on_the_next_request(client: FlaskClient, member: Any, provider: str,
                                                             db: Any) -> None:
    assert chat(client, member.token, provider).status_code == 200
    with db.as_service() as conn:
        conn.execute("delete from auth.sessions where id = %s", [member.claims["session_id"]])
    resp = chat(client, member.token, provider)
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "session_revoked"
    assert books(db, member.id)["reserves"] == 1


def test_a_banned_user_is_refused_on_the_next_request(client: FlaskClient, member: Any, provider: str,
                                                      db: Any) -> None:
    assert chat(client, member.token, provider, stream=True).status_code == 200
    with db.as_service() as conn:
        conn.execute("update auth.users set banned_until = now() + interval '1 day' where id = %s", [member.id])
    resp = chat(client, member.token, provider, stream=True)
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "user_banned"
    b = books(db, member.id)
    assert b["reserves"] == 1 and b["open"] == 0


def test_a_revoked_api_key_is_refused_on_the_next_request(client: FlaskClient, member: Any, provider: str,
                                                          db: Any, settings: Settings) -> None:
    key, prefix = api_keys.generate()
    with db.as_service() as conn:
        row = conn.execute("insert into public.api_keys (user_id, name, prefix, hash) values (%s, 'hot', %s, %s)"
                           " returning id::text", [member.id, prefix, api_keys.digest(settings, key)]).fetchone()
    assert row is not None
    assert chat(client, key, provider).status_code == 200
    with counting_statements() as count:
        assert chat(client, key, provider).status_code == 200
    assert count[0] == 2  # a key too: two statements once its context is held
    with db.as_service() as conn:
        conn.execute("update public.api_keys set revoked_at = now() where id = %s", [row[0]])
    resp = chat(client, key, provider)
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "api_key_revoked"
    b = books(db, member.id)
    assert b["reserves"] == 2 and b["receipts"] == 2 and b["open"] == 0 and b["ledger"] == b["balance"]

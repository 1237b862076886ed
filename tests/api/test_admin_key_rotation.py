"""`flask keys rotate`: every stored key, admin and BYOK, re-encrypted with the active encryption key, so the old
one can leave the configuration. Proved end to end: keys stored under k1, rotated by an app configured
"k2,k1", then served by an app that only knows k2. Unreadable keys are reported and left alone.

The shared test database is put back under the suite's own key (k1) afterwards, whatever happens."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask

from tests.support.admin import close_app, temp_providers
from tests.support.upstreams import FakeUpstream, start_openai_upstream
from webapp import create_app
from webapp.config import Settings, parse_encryption_keys
from webapp.crypto import KeyRing, admin_aad, byok_aad
from webapp.db import Database
from webapp.repos import credits as credits_repo

ADMIN_SECRET = "sk-rotation-admin-3c4d5e6f7a8b"
BYOK_SECRET = "sk-rotation-byok-9e8d7c6b5a4f"
NEW_KEY = "k2:" + base64.urlsafe_b64encode(os.urandom(32)).decode()


def suite_key(settings: Settings) -> str:
    kid, raw = next(iter(settings.encryption_keys.items()))
    return f"{kid}:{base64.urlsafe_b64encode(raw).decode()}"


def app_with_keys(settings: Settings, keys: str) -> Flask:
    return create_app(settings.with_overrides(encryption_keys=parse_encryption_keys("ENCRYPTION_KEYS", keys)))


def rotate(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["keys", "rotate", *args])


@pytest.fixture()
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    member_up, byok_up = start_openai_upstream(api_key=ADMIN_SECRET), start_openai_upstream(api_key=BYOK_SECRET)
    yield member_up, byok_up
    member_up.stop()
    byok_up.stop()


@pytest.fixture()
def restore_suite_key(settings: Settings, admin_conn: psycopg.Connection) -> Iterator[None]:
    yield
    back = app_with_keys(settings, f"{suite_key(settings)},{NEW_KEY}")
    try:
        rotate(back)  # unreadable rows left by other tests may make it exit 1; what matters is below
    finally:
        close_app(back)
    left = admin_conn.execute("select (select count(*) from public.llm_admin_keys where key_id = 'k2')"
                              " + (select count(*) from public.user_provider_keys where key_id = 'k2')").fetchone()
    assert left == (0,), "every key is back under the suite's encryption key"


def my_rows(conn: psycopg.Connection, pids: list[str]) -> list[tuple[str, str, str, str | None, str]]:
    rows = conn.execute(
        """select 'admin', id::text, provider_id::text, null, ciphertext from public.llm_admin_keys
             where provider_id = any(%(p)s::uuid[])
           union all
           select 'byok', id::text, provider_id::text, user_id::text, ciphertext from public.user_provider_keys
             where provider_id = any(%(p)s::uuid[])""", {"p": pids}).fetchall()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_rotation_reencrypts_admin_and_byok_keys_so_the_old_key_can_go(
        settings: Settings, database_urls: tuple[str, str], upstreams: tuple[FakeUpstream, FakeUpstream],
        make_user: Any, db: Database, admin_conn: psycopg.Connection, restore_suite_key: None) -> None:
    member_up, byok_up = upstreams
    admin, member, byok_user = make_user(admin=True), make_user(), make_user()
    with temp_providers(database_urls[0], ("adm-rm", member_up.base_url), ("adm-rb", byok_up.base_url)) as made:
        (m_slug, m_id), (b_slug, b_id) = made
        old_app = app_with_keys(settings, suite_key(settings))
        try:
            c = old_app.test_client()
            assert c.post(f"/api/admin/llm/providers/{m_id}/keys", json={"api_key": ADMIN_SECRET},
                          headers=admin.headers).status_code == 201
            assert c.put(f"/api/user/llm/keys/{b_slug}", json={"api_key": BYOK_SECRET},
                         headers=byok_user.headers).status_code == 200
            assert c.put("/api/user/settings", json={"llm_mode": "byok"}, headers=byok_user.headers).status_code == 200
        finally:
            close_app(old_app)
        before = my_rows(admin_conn, [m_id, b_id])
        assert len(before) == 2 and all(r[4].startswith("v1.k1.") for r in before)

        both = app_with_keys(settings, f"{NEW_KEY},{suite_key(settings)}")
        try:
            result = rotate(both)
        finally:
            close_app(both)
        assert "re-encrypted" in result.output and "'k2'" in result.output
        assert not any(r[1] in result.output for r in before), "none of these keys is reported unreadable"

        after = my_rows(admin_conn, [m_id, b_id])
        k2_only = KeyRing(parse_encryption_keys("ENCRYPTION_KEYS", NEW_KEY))
        for kind, _, pid, uid, ciphertext in after:
            assert ciphertext.startswith("v1.k2.")
            aad = admin_aad(pid) if kind == "admin" else byok_aad(str(uid), pid)
            assert k2_only.decrypt(ciphertext, aad) == (ADMIN_SECRET if kind == "admin" else BYOK_SECRET)
        assert admin_conn.execute("select key_id from public.llm_admin_keys where provider_id = %s",
                                  [m_id]).fetchone() == ("k2",)
        audit = admin_conn.execute("select after from public.admin_audit_log where action = 'keys.reencrypt'"
                                   " order by id desc limit 1").fetchone()
        assert audit is not None and audit[0]["active_key_id"] == "k2" and audit[0]["rotated"] >= 2

        with db.as_service() as conn:
            credits_repo.adjust(conn, member.id, 10_000_000, "rotation test", None)
        new_app = app_with_keys(settings, NEW_KEY)  # the old encryption key is gone from the configuration
        try:
            c = new_app.test_client()
            msg = [{"role": "user", "content": "still works"}]
            served = c.post("/v1/chat/completions", json={"model": f"{m_slug}/adm-model", "messages": msg},
                            headers=member.headers)
            assert served.status_code == 200, served.get_data(as_text=True)
            assert served.headers["X-Switchboard-Key-Source"] == "admin_db"
            assert member_up.chat_requests()[-1].headers["authorization"] == f"Bearer {ADMIN_SECRET}"
            own = c.post("/v1/chat/completions", json={"model": f"{b_slug}/adm-model", "messages": msg},
                         headers=byok_user.headers)
            assert own.status_code == 200, own.get_data(as_text=True)
            assert own.headers["X-Switchboard-Key-Source"] == "byok_stored"
            assert byok_up.chat_requests()[-1].headers["authorization"] == f"Bearer {BYOK_SECRET}"
        finally:
            close_app(new_app)


def test_rotation_reports_keys_it_cannot_decrypt_and_leaves_them(settings: Settings, database_urls: tuple[str, str],
                                                                 admin_conn: psycopg.Connection) -> None:
    stranger = KeyRing(parse_encryption_keys("X", "k9:" + base64.urlsafe_b64encode(os.urandom(32)).decode()))
    with temp_providers(database_urls[0], ("adm-rx", "http://127.0.0.1:9/v1")) as [(_, pid)]:
        ciphertext, _ = stranger.encrypt("sk-lost-forever-0000", admin_aad(pid))
        row = admin_conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4)
                                    values (%s, %s, 'k9', '0000') returning id::text""",
                                 [pid, ciphertext]).fetchone()
        assert row is not None
        app = app_with_keys(settings, suite_key(settings))
        try:
            result = rotate(app)
        finally:
            close_app(app)
        assert result.exit_code == 1
        assert f"cannot decrypt llm_admin_keys {row[0]}: no encryption key with id 'k9'" in result.output
        assert admin_conn.execute("select ciphertext from public.llm_admin_keys where id = %s",
                                  [row[0]]).fetchone() == (ciphertext,)


def test_rotation_dry_run_changes_nothing(settings: Settings, database_urls: tuple[str, str],
                                          make_user: Any, admin_conn: psycopg.Connection) -> None:
    admin = make_user(admin=True)
    with temp_providers(database_urls[0], ("adm-rd", "http://127.0.0.1:9/v1")) as [(_, pid)]:
        app = app_with_keys(settings, suite_key(settings))
        try:
            assert app.test_client().post(f"/api/admin/llm/providers/{pid}/keys", json={"api_key": ADMIN_SECRET},
                                          headers=admin.headers).status_code == 201
        finally:
            close_app(app)
        before = my_rows(admin_conn, [pid])
        both = app_with_keys(settings, f"{NEW_KEY},{suite_key(settings)}")
        try:
            result = rotate(both, "--dry-run")
        finally:
            close_app(both)
        assert result.exit_code == 0 and "would re-encrypt" in result.output
        assert my_rows(admin_conn, [pid]) == before

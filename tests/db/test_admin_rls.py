"""The database refuses admin writes to non-admins on its own, without the Flask layer: the same statements the
admin services run, under db.as_user(non-admin claims), fail or change nothing. And what even an admin's token
may not do directly (insert audit rows, call credits_adjust, read key ciphertext) is refused too: those are
service_role's alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.admin import insert_provider
from webapp.db import Database
from webapp.repos import admin as admin_repo
from webapp.repos import credits as credits_repo

DENIED = psycopg.errors.InsufficientPrivilege


@pytest.fixture(scope="module")
def target(database_urls: tuple[str, str]) -> Iterator[dict[str, str]]:
    """A provider with one rate and one admin key, removed afterwards."""
    slug = f"adm-rls-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        pid = insert_provider(conn, slug, "https://rls.example.test/v1")
        key = conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4)
                              values (%s, 'v1.k1.secret', 'k1', 'cret') returning id::text""", [pid]).fetchone()
        rate = conn.execute("select id::text from public.llm_model_rates where provider_id = %s", [pid]).fetchone()
    assert key is not None and rate is not None
    yield {"provider": pid, "slug": slug, "key": key[0], "rate": rate[0]}
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("delete from public.llm_providers where id = %s", [pid])


@pytest.fixture()
def member(make_user: Any) -> Any:
    return make_user()


@pytest.fixture()
def admin(make_user: Any) -> Any:
    return make_user(admin=True)


def provider_state(db: Database, pid: str) -> tuple[Any, ...]:
    with db.as_service() as conn:
        row = conn.execute("select enabled, credit_multiplier, name from public.llm_providers where id = %s",
                           [pid]).fetchone()
    assert row is not None
    return tuple(row)


def catalog_version(db: Database) -> int:
    with db.as_service() as conn:
        row = conn.execute("select version from public.catalog_version").fetchone()
    assert row is not None
    return int(row[0])


# -- a member's token ---------------------------------------------------------------------------------------------

def test_member_cannot_update_providers(db: Database, member: Any, target: dict[str, str]) -> None:
    before = provider_state(db, target["provider"])
    with db.as_user(member.claims) as conn:
        changed = admin_repo.update_provider(conn, target["provider"], {"enabled": False, "credit_multiplier": 9})
        assert changed is None, "RLS filtered the row: nothing updated"
        assert conn.execute("update public.llm_providers set name = 'pwned'").rowcount == 0
    assert provider_state(db, target["provider"]) == before


def test_member_cannot_change_model_rates(db: Database, member: Any, target: dict[str, str]) -> None:
    with db.as_user(member.claims) as conn:
        assert conn.execute("update public.llm_model_rates set input_rate = 0 where id = %s",
                            [target["rate"]]).rowcount == 0
        assert conn.execute("delete from public.llm_model_rates where id = %s", [target["rate"]]).rowcount == 0
    with pytest.raises(DENIED, match="row-level security"), db.as_user(member.claims) as conn:
        admin_repo.upsert_rate(conn, target["provider"], "free-model", 0, 0, 8192, 4096)


def test_member_cannot_insert_admin_keys(db: Database, member: Any, target: dict[str, str]) -> None:
    with pytest.raises(DENIED, match="row-level security"), db.as_user(member.claims) as conn:
        admin_repo.insert_admin_key(conn, target["provider"], "v1.k1.mine", "k1", "mine", "", member.id)


def test_member_cannot_see_revoke_or_delete_admin_keys(db: Database, member: Any, target: dict[str, str]) -> None:
    with db.as_user(member.claims) as conn:
        assert admin_repo.admin_keys(conn) == []
        assert not admin_repo.revoke_key(conn, target["provider"], target["key"])
    with pytest.raises(DENIED), db.as_user(member.claims) as conn:  # no delete grant at all (least privilege)
        conn.execute("delete from public.llm_admin_keys where id = %s", [target["key"]])
    with db.as_service() as conn:
        assert conn.execute("select active from public.llm_admin_keys where id = %s",
                            [target["key"]]).fetchone() == (True,)


def test_member_cannot_insert_audit_rows(db: Database, member: Any) -> None:
    with pytest.raises(DENIED), db.as_user(member.claims) as conn:
        conn.execute("insert into public.admin_audit_log (actor_id, action) values (%s, 'forged')", [member.id])


def test_member_cannot_read_audit_rows(db: Database, member: Any, admin: Any) -> None:
    with db.as_service() as conn:
        admin_repo.insert_audit(conn, admin.id, "test.visible_to_admins", "rls", None, {"x": 1})
    with db.as_user(member.claims) as conn:
        assert conn.execute("select count(*) from public.admin_audit_log").fetchone() == (0,)
    with db.as_user(admin.claims) as conn:
        assert conn.execute("select count(*) from public.admin_audit_log where action = 'test.visible_to_admins'"
                            ).fetchone()[0] >= 1  # type: ignore[index]


def test_member_cannot_call_credits_adjust(db: Database, member: Any) -> None:
    with pytest.raises(DENIED), db.as_user(member.claims) as conn:
        credits_repo.adjust(conn, member.id, 1_000_000_000, "free money", member.id)
    with db.as_service() as conn:
        assert credits_repo.balance(conn, member.id) == 0


def test_member_cannot_read_auth_users(db: Database, member: Any) -> None:
    with pytest.raises(DENIED), db.as_user(member.claims) as conn:
        admin_repo.search_users(conn, "", 10)


def test_forged_user_metadata_role_is_not_admin(db: Database, member: Any, target: dict[str, str]) -> None:
    # user_metadata is editable by the user; only app_metadata (set by the service role) makes an admin.
    claims = {**member.claims, "user_metadata": {"role": "admin"}}
    with db.as_user(claims) as conn:
        assert not admin_repo.is_admin(conn)
        assert admin_repo.update_provider(conn, target["provider"], {"name": "forged"}) is None


# -- an admin's token: allowed through RLS, but not into service_role's territory ---------------------------------

def test_admin_updates_provider_and_the_catalog_version_moves(db: Database, admin: Any,
                                                              target: dict[str, str]) -> None:
    version = catalog_version(db)
    with db.as_user(admin.claims) as conn:
        assert admin_repo.is_admin(conn)
        row = admin_repo.update_provider(conn, target["provider"], {"credit_multiplier": 1.5})
        assert row is not None and str(row.credit_multiplier) == "1.5000"
    assert catalog_version(db) > version, "every worker reloads its catalog on its next request"
    with db.as_user(admin.claims) as conn:
        admin_repo.update_provider(conn, target["provider"], {"credit_multiplier": 1})


def test_admin_inserts_keys_but_never_reads_ciphertext(db: Database, admin: Any, target: dict[str, str]) -> None:
    with db.as_user(admin.claims) as conn:
        key_id = admin_repo.insert_admin_key(conn, target["provider"], "v1.k1.admin-made", "k1", "made", "",
                                             admin.id)
        assert any(k.id == key_id for k in admin_repo.admin_keys(conn, target["provider"]))
    with pytest.raises(DENIED), db.as_user(admin.claims) as conn:
        conn.execute("select ciphertext from public.llm_admin_keys where id = %s", [key_id])
    with db.as_service() as conn:
        conn.execute("delete from public.llm_admin_keys where id = %s", [key_id])


def test_admin_token_alone_cannot_insert_audit_or_adjust_credits(db: Database, admin: Any, member: Any) -> None:
    with pytest.raises(DENIED), db.as_user(admin.claims) as conn:
        conn.execute("insert into public.admin_audit_log (actor_id, action) values (%s, 'direct')", [admin.id])
    with pytest.raises(DENIED), db.as_user(admin.claims) as conn:
        credits_repo.adjust(conn, member.id, 1_000_000, "direct", admin.id)


def test_audit_row_rolls_back_with_its_change(db: Database, admin: Any, target: dict[str, str]) -> None:
    marker = f"test.rollback.{uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError), db.as_user(admin.claims) as conn:
        admin_repo.update_provider(conn, target["provider"], {"name": "never committed"})
        admin_repo.insert_audit(conn, admin.id, marker, "rls", None, None)
        raise RuntimeError("the change fails after its audit row was written")
    with db.as_service() as conn:
        assert conn.execute("select count(*) from public.admin_audit_log where action = %s",
                            [marker]).fetchone() == (0,)
    assert provider_state(db, target["provider"])[2] != "never committed"


def test_service_role_step_returns_to_the_admin_role(db: Database, admin: Any) -> None:
    with db.as_user(admin.claims) as conn:
        with admin_repo.service_role(conn):
            assert conn.execute("select current_user").fetchone() == ("service_role",)
        assert conn.execute("select current_user").fetchone() == ("authenticated",)

"""The migration runner agrees with the Supabase CLI's bookkeeping, and the operator commands work."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from flask import Flask

from webapp import migrate
from webapp.repos import users as users_repo


def test_every_migration_is_recorded_like_the_supabase_cli(admin_conn: psycopg.Connection) -> None:
    rows = admin_conn.execute("select version, name, array_length(statements, 1)"
                              " from supabase_migrations.schema_migrations order by version").fetchall()
    files = migrate.migration_files()
    assert [(v, n) for v, n, _ in files] == [(r[0], r[1]) for r in rows]
    assert all(r[2] == 1 for r in rows)


def test_upgrade_again_applies_nothing(database_urls: tuple[str, str]) -> None:
    with migrate.connect_admin(database_urls[0]) as conn:
        assert migrate.upgrade(conn) == []


def test_migration_files_are_named_by_timestamp() -> None:
    for version, name, path in migrate.migration_files():
        assert re.fullmatch(r"\d{14}", version) and re.fullmatch(r"[a-z0-9_]+", name)
        text = path.read_text()
        assert text.startswith("--"), f"{path.name} starts with a header comment naming its purpose"
        for table in re.findall(r"create table (public\.\w+)", text):
            assert f"alter table {table} enable row level security" in text, f"{table}: RLS in the same file"


def test_seed_is_idempotent_and_keeps_admin_changes(database_urls: tuple[str, str],
                                                    admin_conn: psycopg.Connection) -> None:
    admin_conn.execute("update public.llm_providers set credit_multiplier = 2.5 where slug = 'groq'")
    try:
        with migrate.connect_admin(database_urls[0]) as conn:
            migrate.seed(conn)
        row = admin_conn.execute("select credit_multiplier from public.llm_providers where slug = 'groq'").fetchone()
        assert row is not None and float(row[0]) == 2.5
        count = admin_conn.execute("select count(*) from public.llm_providers where slug in"
                                   " ('openai','github','lmstudio','ollama','groq','mistral','anthropic','google')"
                                   ).fetchone()
        assert count == (8,)
    finally:
        admin_conn.execute("update public.llm_providers set credit_multiplier = 1.0 where slug = 'groq'")


def test_create_admin_prints_a_one_time_password_that_signs_in(app: Flask, db: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    runner = app.test_cli_runner()
    email = "cli-admin-" + re.sub(r"\W", "", str(id(runner))) + "@example.test"
    result = runner.invoke(args=["users", "create-admin", email])
    assert result.exit_code == 0, result.output
    password = re.search(r"one-time password: (\S+)", result.output)
    assert password
    with db.as_service() as conn:
        user = users_repo.check_password(conn, email, password.group(1))
        assert user is not None and user.is_admin
    again = runner.invoke(args=["users", "create-admin", "someone-else@example.test", "--if-none"])
    assert "already exists" in again.output


def test_create_admin_takes_the_password_from_the_environment(app: Flask, db: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", "from the environment 123")
    email = "env-admin-" + str(id(monkeypatch)) + "@example.test"
    result = app.test_cli_runner().invoke(args=["users", "create-admin", email])
    assert result.exit_code == 0 and "from the environment 123" not in result.output
    with db.as_service() as conn:
        assert users_repo.check_password(conn, email, "from the environment 123") is not None


def test_credits_grant_goes_through_the_ledger(app: Flask, db: Any, make_user: Any) -> None:
    user = make_user()
    result = app.test_cli_runner().invoke(args=["credits", "grant", user.email, "2.5", "--reason", "welcome"])
    assert result.exit_code == 0, result.output
    with db.as_service() as conn:
        rows = conn.execute("select kind, delta, reason from public.credit_ledger where user_id = %s",
                            [user.id]).fetchall()
    assert rows == [("grant", 2_500_000, "welcome")]

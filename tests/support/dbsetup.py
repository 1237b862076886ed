"""A fresh test database on the project's private cluster (or TEST_PG_ADMIN_BASE), with the Supabase platform
pieces, every migration and the seed applied."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from webapp import migrate

ROOT = Path(__file__).resolve().parents[2]


def admin_base() -> str:
    base = os.environ.get("TEST_PG_ADMIN_BASE")
    if base:
        return base.rstrip("/")
    subprocess.run(["bash", str(ROOT / "scripts" / "pg.sh")], check=True)
    values = dict(line.split("=", 1) for line in (ROOT / ".local" / "pg.env").read_text().split())
    return f"postgresql://postgres:{quote(values['PG_SUPERPASS'])}@127.0.0.1:{values['PG_PORT']}"


def create_test_database(name: str) -> tuple[str, str]:
    """Drop and recreate `name`; return (admin_url, app_url). The app URL logs in as `authenticator`."""
    base = admin_base()
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    admin_url = f"{base}/{name}"
    password = secrets.token_urlsafe(16)
    # Each test database gets its own login role shaped like `authenticator` (login, noinherit, may only switch
    # into the API roles), so a test run never changes the password a running dev server logs in with.
    login = f"{name}_login"
    with migrate.connect_admin(admin_url) as conn:
        migrate.apply_platform(conn)
        exists = conn.execute("select 1 from pg_roles where rolname = %s", [login]).fetchone()
        verb = "alter" if exists else "create"
        conn.execute(sql.SQL(verb + " role {} with login noinherit password {}").format(
            sql.Identifier(login), sql.Literal(password)))
        conn.execute(sql.SQL("grant anon, authenticated, service_role to {}").format(sql.Identifier(login)))
        migrate.upgrade(conn)
        migrate.seed(conn)
    host = base.split("@", 1)[1]
    return admin_url, f"postgresql://{login}:{quote(password)}@{host}/{name}"


def test_environ(app_url: str, admin_url: str, **extra: str) -> dict[str, str]:
    env = {
        "SWITCHBOARD_ENV": "test",
        # Distinctive, so no fuzzed input that a route echoes (a run of "t"s) can look like it leaked.
        "SECRET_KEY": "test-secret-key-" + "t" * 32,
        "DATABASE_URL": app_url,
        "DATABASE_ADMIN_URL": admin_url,
        "SUPABASE_JWT_SECRET": "test-jwt-secret-" + "x" * 32,
        "SUPABASE_URL": "http://127.0.0.1:9",
        "ENCRYPTION_KEYS": "k1:" + base64.urlsafe_b64encode(b"k" * 32).decode(),
        "TIKTOKEN_CACHE_DIR": str(ROOT / ".local" / "tiktoken"),
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "10",
    }
    env.update(extra)
    return env

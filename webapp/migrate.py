"""Apply supabase/migrations in order, recording them in supabase_migrations.schema_migrations like the Supabase
CLI does, so `flask db upgrade` and `supabase db push` agree about what has run."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = ROOT / "supabase" / "migrations"
SEED_FILE = ROOT / "supabase" / "seed.sql"
PLATFORM_FILE = ROOT / "supabase" / "local" / "platform.sql"
_NAME = re.compile(r"^(\d{14})_([a-z0-9_]+)\.sql$")

_TRACKING = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text primary key,
  statements text[],
  name text
);
"""


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, str, Path]]:
    """(version, name, path) for every migration file, in version order; a misnamed file is an error."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name must be <14-digit timestamp>_<name>.sql: {path.name}")
        found.append((match.group(1), match.group(2), path))
    return found


def apply_platform(conn: psycopg.Connection) -> None:
    """Local/test only: the roles, auth schema and extensions a Supabase project already has."""
    with conn.transaction():
        conn.execute(PLATFORM_FILE.read_text())


def upgrade(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction. Returns the versions applied."""
    with conn.transaction():
        conn.execute(_TRACKING)
    applied = {row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")}
    done = []
    for version, name, path in migration_files(directory):
        if version in applied:
            continue
        sql = path.read_text()
        with conn.transaction():
            conn.execute(sql)
            conn.execute(
                "insert into supabase_migrations.schema_migrations (version, statements, name) values (%s, %s, %s)",
                [version, [sql], name],
            )
        done.append(version)
    return done


def seed(conn: psycopg.Connection, path: Path = SEED_FILE) -> None:
    with conn.transaction():
        conn.execute(path.read_text())


def connect_admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, prepare_threshold=None)

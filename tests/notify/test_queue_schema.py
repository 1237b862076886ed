"""The job queue's schema comes from the pinned procrastinate, through the project's migrations, and belongs to the
service role alone."""

from __future__ import annotations

from pathlib import Path

import procrastinate
import psycopg
from procrastinate.schema import SchemaManager

ROOT = Path(__file__).resolve().parents[2]
MIGRATION = ROOT / "supabase" / "migrations" / "20261201500000_procrastinate.sql"


def test_migration_embeds_the_installed_procrastinate_schema_verbatim() -> None:
    text = MIGRATION.read_text()
    start = text.index("-- >>> procrastinate 3.10.0 schema.sql\n") + len("-- >>> procrastinate 3.10.0 schema.sql\n")
    end = text.index("-- <<< procrastinate 3.10.0 schema.sql")
    assert procrastinate.__version__ == "3.10.0", "a new procrastinate needs its migrations as a new migration file"
    assert text[start:end] == SchemaManager.get_schema()


def test_queue_tables_are_the_service_roles_alone(admin_conn: psycopg.Connection) -> None:
    for table in ("procrastinate_jobs", "procrastinate_workers", "procrastinate_events",
                  "procrastinate_periodic_defers", "notification_deliveries"):
        for role in ("anon", "authenticated"):
            assert not admin_conn.execute("select has_table_privilege(%s, %s, 'select')",
                                          [role, f"public.{table}"]).fetchone()[0], (role, table)
        assert admin_conn.execute("select has_table_privilege('service_role', %s, 'insert')",
                                  [f"public.{table}"]).fetchone()[0]
        assert admin_conn.execute("select relrowsecurity from pg_class where oid = %s::regclass",
                                  [f"public.{table}"]).fetchone()[0]
    callable_by_api = admin_conn.execute(
        "select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname in ('public', 'private') and (p.proname like 'procrastinate%%' or p.proname like 'notify%%')"
        " and (has_function_privilege('anon', p.oid, 'execute')"
        "      or has_function_privilege('authenticated', p.oid, 'execute'))").fetchall()
    assert callable_by_api == []

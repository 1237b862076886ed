"""auth.users access for the local auth backend and the admin CLI (service role only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class AuthUser:
    id: str
    email: str
    app_metadata: dict[str, Any]
    user_metadata: dict[str, Any]

    @property
    def is_admin(self) -> bool:
        return self.app_metadata.get("role") == "admin"


_COLUMNS = ("id::text as id, email, coalesce(raw_app_meta_data, '{}') as app_metadata,"
            " coalesce(raw_user_meta_data, '{}') as user_metadata")


def create(conn: psycopg.Connection, email: str, password: str, *, admin: bool = False) -> AuthUser:
    """Insert a confirmed email user with a bcrypt hash made by pgcrypto, as Supabase stores it."""
    app_meta = {"provider": "email", "providers": ["email"]}
    if admin:
        app_meta["role"] = "admin"
    with conn.cursor(row_factory=class_row(AuthUser)) as cur:
        cur.execute(
            f"""insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                    raw_app_meta_data, raw_user_meta_data, confirmation_token, recovery_token,
                    email_change_token_new, email_change)
                values ('00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated',
                    'authenticated', lower(%s), extensions.crypt(%s, extensions.gen_salt('bf', 10)), now(),
                    %s, '{{}}', '', '', '', '')
                returning {_COLUMNS}""",
            [email, password, json.dumps(app_meta)],
        )
        row = cur.fetchone()
    assert row is not None
    return row


def by_email(conn: psycopg.Connection, email: str) -> AuthUser | None:
    with conn.cursor(row_factory=class_row(AuthUser)) as cur:
        cur.execute(f"select {_COLUMNS} from auth.users where email = lower(%s) and deleted_at is null", [email])
        return cur.fetchone()


def by_id(conn: psycopg.Connection, user_id: str) -> AuthUser | None:
    with conn.cursor(row_factory=class_row(AuthUser)) as cur:
        cur.execute(f"select {_COLUMNS} from auth.users where id = %s and deleted_at is null", [user_id])
        return cur.fetchone()


def check_password(conn: psycopg.Connection, email: str, password: str) -> AuthUser | None:
    """The user if the password matches its bcrypt hash (compared inside Postgres by pgcrypto)."""
    with conn.cursor(row_factory=class_row(AuthUser)) as cur:
        cur.execute(
            f"""update auth.users set last_sign_in_at = now()
                where email = lower(%s) and deleted_at is null and encrypted_password is not null
                  and encrypted_password = extensions.crypt(%s, encrypted_password)
                  and (banned_until is null or banned_until < now())
                returning {_COLUMNS}""",
            [email, password],
        )
        return cur.fetchone()


def set_admin(conn: psycopg.Connection, user_id: str, admin: bool = True) -> None:
    conn.execute(
        """update auth.users set raw_app_meta_data = case when %s
               then coalesce(raw_app_meta_data, '{}') || '{"role": "admin"}'
               else coalesce(raw_app_meta_data, '{}') - 'role' end,
               updated_at = now()
           where id = %s""",
        [admin, user_id],
    )


def set_password(conn: psycopg.Connection, user_id: str, password: str) -> None:
    conn.execute(
        "update auth.users set encrypted_password = extensions.crypt(%s, extensions.gen_salt('bf', 10)),"
        " updated_at = now() where id = %s",
        [password, user_id],
    )


def count_admins(conn: psycopg.Connection) -> int:
    row = conn.execute("select count(*) from auth.users where raw_app_meta_data ->> 'role' = 'admin'").fetchone()
    return int(row[0]) if row else 0

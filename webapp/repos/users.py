"""auth.users access for the local auth backend and the admin CLI (service role only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from webapp import passwords


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


def _insert_sql(on_conflict: str) -> str:
    return f"""insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                   raw_app_meta_data, raw_user_meta_data, confirmation_token, recovery_token,
                   email_change_token_new, email_change, created_at, updated_at)
               values ('00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated',
                   'authenticated', lower(%s), %s, now(), %s, '{{}}', '', '', '', '', now(), now())
               {on_conflict}
               returning {_COLUMNS}"""


def create(conn: psycopg.Connection, email: str, password: str, *, admin: bool = False) -> AuthUser:
    """Insert a confirmed email user with an argon2id hash of `password`."""
    app_meta = {"provider": "email", "providers": ["email"]}
    if admin:
        app_meta["role"] = "admin"
    with conn.cursor(row_factory=class_row(AuthUser)) as cur:
        cur.execute(_insert_sql(""), [email, passwords.hash_password(password), json.dumps(app_meta)])
        row = cur.fetchone()
    assert row is not None
    return row


def create_if_absent(conn: psycopg.Connection, email: str, password_hash: str) -> AuthUser | None:
    """Insert a confirmed email user unless the email is taken (then None, and nothing changes)."""
    app_meta = {"provider": "email", "providers": ["email"]}
    with conn.cursor(row_factory=class_row(AuthUser)) as cur:
        cur.execute(_insert_sql("on conflict (email) where email is not null do nothing"),
                    [email, password_hash, json.dumps(app_meta)])
        return cur.fetchone()


def by_email(conn: psycopg.Connection, email: str) -> AuthUser | None:
    with conn.cursor(row_factory=class_row(AuthUser)) as cur:
        cur.execute(f"select {_COLUMNS} from auth.users where email = lower(%s) and deleted_at is null", [email])
        return cur.fetchone()


def by_id(conn: psycopg.Connection, user_id: str) -> AuthUser | None:
    with conn.cursor(row_factory=class_row(AuthUser)) as cur:
        cur.execute(f"select {_COLUMNS} from auth.users where id = %s and deleted_at is null", [user_id])
        return cur.fetchone()


def check_password(conn: psycopg.Connection, email: str, password: str) -> AuthUser | None:
    """The user if `password` matches their hash and they may sign in (not deleted, not banned), else None.
    Every failure costs about one hash verification, whether or not the email exists. A bcrypt hash (pgcrypto,
    GoTrue) is compared inside Postgres and replaced by argon2id once it matched."""
    row = conn.execute(
        f"""select {_COLUMNS}, encrypted_password,
                   banned_until is not null and banned_until > now() as banned,
                   case when encrypted_password like '$2%%'
                        then encrypted_password = extensions.crypt(%s, encrypted_password) end as bcrypt_ok
            from auth.users where email = lower(%s) and deleted_at is null""",
        # Postgres text cannot hold NUL, so no bcrypt hash there can match such a password (an argon2 one can).
        [None if "\x00" in password else password, email],
    ).fetchone()
    if row is None:
        passwords.burn(password)
        return None
    stored, banned, bcrypt_ok = row[4], row[5], row[6]
    ok = bool(bcrypt_ok) if passwords.is_bcrypt(stored) else passwords.verify_argon2(stored, password)
    if not ok or banned:
        return None
    new_hash = passwords.hash_password(password) if passwords.needs_rehash(stored) else None
    conn.execute("update auth.users set last_sign_in_at = now(),"
                 " encrypted_password = coalesce(%s, encrypted_password) where id = %s", [new_hash, row[0]])
    return AuthUser(row[0], row[1], row[2], row[3])


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
    conn.execute("update auth.users set encrypted_password = %s, updated_at = now() where id = %s",
                 [passwords.hash_password(password), user_id])


def count_admins(conn: psycopg.Connection) -> int:
    row = conn.execute("select count(*) from auth.users where raw_app_meta_data ->> 'role' = 'admin'").fetchone()
    return int(row[0]) if row else 0


# -- sessions (auth.sessions, as GoTrue keeps them) -----------------------------------------------------------------

def create_session(conn: psycopg.Connection, user_id: str, *, user_agent: str | None = None) -> str:
    """A new live session for the user; its id goes into the access token's session_id claim."""
    row = conn.execute(
        """insert into auth.sessions (id, user_id, created_at, updated_at, aal, user_agent)
           values (gen_random_uuid(), %s, now(), now(), 'aal1', %s) returning id::text""",
        [user_id, user_agent],
    ).fetchone()
    assert row is not None
    return str(row[0])


def touch_session(conn: psycopg.Connection, session_id: str, user_id: str) -> bool:
    """Mark a refresh; False when the session was ended (sign-out) or belongs to someone else."""
    row = conn.execute(
        """update auth.sessions set refreshed_at = now() at time zone 'utc', updated_at = now()
           where id = %s and user_id = %s and (not_after is null or not_after > now()) returning 1""",
        [session_id, user_id],
    ).fetchone()
    return row is not None


def end_session(conn: psycopg.Connection, session_id: str, user_id: str) -> None:
    conn.execute("delete from auth.sessions where id = %s and user_id = %s", [session_id, user_id])


# -- account security (password change and reset) -------------------------------------------------------------------

def password_matches(conn: psycopg.Connection, user_id: str, password: str) -> bool:
    """True when `password` is the live (not deleted) user's current password. Locks the user's row for the rest
    of the transaction, so two changes of one password run one after the other. Costs one hash verification
    whatever the outcome; a matching bcrypt hash is compared inside Postgres."""
    row = conn.execute(
        """select encrypted_password,
                  case when encrypted_password like '$2%%'
                       then encrypted_password = extensions.crypt(%s, encrypted_password) end
           from auth.users where id = %s and deleted_at is null for update""",
        [None if "\x00" in password else password, user_id],  # NUL: as in check_password
    ).fetchone()
    if row is None:
        passwords.burn(password)
        return False
    stored, bcrypt_ok = row[0], row[1]
    return bool(bcrypt_ok) if passwords.is_bcrypt(stored) else passwords.verify_argon2(stored, password)


def set_password_hash(conn: psycopg.Connection, user_id: str, password_hash: str) -> None:
    conn.execute("update auth.users set encrypted_password = %s, updated_at = now() where id = %s",
                 [password_hash, user_id])


def end_sessions_except(conn: psycopg.Connection, user_id: str, keep_session_id: str | None) -> int:
    """Delete every auth.sessions row of the user but `keep_session_id` (None: all of them). Their access tokens
    are refused on the next request; refresh tokens go with them (foreign key cascade). Returns how many ended."""
    cur = conn.execute("delete from auth.sessions where user_id = %s and id is distinct from %s::uuid",
                       [user_id, keep_session_id])
    return cur.rowcount


def require_password_change(conn: psycopg.Connection, user_id: str) -> None:
    conn.execute("insert into public.password_change_required (user_id) values (%s) on conflict do nothing",
                 [user_id])


def clear_password_change(conn: psycopg.Connection, user_id: str) -> None:
    conn.execute("delete from public.password_change_required where user_id = %s", [user_id])


def must_change_password(conn: psycopg.Connection, user_id: str) -> bool:
    row = conn.execute("select 1 from public.password_change_required where user_id = %s", [user_id]).fetchone()
    return row is not None


# -- the user as Supabase Auth's API shows it (local backend's /auth/v1) ---------------------------------------------

@dataclass(frozen=True)
class UserRecord:
    id: str
    aud: str
    role: str
    email: str
    phone: str
    email_confirmed_at: datetime | None
    last_sign_in_at: datetime | None
    app_metadata: dict[str, Any]
    user_metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    is_anonymous: bool


def record(conn: psycopg.Connection, user_id: str, *, for_update: bool = False) -> UserRecord | None:
    """The live (not deleted) user's row with the columns GoTrue's user object shows."""
    lock = " for update" if for_update else ""
    with conn.cursor(row_factory=class_row(UserRecord)) as cur:
        cur.execute(
            f"""select id::text as id, coalesce(aud, 'authenticated') as aud, coalesce(role, 'authenticated') as role,
                       coalesce(email, '') as email, coalesce(phone, '') as phone, email_confirmed_at,
                       last_sign_in_at, coalesce(raw_app_meta_data, '{{}}') as app_metadata,
                       coalesce(raw_user_meta_data, '{{}}') as user_metadata,
                       coalesce(created_at, now()) as created_at, coalesce(updated_at, now()) as updated_at,
                       is_anonymous
                from auth.users where id = %s and deleted_at is null{lock}""",
            [user_id],
        )
        return cur.fetchone()


def set_user_metadata(conn: psycopg.Connection, user_id: str, metadata: dict[str, Any]) -> None:
    """Replace raw_user_meta_data (the caller merges). A user id that matches no row changes nothing."""
    conn.execute("update auth.users set raw_user_meta_data = %s, updated_at = now() where id = %s",
                 [json.dumps(metadata), user_id])

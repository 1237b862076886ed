"""auth.refresh_tokens for the local backend's Supabase Auth API (service role only).

Tokens are opaque random strings handed to the client once; the table keeps only their SHA-256, so a copy of
the database refreshes nothing. Rotation and reuse detection follow GoTrue's legacy (v1) refresh tokens:
each refresh revokes the token used and issues a child; a revoked token presented again within the reuse interval
still gets a working answer (two tabs refreshing at once, a client that lost the answer), later it ends the
whole session."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import psycopg

TOKEN_BYTES = 32  # 256 bits, base64url: 43 characters (GoTrue's legacy tokens are 12 characters)
MAX_TOKEN_CHARS = 255  # the column's width in GoTrue; anything longer was never issued
REUSE_INTERVAL_SECONDS = 10  # GoTrue's default GOTRUE_SECURITY_REFRESH_TOKEN_REUSE_INTERVAL


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def issue(conn: psycopg.Connection, user_id: str, session_id: str, parent_hash: str | None = None) -> str:
    """Store a new live refresh token for the session and return it (the only time it exists in clear)."""
    token = new_token()
    conn.execute(
        """insert into auth.refresh_tokens (instance_id, token, user_id, revoked, created_at, updated_at, parent,
                                            session_id)
           values ('00000000-0000-0000-0000-000000000000', %s, %s, false, now(), now(), %s, %s)""",
        [token_hash(token), user_id, parent_hash, session_id],
    )
    return token


@dataclass(frozen=True)
class Rotation:
    """The outcome of presenting a refresh token. `outcome` is one of: ok (then `token` is the new refresh
    token), not_found, session_not_found, session_expired, user_banned, already_used (the session was ended)."""

    outcome: str
    user_id: str | None = None
    session_id: str | None = None
    token: str | None = None


def rotate(conn: psycopg.Connection, token: str, reuse_seconds: int | None = None) -> Rotation:
    """Exchange `token` for a child token, in the caller's transaction. The token's row is locked, so two
    refreshes with one token run one after the other (the second then meets a revoked token)."""
    if reuse_seconds is None:
        reuse_seconds = REUSE_INTERVAL_SECONDS  # read at call time: the journeys shorten it to keep tests fast
    if not token or len(token) > MAX_TOKEN_CHARS:
        return Rotation("not_found")
    row = conn.execute(
        """select rt.id, rt.user_id, rt.session_id::text, rt.revoked,
                  rt.updated_at > now() - make_interval(secs => %s) as reusable,
                  s.id is not null and (s.not_after is null or s.not_after > now()) as session_live,
                  u.id is not null and u.deleted_at is null as user_live,
                  u.banned_until is not null and u.banned_until > now() as banned
           from auth.refresh_tokens rt
           left join auth.sessions s on s.id = rt.session_id
           left join auth.users u on u.id = rt.user_id::uuid
           where rt.token = %s
           for update of rt""",
        [reuse_seconds, token_hash(token)],
    ).fetchone()
    if row is None:
        return Rotation("not_found")
    token_id, user_id, session_id, revoked, reusable, session_live, user_live, banned = row
    if not user_live:
        return Rotation("not_found")
    if banned:
        return Rotation("user_banned", user_id, session_id)
    if session_id is None:
        conn.execute("delete from auth.refresh_tokens where id = %s", [token_id])
        return Rotation("session_not_found", user_id)
    if not session_live:
        return Rotation("session_expired", user_id, session_id)
    if revoked and not reusable:
        # Presented again after its reuse interval: a copy of it is in other hands. End the session, so every
        # token of it (cascade) and its access tokens (principal check) stop working.
        conn.execute("delete from auth.sessions where id = %s", [session_id])
        return Rotation("already_used", user_id, session_id)
    if not revoked:
        conn.execute("update auth.refresh_tokens set revoked = true, updated_at = now() where id = %s", [token_id])
    # A reuse within the interval gets a sibling of the token issued first (GoTrue hands back that very token,
    # which only a table holding tokens in clear can do); the revocation time is left as it was, so reusing
    # does not stretch the interval.
    child = issue(conn, user_id, session_id, parent_hash=token_hash(token))
    conn.execute("update auth.sessions set refreshed_at = now() at time zone 'utc', updated_at = now() where id = %s",
                 [session_id])
    return Rotation("ok", user_id, session_id, child)


def live_count(conn: psycopg.Connection, session_id: str) -> int:
    row = conn.execute("select count(*) from auth.refresh_tokens where session_id = %s and not revoked",
                       [session_id]).fetchone()
    return int(row[0]) if row else 0

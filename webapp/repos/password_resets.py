"""One-time password reset links of the local auth backend (service role only). A link's token is never stored:
only its keyed hash (see webapp/services/account_security.py). A link is live for `ttl` seconds after it was
made, until it is used, or until a newer link is made for the same user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True)
class LiveLink:
    id: str
    user_id: str
    email: str


def replace(conn: psycopg.Connection, user_id: str, token_hash: bytes, created_by: str | None) -> tuple[str, datetime]:
    """Store a new link for the user, ending every older one of theirs. (link id, created at)."""
    conn.execute("delete from public.password_reset_links where user_id = %s", [user_id])
    row = conn.execute(
        """insert into public.password_reset_links (user_id, token_hash, created_by) values (%s, %s, %s)
           returning id::text, created_at""",
        [user_id, token_hash, created_by],
    ).fetchone()
    assert row is not None
    return str(row[0]), row[1]


_LIVE = """from public.password_reset_links l join auth.users u on u.id = l.user_id
           where l.token_hash = %s and l.used_at is null and l.created_at > now() - make_interval(secs => %s)
             and u.deleted_at is null"""


def find_live(conn: psycopg.Connection, token_hash: bytes, ttl: int) -> LiveLink | None:
    row = conn.execute(f"select l.id::text, l.user_id::text, u.email {_LIVE}", [token_hash, ttl]).fetchone()
    return LiveLink(str(row[0]), str(row[1]), str(row[2])) if row else None


def use(conn: psycopg.Connection, token_hash: bytes, ttl: int) -> LiveLink | None:
    """Mark the live link with this hash used and return it; None when there is none (never made, used, expired,
    replaced, or its user deleted). Row-locked: of two uses at once, exactly one gets the link."""
    row = conn.execute(
        f"""update public.password_reset_links set used_at = now()
            where id = (select l.id {_LIVE} for update of l)
            returning id::text, user_id::text, (select email from auth.users where id = user_id)""",
        [token_hash, ttl],
    ).fetchone()
    return LiveLink(str(row[0]), str(row[1]), str(row[2])) if row else None


def delete_for_user(conn: psycopg.Connection, user_id: str) -> None:
    conn.execute("delete from public.password_reset_links where user_id = %s", [user_id])

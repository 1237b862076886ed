"""SQL for teams. Reads run as the signed-in user under RLS (the policies decide who sees what); every write is one
of the team_* SECURITY DEFINER functions, which check the caller's role in the database. Site-admin grants call
team_credits_adjust as service_role after is_admin() agreed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

# SQLSTATEs raised by the team functions (see the migration 20261130400000_teams.sql).
FORBIDDEN, NOT_FOUND, OWNER_RULE, INVITATION_INVALID = "P0411", "P0412", "P0413", "P0414"
ALREADY_MEMBER, NOT_MEMBER, MEMBER_CAP_REACHED = "P0416", "P0417", "P0418"


def team_aad(team_id: str, provider_id: str) -> str:
    """The AAD binding a team key's ciphertext to its team row and provider (a user's key can never pass for it)."""
    return f"team-byok:{team_id}:{provider_id}"


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    slug: str
    routing: dict[str, Any]
    created_at: datetime
    role: str | None  # the caller's role (None for a site admin who is not a member)
    balance: int
    members: int


@dataclass(frozen=True)
class Member:
    user_id: str
    email: str | None
    role: str
    monthly_credit_cap: int | None
    joined_at: datetime
    month_spent: int | None  # visible to owners and admins (and to a member for themselves); None otherwise


@dataclass(frozen=True)
class Invitation:
    id: str
    role: str
    created_by: str | None
    expires_at: datetime
    used_at: datetime | None
    used_by: str | None
    revoked_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class TeamKey:
    provider_id: str
    last4: str
    base_url: str | None
    enabled: bool
    added_by: str | None
    added_by_email: str | None
    created_at: datetime


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    kind: str
    delta: int
    balance_after: int
    user_id: str | None
    request_id: str | None
    reason: str
    uncollected: int | None
    created_at: datetime


@dataclass(frozen=True)
class MemberUsage:
    user_id: str
    email: str | None
    requests: int
    tokens_in: int
    tokens_out: int
    credits: int


_TEAM_COLS = """t.id::text as id, t.name, t.slug, t.routing, t.created_at, public.team_role(t.id) as role,
                coalesce((select balance from public.team_credit_accounts a where a.team_id = t.id), 0) as balance,
                (select count(*) from public.team_members m where m.team_id = t.id)::int as members"""


def mine(conn: psycopg.Connection, user_id: str) -> list[Team]:
    with conn.cursor(row_factory=class_row(Team)) as cur:
        cur.execute(f"""select {_TEAM_COLS} from public.teams t
                        where exists (select 1 from public.team_members m where m.team_id = t.id and m.user_id = %s)
                        order by t.name, t.slug""", [user_id])
        return cur.fetchall()


def by_slug(conn: psycopg.Connection, slug: str) -> Team | None:
    """The team as the caller may see it (RLS): None for an outsider."""
    with conn.cursor(row_factory=class_row(Team)) as cur:
        cur.execute(f"select {_TEAM_COLS} from public.teams t where t.slug = %s", [slug])
        return cur.fetchone()


def all_teams(conn: psycopg.Connection, query: str | None, limit: int, offset: int) -> tuple[list[Team], int]:
    where, params = "", []
    if query:
        where, params = "where t.slug ilike %s or t.name ilike %s", [f"%{query}%", f"%{query}%"]
    row = conn.execute(f"select count(*) from public.teams t {where}", params).fetchone()
    with conn.cursor(row_factory=class_row(Team)) as cur:
        cur.execute(f"select {_TEAM_COLS} from public.teams t {where} order by t.created_at desc, t.id"
                    " limit %s offset %s", [*params, limit, offset])
        return cur.fetchall(), int(row[0]) if row else 0


def members(conn: psycopg.Connection, team_id: str) -> list[Member]:
    """Members with this month's (UTC) team spending (charged + held, as the member cap counts it) from the cap
    tally, where the caller may read it (owners, admins and site admins every member's, a member their own; None
    otherwise)."""
    with conn.cursor(row_factory=class_row(Member)) as cur:
        cur.execute("""select m.user_id::text as user_id, null::text as email, m.role, m.monthly_credit_cap,
                              m.joined_at, s.month_spent
                       from public.team_members m
                       left join public.team_month_spent(%s) s on s.user_id = m.user_id
                       where m.team_id = %s
                       order by case m.role when 'owner' then 0 when 'admin' then 1 else 2 end, m.joined_at""",
                    [team_id, team_id])
        return cur.fetchall()


def emails(conn: psycopg.Connection, user_ids: list[str]) -> dict[str, str]:
    """Emails of these users (service_role only: auth.users is not readable otherwise)."""
    if not user_ids:
        return {}
    rows = conn.execute("select id::text, email from auth.users where id = any(%s::uuid[])", [user_ids]).fetchall()
    return {r[0]: r[1] for r in rows}


def invitations(conn: psycopg.Connection, team_id: str) -> list[Invitation]:
    with conn.cursor(row_factory=class_row(Invitation)) as cur:
        cur.execute("""select id::text as id, role, created_by::text as created_by, expires_at, used_at,
                              used_by::text as used_by, revoked_at, created_at
                       from public.team_invitations where team_id = %s order by created_at desc limit 200""",
                    [team_id])
        return cur.fetchall()


def keys(conn: psycopg.Connection, team_id: str) -> list[TeamKey]:
    with conn.cursor(row_factory=class_row(TeamKey)) as cur:
        cur.execute("""select provider_id::text as provider_id, last4, base_url, enabled,
                              added_by::text as added_by, null::text as added_by_email, created_at
                       from public.team_provider_keys where team_id = %s order by priority, created_at""",
                    [team_id])
        return cur.fetchall()


def ledger_page(conn: psycopg.Connection, team_id: str, limit: int, before: int | None) -> list[LedgerEntry]:
    with conn.cursor(row_factory=class_row(LedgerEntry)) as cur:
        cur.execute("""select id, kind, delta, balance_after, user_id::text as user_id,
                              request_id::text as request_id, reason, uncollected, created_at
                       from public.team_credit_ledger
                       where team_id = %s and (%s::bigint is null or id < %s::bigint)
                       order by id desc limit %s""", [team_id, before, before, limit])
        return cur.fetchall()


def usage_by_member(conn: psycopg.Connection, team_id: str, start: date, end: date) -> list[MemberUsage]:
    """Per member: requests, tokens and credits billed to the team from `start` to `end` (days, inclusive),
    from the rows the caller may read (RLS: owners and admins every member's, a member their own)."""
    with conn.cursor(row_factory=class_row(MemberUsage)) as cur:
        cur.execute("""select u.user_id::text as user_id, null::text as email, sum(u.requests)::int as requests,
                              sum(u.tokens_in)::bigint as tokens_in, sum(u.tokens_out)::bigint as tokens_out,
                              sum(u.credits)::bigint as credits
                       from public.usage_daily u
                       where u.team_id = %s and u.day >= %s::date and u.day < %s::date + 1
                       group by u.user_id order by credits desc, user_id""", [team_id, start, end])
        return cur.fetchall()


@dataclass(frozen=True)
class TeamUsage:
    team_id: str | None
    slug: str | None
    name: str | None
    requests: int
    tokens_in: int
    tokens_out: int
    credits: int
    errors: int


def usage_by_team(conn: psycopg.Connection, start: date, end: date) -> list[TeamUsage]:
    """Site analytics: every request in the days from `start` to `end` grouped by the team billed (None:
    personal). Run as a site admin (RLS: admins read every log row)."""
    with conn.cursor(row_factory=class_row(TeamUsage)) as cur:
        # Per team from usage_daily_teams; personal use (no team) is the platform total less the teams' share.
        cur.execute("""with t as (select team_id, sum(requests) r, sum(tokens_in) ti, sum(tokens_out) tout,
                                         sum(credits) c, sum(errors) e
                                  from public.usage_daily_teams
                                  where day >= %(start)s::date and day < %(end)s::date + 1 group by team_id),
                            p as (select sum(requests) r, sum(tokens_in) ti, sum(tokens_out) tout, sum(credits) c,
                                         coalesce(sum(requests) filter (where status_class >= 4), 0) e
                                  from public.usage_daily_platform
                                  where day >= %(start)s::date and day < %(end)s::date + 1)
                       select t.team_id::text as team_id, tm.slug, tm.name, t.r::int as requests,
                              t.ti::bigint as tokens_in, t.tout::bigint as tokens_out, t.c::bigint as credits,
                              t.e::int as errors
                         from t left join public.teams tm on tm.id = t.team_id
                       union all
                       select null, null, null, (p.r - coalesce((select sum(r) from t), 0))::int,
                              (p.ti - coalesce((select sum(ti) from t), 0))::bigint,
                              (p.tout - coalesce((select sum(tout) from t), 0))::bigint,
                              (p.c - coalesce((select sum(c) from t), 0))::bigint,
                              (p.e - coalesce((select sum(e) from t), 0))::int
                         from p where p.r > coalesce((select sum(r) from t), 0)
                       order by credits desc, requests desc""", {"start": start, "end": end})
        return cur.fetchall()


# -- writes: the team_* functions (they check the caller's role) ------------------------------------------------

def call(conn: psycopg.Connection, function: str, *args: Any) -> Any:
    placeholders = ", ".join(["%s"] * len(args))
    wrapped = [Jsonb(a) if isinstance(a, dict) else a for a in args]
    row = conn.execute(f"select public.{function}({placeholders})", wrapped).fetchone()  # names are constants
    return row[0] if row else None


def adjust(conn: psycopg.Connection, team_id: str, delta: int, reason: str, actor_id: str | None) -> int:
    """Service role: grant (or deduct) a team's credits; returns the new balance."""
    row = conn.execute("select public.team_credits_adjust(%s, %s, %s, %s)",
                       [team_id, delta, reason, actor_id]).fetchone()
    assert row is not None
    return int(row[0])


def default_team(conn: psycopg.Connection, user_id: str) -> str | None:
    row = conn.execute("""select t.slug from public.user_preferences p join public.teams t on t.id = p.default_team_id
                          where p.user_id = %s""", [user_id]).fetchone()
    return str(row[0]) if row else None

def usage_days(conn: psycopg.Connection, team_id: str, start: date, end: date,
               user_id: str | None) -> list[tuple[Any, ...]]:
    """(day, provider, requests, tokens_in, tokens_out, credits, errors) billed to the team, from the rows the caller
    may read (RLS: owners and admins every member's, a member their own), optionally of one member."""
    # The day as the UTC midnight timestamp the callers have always read (.date()).
    return conn.execute("""select day::timestamp at time zone 'utc', nullif(provider, '') as provider,
                                  sum(requests)::bigint,
                                  sum(tokens_in)::bigint, sum(tokens_out)::bigint, sum(credits)::bigint,
                                  (coalesce(sum(requests) filter (where status_class >= 4), 0))::bigint
                           from public.usage_daily
                           where team_id = %s and day >= %s::date and day < %s::date + 1
                             and (%s::uuid is null or user_id = %s::uuid)
                           group by day, 2 order by day, 2""", [team_id, start, end, user_id, user_id]).fetchall()


def invitation_preview(conn: psycopg.Connection, token_hash: str) -> tuple[str, str, str] | None:
    """Service role. (team name, team slug, role) of a live invitation by its token's keyed hash, or None when it was
    used, revoked, has expired or never existed."""
    row = conn.execute("""select t.name, t.slug, i.role from public.team_invitations i
                          join public.teams t on t.id = i.team_id
                          where i.hash = %s and i.used_at is null and i.revoked_at is null
                            and i.expires_at > now()""", [token_hash]).fetchone()
    return (str(row[0]), str(row[1]), str(row[2])) if row else None

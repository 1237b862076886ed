"""One round trip per gateway request: the principal check (user still there, not banned, session not ended; or a
personal API key known, live, and its owner's account in good standing),
the user's preferences, their enabled stored keys and the catalog version, read as service_role for the verified
user id. gateway_admit runs only for a principal the check accepted (its tables reference auth.users)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import psycopg

from webapp.repos.api_keys import KeyScope
from webapp.repos.preferences import Preferences
from webapp.repos.user_keys import UserKeySecret

# public.gateway_begin (migration 20261201300000): principal, context, admission and (optionally) the reservation in
# one function, whose plans Postgres keeps per connection.
_BEGIN = ("select public.gateway_begin(%(uid)s::uuid, %(sid)s::uuid, %(key)s::text, %(team)s::text, %(billing)s,"
          " %(admit)s, %(per_minute)s, %(stream)s::uuid, %(max_streams)s, %(stale)s, %(fp)s::text,"
          " %(request)s::uuid, %(min)s::bigint, %(max)s::bigint)")


@dataclass(frozen=True)
class Admission:
    per_minute: int
    max_streams: int
    stale_seconds: int
    stream_request_id: str | None


@dataclass(frozen=True)
class UserContext:
    preferences: Preferences
    keys: list[UserKeySecret]
    catalog_version: int
    admit: dict[str, Any] | None = None
    principal: dict[str, Any] | None = None  # public.principal_status's (or api_key_principal's) verdict
    api_key: KeyScope | None = None  # the restrictions of the personal API key the request came with
    team: TeamBilling | None = None  # the team the request is billed to (membership checked: see `team_refusal`)
    team_refusal: str | None = None  # "not_a_team_member" / "team_not_allowed": refuse before anything else


@dataclass(frozen=True)
class TeamBilling:
    """The team a request bills: its wallet (member mode), its stored keys (BYOK) and its default routing."""

    id: str
    slug: str
    role: str
    routing: dict[str, Any]


@dataclass(frozen=True)
class ReserveAsk:
    """A reservation priced by the app from the context it holds for this caller (`fingerprint`): made in the same
    statement only when the context read there has that very fingerprint."""

    fingerprint: str
    request_id: str
    minimum: int
    maximum: int


@dataclass(frozen=True)
class Begun:
    context: UserContext
    fingerprint: str  # md5 of everything in the context the routing and the price depend on
    reserved: dict[str, Any] | None = None  # {"amount", "limited_by"} or {"refused": sqlstate, "available"}


def load(conn: psycopg.Connection, user_id: str | None, admission: Admission | None = None,
         session_id: str | None = None, key_digest: str | None = None, team: str | None = None,
         billing: bool = False) -> UserContext:
    """The context in one round trip; with `admission`, also count this request against the user's limits
    (only when the principal check passed: check `principal` before anything else). With `key_digest` (a
    personal API key's HMAC) instead of a user id, the key is resolved to its owner in the same statement. The
    team billed (the `team` slug asked for, else the key's team, else the user's default team) and the caller's
    membership are read in the same statement too; with `billing` (a request that spends), that team's routing
    and keys replace the user's (settings pages and quotes see the user's own)."""
    return begin(conn, user_id, admission, session_id, key_digest, team, billing).context


def begin(conn: psycopg.Connection, user_id: str | None, admission: Admission | None = None,
          session_id: str | None = None, key_digest: str | None = None, team: str | None = None,
          billing: bool = False, held: tuple[str, UserContext] | None = None,
          ask: ReserveAsk | None = None) -> Begun:
    """`load`, plus the reservation `ask` when `held` (the fingerprint and context the ask was priced from) is still
    exactly the context: then the statement answers only what changes per request and `held` is reused."""
    params: dict[str, Any] = {
        "uid": None if key_digest else user_id, "sid": session_id, "key": key_digest, "team": team,
        "billing": billing, "admit": admission is not None,
        "per_minute": admission.per_minute if admission else 0,
        "stream": admission.stream_request_id if admission else None,
        "max_streams": admission.max_streams if admission else 0,
        "stale": admission.stale_seconds if admission else 0,
        "fp": ask.fingerprint if ask else None, "request": ask.request_id if ask else None,
        "min": ask.minimum if ask else None, "max": ask.maximum if ask else None}
    row: Any = conn.execute(_BEGIN, params).fetchone()
    out: dict[str, Any] = row[0]
    fp = str(out["fp"])
    if "prefs" not in out:  # only when the fingerprint asked for matched: the held context is the context
        if held is None or held[0] != fp:
            raise RuntimeError("gateway_begin answered for a context the caller does not hold")
        return Begun(replace(held[1], admit=out.get("admit"), principal=out.get("principal")), fp,
                     out.get("reserve"))
    principal = out.get("principal")
    owner = str((principal or {}).get("user_id") or user_id or "")
    prefs = Preferences(**out["prefs"]) if out.get("prefs") else Preferences(user_id=owner)
    keys = [UserKeySecret(**k) for k in out.get("keys") or []]
    refusal = out.get("refusal") if billing else None
    team_row = out.get("team")
    billed = _team(team_row) if billing and refusal is None and team_row is not None else None
    if billed is not None:
        prefs = team_preferences(prefs, billed.routing)
        keys = [UserKeySecret(**k) for k in team_row["keys"]]
    ctx = UserContext(prefs, keys, int(out.get("catalog_version") or 0), out.get("admit"), principal,
                      KeyScope.from_verdict(principal), billed, refusal)
    return Begun(ctx, fp, out.get("reserve"))


_TEAM_ROUTING = ("provider_priorities", "fallbacks_enabled", "allow_dearer_fallbacks", "default_provider",
                 "task_overrides")


def team_preferences(prefs: Preferences, routing: dict[str, Any]) -> Preferences:
    """The member's preferences with the team's default routing in place of theirs, field by field as set."""
    return replace(prefs, **{k: routing[k] for k in _TEAM_ROUTING if k in routing})


def _team(row: dict[str, Any]) -> TeamBilling:
    """The billed team (public.gateway_begin has refused a caller who is not its member, or whose key is bound to
    another team than the one asked for)."""
    return TeamBilling(str(row["id"]), str(row["slug"]), str(row["role"]), dict(row.get("routing") or {}))


def release_stream(conn: psycopg.Connection, request_id: str) -> None:
    conn.execute("delete from public.active_streams where request_id = %s", [request_id])

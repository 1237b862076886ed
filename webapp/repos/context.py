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

_QUERY = """
with principal as materialized (select {principal} as s)
select
  case when ((select s from principal) ->> 'ok')::boolean then {admit} end as admit,
  (select row_to_json(p) from (
     select user_id::text as user_id, username, first_name, last_name, email_notifications, marketing_emails,
            llm_mode, default_provider, fallbacks_enabled, never_spend_credits, provider_priorities,
            task_overrides, monthly_credit_cap, allow_dearer_fallbacks
     from public.user_preferences where user_id = {uid}) p) as prefs,
  (select coalesce(json_agg(k order by k.priority), '[]'::json) from (
     select id::text as id, user_id::text as user_id, provider_id::text as provider_id, ciphertext, key_id,
            base_url, priority
     from public.user_provider_keys where user_id = {uid} and enabled) k) as keys,
  (select version from public.catalog_version) as catalog_version,
  (select s from principal) as principal,
  (select row_to_json(x) from (
     select t.id::text as id, t.slug, t.routing, m.role, m.monthly_credit_cap,
            (select coalesce(json_agg(k order by k.priority), '[]'::json) from (
               select id::text as id, team_id::text as user_id, provider_id::text as provider_id, ciphertext, key_id,
                      base_url, priority
               from public.team_provider_keys where team_id = t.id and enabled) k) as keys
     from public.teams t left join public.team_members m on m.team_id = t.id and m.user_id = {uid}
     where t.id = coalesce((select id from public.teams where slug = %(team)s::text),
                           case when %(team)s::text is null then coalesce(
                             (select team_id from public.api_keys where hash = %(key)s::text),
                             (select default_team_id from public.user_preferences where user_id = {uid})) end)
  ) x) as team,
  (select team_id::text from public.api_keys where hash = %(key)s::text) as key_team
"""

# A token names its user; a personal API key is resolved to its owner by the principal itself (key known, not
# revoked or expired, owner not deleted or banned), and the rest of the statement takes the uid from it.
_TOKEN = {"principal": "public.principal_status(%(uid)s::uuid, %(sid)s::uuid)", "uid": "%(uid)s::uuid"}
_KEY = {"principal": "public.api_key_principal(%(key)s)",
        "uid": "(select (s ->> 'user_id')::uuid from principal where (s ->> 'ok')::boolean)"}
_ADMIT = "public.gateway_admit({uid}, %(per_minute)s, %(stream)s, %(max_streams)s, %(stale)s)"
_QUERIES = {(by, admit): _QUERY.format(admit=_ADMIT.format(uid=parts["uid"]) if admit else "null::jsonb", **parts)
            for by, parts in (("token", _TOKEN), ("key", _KEY)) for admit in (False, True)}


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


def load(conn: psycopg.Connection, user_id: str | None, admission: Admission | None = None,
         session_id: str | None = None, key_digest: str | None = None, team: str | None = None,
         billing: bool = False) -> UserContext:
    """The context in one round trip; with `admission`, also count this request against the user's limits
    (only when the principal check passed: check `principal` before anything else). With `key_digest` (a
    personal API key's HMAC) instead of a user id, the key is resolved to its owner in the same statement. The
    team billed (the `team` slug asked for, else the key's team, else the user's default team) and the caller's
    membership are read in the same statement too; with `billing` (a request that spends), that team's routing
    and keys replace the user's (settings pages and quotes see the user's own)."""
    params: dict[str, Any] = {"uid": user_id, "sid": session_id, "key": key_digest, "team": team}
    if admission is not None:
        params.update(per_minute=admission.per_minute, stream=admission.stream_request_id,
                      max_streams=admission.max_streams, stale=admission.stale_seconds)
    row: Any = conn.execute(_QUERIES["key" if key_digest else "token", admission is not None], params).fetchone()
    principal = row[4]
    owner = str((principal or {}).get("user_id") or user_id or "")
    prefs = Preferences(**row[1]) if row[1] else Preferences(user_id=owner)
    keys = [UserKeySecret(**k) for k in row[2]]
    billing, refusal = _team(row[5], row[6], team) if billing else (None, None)
    if billing is not None:
        prefs = team_preferences(prefs, billing.routing)
        keys = [UserKeySecret(**k) for k in row[5]["keys"]]
    return UserContext(prefs, keys, int(row[3] or 0), row[0], principal, KeyScope.from_verdict(principal),
                       billing, refusal)


_TEAM_ROUTING = ("provider_priorities", "fallbacks_enabled", "allow_dearer_fallbacks", "default_provider",
                 "task_overrides")


def team_preferences(prefs: Preferences, routing: dict[str, Any]) -> Preferences:
    """The member's preferences with the team's default routing in place of theirs, field by field as set."""
    return replace(prefs, **{k: routing[k] for k in _TEAM_ROUTING if k in routing})


def _team(row: dict[str, Any] | None, key_team: str | None,
          asked: str | None) -> tuple[TeamBilling | None, str | None]:
    if row is None:
        return None, ("not_a_team_member" if asked else None)
    if not row.get("role"):
        return None, "not_a_team_member"
    if asked and key_team and key_team != row["id"]:
        return None, "team_not_allowed"
    return TeamBilling(str(row["id"]), str(row["slug"]), str(row["role"]), dict(row.get("routing") or {})), None


def release_stream(conn: psycopg.Connection, request_id: str) -> None:
    conn.execute("delete from public.active_streams where request_id = %s", [request_id])

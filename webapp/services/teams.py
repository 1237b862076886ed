"""Teams: what members, team admins, owners and site admins may do, for the JSON API and the pages alike.

Every function takes the caller's verified claims and runs as that user (db.as_user), so RLS and the team_*
SQL functions decide who may read or change what; this module validates input (every client value is hostile),
maps the database's refusals to stable error codes, and shapes the answers. Invitation tokens are shown once and
stored as a keyed hash; team BYOK keys are encrypted with an AAD bound to the team row and never shown again (last
4 and who added them only). Personal API keys cannot manage teams."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from webapp.config import Settings
from webapp.crypto import KeyRing, last4
from webapp.db import Database
from webapp.errors import AppError, Conflict, Forbidden, NotFound, ValidationError
from webapp.repos import admin as admin_repo
from webapp.repos import teams as repo
from webapp.services import api_keys
from webapp.services.admin import admin_tx
from webapp.services.catalog import Catalog
from webapp.services.credits import format_credits, parse_amount
from webapp.services.keys import _provider, validate_key

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
TASK_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MODEL_RE = re.compile(r"^[!-~]{1,200}$")
ROLES = ("owner", "admin", "member")
INVITE_ROLES = ("admin", "member")
INVITE_DAYS_DEFAULT, INVITE_DAYS_MAX = 7, 30
TOKEN_PREFIX = "sbt_"  # noqa: S105 (a public prefix, not a secret)
MAX_CAP = Decimal(10) ** 9
MAX_GRANT = Decimal(10) ** 9
MAX_TEAMS_PER_USER = 50
PAGE, MAX_PAGE = 25, 100
ROUTING_FIELDS = ("provider_priorities", "fallbacks_enabled", "allow_dearer_fallbacks", "default_provider",
                  "task_overrides")

_REFUSALS: dict[str, tuple[type[AppError], str, str]] = {
    repo.FORBIDDEN: (Forbidden, "team_forbidden", "Your role in this team does not allow that."),
    repo.NOT_FOUND: (NotFound, "team_not_found", "No such team, member, invitation or key that you can see."),
    repo.OWNER_RULE: (Conflict, "team_owner_required",
                      "A team always keeps exactly one owner: transfer ownership first, or set roles other than "
                      "owner."),
    repo.INVITATION_INVALID: (AppError, "invitation_invalid",
                              "This invitation link is not valid: it was used, revoked, has expired, or never "
                              "existed."),
    repo.ALREADY_MEMBER: (Conflict, "already_a_member", "You are already a member of this team."),
}


@contextmanager
def _mapped() -> Iterator[None]:
    """The team functions' refusals as stable API errors (and a taken slug as a 409)."""
    try:
        yield
    except psycopg.errors.UniqueViolation:
        raise Conflict("That slug is taken: choose another.", code="slug_taken", field="slug") from None
    except psycopg.Error as exc:
        refusal = _REFUSALS.get(getattr(exc, "sqlstate", "") or "")
        if refusal is None:
            raise
        cls, code, message = refusal
        if exc.diag.message_primary in ("member_not_found", "invitation_not_found", "key_not_found",
                                        "api_key_not_found"):
            code = str(exc.diag.message_primary)
        raise cls(message, code=code, status=404 if cls is NotFound else None) from None


def _refuse_key(claims: Mapping[str, Any]) -> None:
    api_keys.refuse_key(claims, "manage teams")


def _slug(value: Any, field: str = "slug") -> str:
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value):
        raise ValidationError({field: "2 to 40 lowercase letters, digits and single dashes (not at the ends)."}
                              if field == "slug" else {field: "A team slug."})
    return value


def _uuid(value: Any, field: str) -> str:
    try:
        return str(uuid.UUID(str(value))) if isinstance(value, str) and len(value) <= 40 else _bad(field)
    except ValueError:
        return _bad(field)


def _bad(field: str) -> str:
    raise ValidationError({field: "An id (UUID)."})


def _body(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValidationError({"body": "Send a JSON object."})
    return payload


def _team(conn: psycopg.Connection, slug: Any) -> repo.Team:
    """The team as the caller sees it; an outsider gets the same 404 as for a slug that does not exist."""
    team = repo.by_slug(conn, _slug(slug, "team")) if isinstance(slug, str) and SLUG_RE.fullmatch(slug) else None
    if team is None:
        raise NotFound("No such team that you belong to.", code="team_not_found")
    return team


def _manager(team: repo.Team) -> None:
    if team.role not in ("owner", "admin"):
        raise Forbidden("Only the team's owner and admins may do that.", code="team_forbidden")


def token_hash(settings: Settings, token: str) -> str:
    """The keyed hash stored for an invitation token (HMAC-SHA256 with API_KEY_SECRET, like personal API keys)."""
    return hmac.new(settings.api_key_secret.encode(), b"team-invite:" + token.encode(), hashlib.sha256).hexdigest()


# -- teams ----------------------------------------------------------------------------------------------------------

def create_team(db: Database, claims: Mapping[str, Any], payload: Any) -> repo.Team:
    """Create a team (name, slug); the caller becomes its owner. 422 on bad input, 409 `slug_taken`."""
    _refuse_key(claims)
    body = _body(payload)
    errors: dict[str, str] = {}
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or "\x00" in name:  # maxLength: as sent
        errors["name"] = "1 to 100 characters."
    slug = body.get("slug")
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        errors["slug"] = "2 to 40 lowercase letters, digits and single dashes (not at the ends)."
    elif len(slug) < 2:
        errors["slug"] = "At least 2 characters."
    if errors:
        raise ValidationError(errors)
    with db.as_user(claims) as conn, _mapped():
        if len(repo.mine(conn, str(claims["sub"]))) >= MAX_TEAMS_PER_USER:
            raise Conflict(f"You belong to {MAX_TEAMS_PER_USER} teams already.", code="too_many_teams")
        repo.call(conn, "team_create", str(name).strip(), slug)
        return _team(conn, slug)


def my_teams(db: Database, claims: Mapping[str, Any]) -> list[repo.Team]:
    """The teams the caller belongs to, with their role and the team's balance."""
    with db.as_user(claims) as conn:
        return repo.mine(conn, str(claims["sub"]))


def get_team(db: Database, claims: Mapping[str, Any], slug: Any) -> repo.Team:
    """One team the caller belongs to (404 `team_not_found` otherwise, whether or not it exists)."""
    with db.as_user(claims) as conn:
        return _team(conn, slug)


def rename(db: Database, claims: Mapping[str, Any], slug: Any, payload: Any) -> repo.Team:
    """Owners and admins rename the team (`{"name"}`)."""
    _refuse_key(claims)
    name = _body(payload).get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or "\x00" in name:  # maxLength: as sent
        raise ValidationError({"name": "1 to 100 characters."})
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        repo.call(conn, "team_update", team.id, name.strip(), None)
        return _team(conn, slug)


# -- members --------------------------------------------------------------------------------------------------------

def members(db: Database, claims: Mapping[str, Any], slug: Any) -> list[repo.Member]:
    """The roster with emails; this month's team spending per member where the caller may read it."""
    with db.as_user(claims) as conn:
        team = _team(conn, slug)
        rows = repo.members(conn, team.id)
        with admin_repo.service_role(conn):
            mail = repo.emails(conn, [m.user_id for m in rows])
    me = str(claims["sub"])
    manager = team.role in ("owner", "admin")
    return [repo.Member(m.user_id, mail.get(m.user_id), m.role, m.monthly_credit_cap, m.joined_at,
                        (m.month_spent or 0) if manager or m.user_id == me else None) for m in rows]


def set_role(db: Database, claims: Mapping[str, Any], slug: Any, user_id: Any, payload: Any) -> None:
    """`{"role": "admin"|"member"}`. Owners change anyone but the owner; admins too. Ownership moves only by
    `transfer` (409 `team_owner_required` for role "owner")."""
    _refuse_key(claims)
    role = _body(payload).get("role")
    if role not in ROLES:
        raise ValidationError({"role": "owner, admin or member."})
    target = _uuid(user_id, "user_id")
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        repo.call(conn, "team_set_role", team.id, target, role)


def remove_member(db: Database, claims: Mapping[str, Any], slug: Any, user_id: Any) -> None:
    """Remove a member (owners: anyone but themselves; admins: members). Refused on their next request."""
    _refuse_key(claims)
    target = _uuid(user_id, "user_id")
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        repo.call(conn, "team_remove", team.id, target)


def leave(db: Database, claims: Mapping[str, Any], slug: Any) -> None:
    """Leave the team (the owner transfers ownership first: 409 `team_owner_required`)."""
    _refuse_key(claims)
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        repo.call(conn, "team_remove", team.id, str(claims["sub"]))


def transfer(db: Database, claims: Mapping[str, Any], slug: Any, payload: Any) -> None:
    """`{"user_id"}`: the owner hands ownership to another member and becomes an admin."""
    _refuse_key(claims)
    target = _uuid(_body(payload).get("user_id"), "user_id")
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        repo.call(conn, "team_transfer", team.id, target)


def set_cap(db: Database, claims: Mapping[str, Any], slug: Any, user_id: Any, payload: Any) -> None:
    """`{"monthly_credit_cap": "12.5" | null}` for one member; owners and admins only (a member never raises
    their own). Enforced in the reservation, under the team wallet's lock."""
    _refuse_key(claims)
    body = _body(payload)
    if "monthly_credit_cap" not in body:
        raise ValidationError({"monthly_credit_cap": "Credits per month, or null for no cap."})
    raw = body["monthly_credit_cap"]
    cap: int | None = None
    if raw is not None:
        cap, problem = parse_amount(raw, MAX_CAP)
        if problem:
            raise ValidationError({"monthly_credit_cap": problem})
    target = _uuid(user_id, "user_id")
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        repo.call(conn, "team_set_cap", team.id, target, cap)


# -- invitations ----------------------------------------------------------------------------------------------------

def create_invitation(db: Database, settings: Settings, claims: Mapping[str, Any], slug: Any,
                      payload: Any) -> tuple[repo.Invitation, str]:
    """`{"role"?: "member"|"admin", "expires_in_days"?: 1..30}` -> (the invitation, its token, shown once)."""
    _refuse_key(claims)
    body = _body(payload) if payload is not None else {}
    role = body.get("role", "member")
    days = body.get("expires_in_days", INVITE_DAYS_DEFAULT)
    errors: dict[str, str] = {}
    if role not in INVITE_ROLES:
        errors["role"] = "member or admin."
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= INVITE_DAYS_MAX:
        errors["expires_in_days"] = f"A whole number of days from 1 to {INVITE_DAYS_MAX}."
    if errors:
        raise ValidationError(errors)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(days=int(days))
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        inv_id = str(repo.call(conn, "team_invite", team.id, token_hash(settings, token), role, expires))
        invitation = next(i for i in repo.invitations(conn, team.id) if i.id == inv_id)
    return invitation, token


def invitations(db: Database, claims: Mapping[str, Any], slug: Any) -> list[repo.Invitation]:
    """Owners and admins: the team's invitations (never their tokens)."""
    with db.as_user(claims) as conn:
        team = _team(conn, slug)
        _manager(team)
        return repo.invitations(conn, team.id)


def revoke_invitation(db: Database, claims: Mapping[str, Any], slug: Any, invitation_id: Any) -> None:
    _refuse_key(claims)
    inv = _uuid(invitation_id, "invitation_id")
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        repo.call(conn, "team_revoke_invitation", team.id, inv)


def join(db: Database, settings: Settings, claims: Mapping[str, Any], payload: Any) -> repo.Team:
    """`{"token"}`: accept an invitation (single use). 400 `invitation_invalid`, 409 `already_a_member`."""
    _refuse_key(claims)
    token = _body(payload).get("token")
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or not 20 <= len(token) <= 100 \
            or not token.isascii():
        raise AppError(_REFUSALS[repo.INVITATION_INVALID][2], code="invitation_invalid", field="token")
    with db.as_user(claims) as conn, _mapped():
        team_id = str(repo.call(conn, "team_join", token_hash(settings, token)))
        team = next(t for t in repo.mine(conn, str(claims["sub"])) if t.id == team_id)
    return team


def invitation_preview(db: Database, settings: Settings, claims: Mapping[str, Any],
                       token: Any) -> tuple[str, str, str] | None:
    """(team name, slug, role) the invitation link `token` offers, for the page it opens; None when it does not
    work (used, revoked, expired or unknown: all read the same)."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or not 20 <= len(token) <= 100 \
            or not token.isascii():
        return None
    with db.as_user(claims) as conn, admin_repo.service_role(conn):  # the hash column is service_role's only
        return repo.invitation_preview(conn, token_hash(settings, token))


# -- wallet ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LedgerPage:
    entries: list[repo.LedgerEntry]
    next_before: int | None


def ledger_page(db: Database, claims: Mapping[str, Any], slug: Any, limit: int, before: int | None) -> LedgerPage:
    """Newest first, keyset-paged (see user_account.parse_page). Members see grants and their own rows; owners
    and admins every row (RLS)."""
    with db.as_user(claims) as conn:
        team = _team(conn, slug)
        rows = repo.ledger_page(conn, team.id, limit + 1, before)
    more = len(rows) > limit
    rows = rows[:limit]
    return LedgerPage(rows, rows[-1].id if more and rows else None)


# -- keys -----------------------------------------------------------------------------------------------------------

def keys(db: Database, claims: Mapping[str, Any], slug: Any) -> list[repo.TeamKey]:
    """The team's BYOK keys: provider, last 4, who added them; never the key."""
    with db.as_user(claims) as conn:
        team = _team(conn, slug)
        rows = repo.keys(conn, team.id)
        with admin_repo.service_role(conn):
            mail = repo.emails(conn, [k.added_by for k in rows if k.added_by])
    return [repo.TeamKey(k.provider_id, k.last4, k.base_url, k.enabled, k.added_by,
                         mail.get(k.added_by or ""), k.created_at) for k in rows]


def put_key(db: Database, settings: Settings, keyring: KeyRing, catalog: Catalog, claims: Mapping[str, Any],
            slug: Any, provider_slug: str, payload: Any) -> repo.TeamKey:
    """Owners and admins store (or replace) the team's key for a provider: `{"api_key", "base_url"?}`."""
    _refuse_key(claims)
    body = _body(payload)
    provider = _provider(catalog, provider_slug)
    secret, base_url = validate_key(provider, body.get("api_key"), body.get("base_url"), settings)
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        _manager(team)
        ciphertext, kid = keyring.encrypt(secret, repo.team_aad(team.id, provider.id))
        repo.call(conn, "team_put_key", team.id, provider.id, ciphertext, kid, last4(secret), base_url)
        row = next(k for k in repo.keys(conn, team.id) if k.provider_id == provider.id)
    return row


def delete_key(db: Database, catalog: Catalog, claims: Mapping[str, Any], slug: Any, provider_slug: str) -> None:
    _refuse_key(claims)
    provider = catalog.providers.get(provider_slug)
    if provider is None:
        raise NotFound(f"No provider {provider_slug[:64]!r}.", code="provider_not_found")
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        repo.call(conn, "team_delete_key", team.id, provider.id)


# -- routing --------------------------------------------------------------------------------------------------------

def validate_routing(payload: Any, catalog: Catalog) -> dict[str, Any]:
    """The team's default routing: provider order, fallbacks (and dearer fallbacks), default provider and task
    overrides, each checked against the catalog. Fields left out are not set (members keep their own)."""
    body = _body(payload)
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    unknown = set(body) - set(ROUTING_FIELDS)
    if unknown:
        errors["body"] = f"Unknown fields; send any of: {', '.join(ROUTING_FIELDS)}."
    enabled = {s for s, p in catalog.providers.items() if p.enabled and p.archived_at is None}
    if "provider_priorities" in body:
        v = body["provider_priorities"]
        if not isinstance(v, list) or len(v) > 50 or not all(isinstance(s, str) and s in enabled for s in v):
            errors["provider_priorities"] = "A list of enabled provider slugs."
        else:
            out["provider_priorities"] = list(dict.fromkeys(v))
    for flag in ("fallbacks_enabled", "allow_dearer_fallbacks"):
        if flag in body:
            if not isinstance(body[flag], bool):
                errors[flag] = "true or false."
            else:
                out[flag] = body[flag]
    if "default_provider" in body:
        v = body["default_provider"]
        if v is not None and not (isinstance(v, str) and v in enabled):
            errors["default_provider"] = "An enabled provider slug, or null."
        else:
            out["default_provider"] = v
    if "task_overrides" in body:
        v = body["task_overrides"]
        clean: dict[str, Any] = {}
        if not isinstance(v, dict) or len(v) > 50:
            errors["task_overrides"] = "An object of task name to {provider, model} (at most 50)."
        else:
            for task, rule in v.items():
                if not TASK_RE.fullmatch(str(task)) or not isinstance(rule, dict) \
                        or not isinstance(rule.get("provider"), str) or rule["provider"] not in enabled \
                        or not isinstance(rule.get("model"), str) \
                        or not MODEL_RE.fullmatch(rule["model"]):
                    errors["task_overrides"] = (f"Task {str(task)[:64]!r}: a name of 1 to 64 letters, digits, '.', "
                                                "'-', '_' with {provider: an enabled slug, model: a model id}.")
                    break
                clean[str(task)] = {"provider": rule["provider"], "model": rule["model"]}
            out["task_overrides"] = clean
    if errors:
        raise ValidationError(errors)
    return out


def set_routing(db: Database, catalog: Catalog, claims: Mapping[str, Any], slug: Any, payload: Any) -> repo.Team:
    """Owners and admins replace the team's default routing (what members inherit when billed to the team)."""
    _refuse_key(claims)
    routing = validate_routing(payload, catalog)
    with db.as_user(claims) as conn, _mapped():
        team = _team(conn, slug)
        repo.call(conn, "team_update", team.id, None, routing)
        return _team(conn, slug)


# -- usage, defaults ------------------------------------------------------------------------------------------------

def usage_by_member(db: Database, claims: Mapping[str, Any], slug: Any, start: date,
                    end: date) -> list[repo.MemberUsage]:
    """Requests, tokens and credits billed to the team per member (owners/admins: everyone; a member: self)."""
    with db.as_user(claims) as conn:
        team = _team(conn, slug)
        rows = repo.usage_by_member(conn, team.id, start, end)
        with admin_repo.service_role(conn):
            mail = repo.emails(conn, [r.user_id for r in rows])
    return [repo.MemberUsage(r.user_id, mail.get(r.user_id), r.requests, r.tokens_in, r.tokens_out, r.credits)
            for r in rows]


def usage_buckets(db: Database, claims: Mapping[str, Any], slug: Any, start: date, end: date,
                  member: Any = None) -> list[dict[str, Any]]:
    """Day x provider buckets billed to the team (shaped like usage.summary's), for the Teams page's charts."""
    user_id = None if member in (None, "") else _uuid(member, "member")
    with db.as_user(claims) as conn:
        team = _team(conn, slug)
        rows = repo.usage_days(conn, team.id, start, end, user_id)
    return [{"day": r[0].date().isoformat(), "provider": r[1], "requests": r[2], "tokens_in": int(r[3]),
             "tokens_out": int(r[4]), "credits": format_credits(int(r[5])), "credits_micro": int(r[5]),
             "errors": r[6]} for r in rows]


def set_default_team(db: Database, claims: Mapping[str, Any], slug: Any) -> str | None:
    """The caller's default team (None: personal): requests without a team header or team-bound key bill it."""
    _refuse_key(claims)
    with db.as_user(claims) as conn, _mapped():
        team_id = None if slug in (None, "") else _team(conn, slug).id
        repo.call(conn, "team_set_default", team_id)
        return repo.default_team(conn, str(claims["sub"]))


def default_team(db: Database, claims: Mapping[str, Any]) -> str | None:
    with db.as_user(claims) as conn:
        return repo.default_team(conn, str(claims["sub"]))


def bind_api_key(db: Database, claims: Mapping[str, Any], key_id: Any, slug: Any) -> None:
    """Bind one of the caller's personal API keys to a team they belong to (None: unbind)."""
    _refuse_key(claims)
    key = _uuid(key_id, "key_id")
    with db.as_user(claims) as conn, _mapped():
        team_id = None if slug in (None, "") else _team(conn, slug).id
        repo.call(conn, "team_bind_api_key", key, team_id)


# -- site admins ----------------------------------------------------------------------------------------------------

def admin_list(db: Database, claims: Mapping[str, Any], query: Any, limit: int,
               offset: int) -> tuple[list[repo.Team], int]:
    """Every team (site admins), newest first, filtered by slug or name."""
    if query is not None and (not isinstance(query, str) or len(query) > 100 or "\x00" in query):
        raise ValidationError({"q": "At most 100 characters."})
    q = query or None
    with admin_tx(db, claims) as conn:
        return repo.all_teams(conn, q, limit, offset)


def admin_detail(db: Database, claims: Mapping[str, Any], slug: Any) -> tuple[repo.Team, list[repo.Member]]:
    with admin_tx(db, claims) as conn:
        team = _team(conn, slug)
        rows = repo.members(conn, team.id)
        with admin_repo.service_role(conn):
            mail = repo.emails(conn, [m.user_id for m in rows])
    return team, [repo.Member(m.user_id, mail.get(m.user_id), m.role, m.monthly_credit_cap, m.joined_at,
                              m.month_spent or 0) for m in rows]


def admin_grant(db: Database, claims: Mapping[str, Any], slug: Any, payload: Any) -> int:
    """`{"amount": credits, "reason"}`: a site admin grants credits to a team (audited). Returns the balance."""
    body = _body(payload)
    amount, problem = parse_amount(body.get("amount"), MAX_GRANT)
    errors: dict[str, str] = {}
    if problem or not amount:
        errors["amount"] = problem or "More than 0 credits."
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500 or "\x00" in reason:
        errors["reason"] = "At most 500 characters."
    if errors:
        raise ValidationError(errors)
    actor = str(claims["sub"])
    with admin_tx(db, claims) as conn, _mapped():
        team = _team(conn, slug)
        with admin_repo.service_role(conn):
            balance = repo.adjust(conn, team.id, int(amount or 0), str(reason), actor)
        admin_repo.insert_audit(conn, actor, "team.credits.grant", f"team:{team.slug}",
                                {"balance": team.balance}, {"balance": balance, "amount": amount, "reason": reason})
    return balance


def admin_usage(db: Database, claims: Mapping[str, Any], start: date, end: date) -> list[repo.TeamUsage]:
    """Site analytics grouped by team: requests, tokens, credits and errors per team billed (null: personal)."""
    with admin_tx(db, claims) as conn:
        return repo.usage_by_team(conn, start, end)


# -- shapes ---------------------------------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def team_dict(t: repo.Team) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "slug": t.slug, "role": t.role, "balance": format_credits(t.balance),
            "members": t.members, "routing": t.routing, "created_at": _iso(t.created_at)}


def member_dict(m: repo.Member) -> dict[str, Any]:
    return {"user_id": m.user_id, "email": m.email, "role": m.role,
            "monthly_credit_cap": None if m.monthly_credit_cap is None else format_credits(m.monthly_credit_cap),
            "month_spent": None if m.month_spent is None else format_credits(m.month_spent),
            "joined_at": _iso(m.joined_at)}


def invitation_dict(i: repo.Invitation) -> dict[str, Any]:
    now = datetime.now(UTC)
    status = ("used" if i.used_at else "revoked" if i.revoked_at else "expired" if i.expires_at <= now
              else "open")
    return {"id": i.id, "role": i.role, "status": status, "expires_at": _iso(i.expires_at),
            "used_at": _iso(i.used_at), "revoked_at": _iso(i.revoked_at), "created_at": _iso(i.created_at)}


def key_dict(k: repo.TeamKey, catalog: Catalog) -> dict[str, Any]:
    provider = catalog.by_id.get(k.provider_id)
    return {"provider": provider.slug if provider else None, "last4": k.last4, "base_url": k.base_url,
            "enabled": k.enabled, "added_by": k.added_by, "added_by_email": k.added_by_email,
            "created_at": _iso(k.created_at)}


def ledger_dict(p: LedgerPage) -> dict[str, Any]:
    return {"entries": [{"id": e.id, "kind": e.kind, "delta": format_credits(e.delta),
                         "balance_after": format_credits(e.balance_after), "user_id": e.user_id,
                         "request_id": e.request_id, "reason": e.reason,
                         "uncollected": None if e.uncollected is None else format_credits(e.uncollected),
                         "created_at": _iso(e.created_at)} for e in p.entries],
            "next_before": p.next_before}


def usage_dict(u: repo.MemberUsage) -> dict[str, Any]:
    return {"user_id": u.user_id, "email": u.email, "requests": u.requests, "tokens_in": u.tokens_in,
            "tokens_out": u.tokens_out, "credits": format_credits(u.credits)}


def team_usage_dict(u: repo.TeamUsage) -> dict[str, Any]:
    return {"team_id": u.team_id, "slug": u.slug, "name": u.name, "requests": u.requests, "tokens_in": u.tokens_in,
            "tokens_out": u.tokens_out, "credits": format_credits(u.credits), "credits_micro": u.credits,
            "errors": u.errors}

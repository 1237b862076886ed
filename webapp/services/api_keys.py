"""Personal API keys: the key format, its keyed hash, and what a user (or an admin) may do with keys.

A key is `sb_` + a 12-character base62 prefix id + `_` + 43 base62 characters (32 random bytes). Only
HMAC-SHA256(API_KEY_SECRET, key) is stored; the key is shown once, when created. A key authenticates its owner as
`authenticated` under the same RLS (db.as_user / the gateway's context statement), never with admin rights, and
within its restrictions: expiry, a monthly credit cap (at most the owner's own cap), an allow-list of providers or
`provider/model`s checked against the catalog, and a mode (the owner's, member only, or BYOK only). Keys are managed
only with a session or a Supabase token: a key cannot create, widen or revoke keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from webapp.config import Settings
from webapp.db import ApiKeyClaims, Database
from webapp.errors import Forbidden, NotFound, Unauthorized, ValidationError, unknown_field
from webapp.repos import admin as admin_repo
from webapp.repos import api_keys as repo
from webapp.repos import preferences as prefs_repo
from webapp.services.admin import admin_tx
from webapp.services.catalog import Catalog
from webapp.services.credits import MICRO, format_credits

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base62
PREFIX_LEN, SECRET_LEN = 12, 43
KEY_RE = re.compile(r"sb_([0-9A-Za-z]{12})_([0-9A-Za-z]{43})")
MAX_KEYS = 50  # live keys per user
MAX_ALLOW = 100
MAX_NAME = 100
MAX_CAP = Decimal(10) ** 9
MAX_EXPIRY_DAYS = 3660
MODES = ("user", "member", "byok")
FIELDS = ("name", "expires_at", "monthly_credit_cap", "allow", "mode")


# -- the key itself -------------------------------------------------------------------------------------------------

def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        out.append(ALPHABET[rem])
    assert number == 0
    return "".join(reversed(out))


def generate() -> tuple[str, str]:
    """(key, prefix): a new key from 32 random bytes, and its public prefix id."""
    prefix = "".join(secrets.choice(ALPHABET) for _ in range(PREFIX_LEN))
    secret = _base62(int.from_bytes(secrets.token_bytes(32), "big"), SECRET_LEN)
    return f"sb_{prefix}_{secret}", prefix


def looks_like_key(token: str) -> bool:
    return token.startswith("sb_")


def digest(settings: Settings, key: str) -> str:
    return hmac.new(settings.api_key_secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def claims_for(settings: Settings, db: Database, raw: str) -> ApiKeyClaims:
    """Claims for a request sent with this key, resolved by the request's first round trip; a string that is not
    a key's shape is refused without asking the database."""
    match = KEY_RE.fullmatch(raw)
    if match is None:
        raise Unauthorized("The API key is not valid.", code="invalid_api_key")

    def resolve(claims: ApiKeyClaims) -> None:
        with db.as_user(claims):
            pass

    return ApiKeyClaims(digest(settings, raw), match.group(1), resolve)


def is_key(claims: Mapping[str, Any]) -> bool:
    return isinstance(claims, ApiKeyClaims) or bool(claims.get("api_key_id"))


def refuse_key(claims: Mapping[str, Any], what: str = "manage API keys") -> None:
    """Key management (and admin work) needs a session or a Supabase token: a restricted key must not be able to
    mint an unrestricted one."""
    if is_key(claims):
        raise Forbidden(f"An API key cannot {what}; sign in (session or Supabase access token) instead.",
                        code="api_key_forbidden")


# -- validation -----------------------------------------------------------------------------------------------------

def _name(value: Any, errors: dict[str, str], out: dict[str, Any]) -> None:
    if not isinstance(value, str) or not value.strip():
        errors["name"] = "Give the key a name (1 to 100 characters)."
    elif len(value) > MAX_NAME:  # what was sent, as the document's maxLength counts it (surrounding spaces too)
        errors["name"] = "At most 100 characters."
    elif any(not ch.isprintable() for ch in value.strip()):
        errors["name"] = "Printable characters only."
    else:
        out["name"] = value.strip()


def _expiry(value: Any, errors: dict[str, str], out: dict[str, Any], now: datetime) -> None:
    if value in (None, ""):
        out["expires_at"] = None
        return
    when: datetime | None = None
    if isinstance(value, str) and len(value) <= 40:
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            try:
                when = datetime.combine(date.fromisoformat(value.strip()), datetime.min.time())
            except ValueError:
                when = None
    if when is None:
        errors["expires_at"] = "A date or time such as 2027-01-31 or 2027-01-31T12:00:00Z, or empty for never."
        return
    try:  # a time at the very ends of the calendar cannot be moved to UTC
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:
        errors["expires_at"] = "At most 10 years from now."
        return
    if when <= now:
        errors["expires_at"] = "The expiry must be in the future."
    elif when > now + timedelta(days=MAX_EXPIRY_DAYS):
        errors["expires_at"] = "At most 10 years from now."
    else:
        out["expires_at"] = when


def _cap(value: Any, errors: dict[str, str], out: dict[str, Any], owner_cap: int | None) -> None:
    if value in (None, ""):
        out["monthly_credit_cap"] = None
        return
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or len(str(value)) > 40:
        errors["monthly_credit_cap"] = "A number of credits, or empty for no cap."
        return
    try:
        credits = Decimal(str(value).strip())
    except InvalidOperation:
        errors["monthly_credit_cap"] = "A number of credits, or empty for no cap."
        return
    if not credits.is_finite() or credits < 0 or credits > MAX_CAP:
        errors["monthly_credit_cap"] = "Between 0 and 1,000,000,000 credits."
        return
    micro = int(credits * MICRO)
    if owner_cap is not None and micro > owner_cap:
        errors["monthly_credit_cap"] = (f"At most your own monthly cap, {format_credits(owner_cap)} credits.")
        return
    out["monthly_credit_cap"] = micro


def split_allow(text: str) -> list[str]:
    """The settings page's allow-list field: one entry a line, or comma-separated."""
    return [v for v in re.split(r"[\s,]+", text) if v]


def _allow(value: Any, errors: dict[str, str], out: dict[str, Any], catalog: Catalog) -> None:
    if value is None:
        out["allow"] = []
        return
    if not isinstance(value, list):
        errors["allow"] = "A list of providers or provider/model names."
        return
    if len(value) > MAX_ALLOW:
        errors["allow"] = f"At most {MAX_ALLOW} entries."
        return
    clean: list[str] = []
    for entry in value:
        if not isinstance(entry, str) or not entry.strip() or len(entry) > 300:
            errors["allow"] = "Each entry is a provider (openai) or a provider/model (openai/gpt-4o-mini)."
            return
        slug, sep, model = entry.strip().partition("/")
        if slug not in catalog.providers:
            errors["allow"] = f"Unknown provider {slug[:60]!r}."
            return
        if sep and model not in catalog.models_of(slug):
            errors["allow"] = f"{catalog.providers[slug].name} offers no model {model[:100]!r}."
            return
        if entry.strip() not in clean:
            clean.append(entry.strip())
    out["allow"] = clean


def validate(payload: Any, catalog: Catalog, owner_cap: int | None, *, partial: bool) -> dict[str, Any]:
    """The stored values of a create (`partial=False`: a name is required) or a change, or ValidationError with
    a message per field."""
    if not isinstance(payload, dict):
        raise ValidationError({"body": "Send a JSON object."})
    errors: dict[str, str] = {}
    if unknown := unknown_field(payload, FIELDS):
        errors["body"] = unknown
    out: dict[str, Any] = {}
    if "name" in payload or not partial:
        _name(payload.get("name"), errors, out)
    if "expires_at" in payload:
        _expiry(payload["expires_at"], errors, out, datetime.now(UTC))
    if "monthly_credit_cap" in payload:
        _cap(payload["monthly_credit_cap"], errors, out, owner_cap)
    if "allow" in payload:
        _allow(payload["allow"], errors, out, catalog)
    if "mode" in payload:
        if payload["mode"] not in MODES:
            errors["mode"] = "user (your mode), member or byok."
        else:
            out["mode"] = payload["mode"]
    if errors:
        raise ValidationError(errors)
    return out


def _key_id(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFound("No such API key.", code="api_key_not_found") from None


# -- the owner's routes ---------------------------------------------------------------------------------------------

def listing(db: Database, claims: Mapping[str, Any]) -> list[repo.ApiKey]:
    refuse_key(claims)
    with db.as_user(claims) as conn:
        return repo.list_for_user(conn, str(claims["sub"]))


def create(db: Database, settings: Settings, catalog: Catalog, claims: Mapping[str, Any],
           payload: Any) -> tuple[repo.ApiKey, str]:
    """A new key and its secret (shown once). The owner's own monthly cap bounds the key's."""
    refuse_key(claims)
    user_id = str(claims["sub"])
    with db.as_user(claims) as conn:
        owner_cap = prefs_repo.get(conn, user_id).monthly_credit_cap
        values = validate(payload, catalog, owner_cap, partial=False)
        if repo.count_active(conn, user_id) >= MAX_KEYS:
            raise ValidationError({"name": f"At most {MAX_KEYS} keys; revoke one first."})
        key, prefix = generate()
        with admin_repo.service_role(conn):
            key_id = repo.insert(conn, user_id, prefix, digest(settings, key), values)
        created = repo.get(conn, key_id, user_id)
    assert created is not None
    return created, key


def update(db: Database, catalog: Catalog, claims: Mapping[str, Any], key_id: Any, payload: Any) -> repo.ApiKey:
    refuse_key(claims)
    kid, user_id = _key_id(key_id), str(claims["sub"])
    with db.as_user(claims) as conn:
        if repo.get(conn, kid, user_id) is None:
            raise NotFound("No such API key.", code="api_key_not_found")
        values = validate(payload, catalog, prefs_repo.get(conn, user_id).monthly_credit_cap, partial=True)
        with admin_repo.service_role(conn):
            changed = repo.update(conn, kid, user_id, values)
        key = repo.get(conn, kid, user_id)
    if not changed or key is None:
        raise NotFound("No such API key (a revoked key cannot be changed).", code="api_key_not_found")
    return key


def revoke(db: Database, claims: Mapping[str, Any], key_id: Any) -> repo.ApiKey:
    """Revoke one of the user's keys: refused from the next request on, in every worker."""
    refuse_key(claims)
    kid, user_id = _key_id(key_id), str(claims["sub"])
    with db.as_user(claims) as conn:
        with admin_repo.service_role(conn):
            found = repo.revoke(conn, kid, user_id)
        key = repo.get(conn, kid, user_id) if found else None
    if key is None:
        raise NotFound("No such API key.", code="api_key_not_found")
    return key


# -- admins ---------------------------------------------------------------------------------------------------------

def admin_listing(db: Database, claims: Mapping[str, Any], user_id: Any) -> list[repo.ApiKey]:
    uid = _key_id(user_id) if user_id else ""
    with admin_tx(db, claims) as conn:
        return repo.list_for_user(conn, uid, include_revoked=True)


def admin_revoke(db: Database, claims: Mapping[str, Any], key_id: Any, owner: str | None = None) -> repo.ApiKey:
    """Revoke any user's key (of `owner` when given), audited in the same transaction."""
    kid = _key_id(key_id)
    with admin_tx(db, claims) as conn:
        before = repo.get(conn, kid)
        if before is None or (owner is not None and before.user_id != owner):
            raise NotFound("No such API key.", code="api_key_not_found")
        with admin_repo.service_role(conn):
            repo.revoke(conn, kid)
        after = repo.get(conn, kid)
        assert after is not None
        if before.revoked_at is None:
            admin_repo.insert_audit(conn, str(claims["sub"]), "api_key.revoke", f"api_key:{kid}",
                                    {"user_id": before.user_id, "name": before.name, "prefix": before.prefix,
                                     "revoked_at": None},
                                    {"revoked_at": after.revoked_at.isoformat() if after.revoked_at else None})
    return after


# -- JSON -----------------------------------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status(k: repo.ApiKey, now: datetime | None = None) -> str:
    if k.revoked_at is not None:
        return "revoked"
    if k.expires_at is not None and k.expires_at <= (now or datetime.now(UTC)):
        return "expired"
    return "active"


def key_dict(k: repo.ApiKey) -> dict[str, Any]:
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "hint": f"sb_{k.prefix}_…", "mode": k.mode,
            "allow": list(k.allow), "status": status(k),
            "monthly_credit_cap": format_credits(k.monthly_credit_cap) if k.monthly_credit_cap is not None else None,
            "expires_at": _iso(k.expires_at), "revoked_at": _iso(k.revoked_at), "last_used_at": _iso(k.last_used_at),
            "created_at": k.created_at.isoformat(),
            "month": {"requests": int(k.requests_month), "credits": format_credits(int(k.credits_month)),
                      "credits_micro": int(k.credits_month)}}

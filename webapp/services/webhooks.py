"""Webhook endpoints: who may register them (a user for their own events, a team's owners and admins for the team's,
site admins for site-wide ones), what a valid endpoint is, its signing secret (shown once), a test event, and the
delivery log. The worker's side (fan-out, attempts, retries) is webapp.notify.webhooks.

Endpoint URLs follow the same address rules as BYOK base URLs (webapp.providers.transport.check_base_url when saved,
the guarded transport when sent): no private, loopback, link-local or metadata address, the connected address
checked; https only in production. WEBHOOK_ALLOW_PRIVATE_URLS lifts the address rule for a local receiver."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg

from webapp.config import Settings
from webapp.crypto import KeyRing
from webapp.db import Database
from webapp.errors import Conflict, Forbidden, NotFound, ValidationError, unknown_field
from webapp.notify import webhook_delivery as wire
from webapp.notify import webhooks as notify
from webapp.notify.events import EVENT_TYPES
from webapp.providers.transport import check_base_url
from webapp.repos import admin as admin_repo
from webapp.repos import teams as teams_repo
from webapp.repos import webhooks as repo
from webapp.services.admin import admin_tx
from webapp.services.api_keys import refuse_key
from webapp.services.teams import SLUG_RE

SCOPES = ("user", "team", "site")
FIELDS = ("url", "description", "event_types", "enabled")
MAX_ENDPOINTS = 10  # per user, per team, and for the site
MAX_URL = 2000
MAX_DESCRIPTION = 200
LOG_LIMIT = 50
ROTATION_GRACE_SECONDS = 86400  # the old secret signs beside the new one for a day
MAX_PENDING_TESTS = 3  # test events waiting per endpoint: the button cannot flood someone else's server


@dataclass(frozen=True)
class Scope:
    """Which endpoints a request is about: the caller's own, a team's (by slug) or the site's."""

    kind: str  # "user", "team", "site"
    team_slug: str | None = None


# -- who manages ------------------------------------------------------------------------------------------------------

@contextmanager
def managing(db: Database, claims: Mapping[str, Any], scope: Scope) -> Iterator[tuple[psycopg.Connection, repo.Owner]]:
    """A transaction as the caller and the owner they manage in it: refused for an API key, for a team member who
    is not its owner or an admin (403) or an outsider (404), and for a non-admin asking for the site's."""
    refuse_key(claims, "manage webhooks")
    if scope.kind == "site":
        with admin_tx(db, claims) as conn:
            yield conn, repo.Owner("site")
        return
    with db.as_user(claims) as conn:
        if scope.kind == "team":
            slug = scope.team_slug or ""
            team = teams_repo.by_slug(conn, slug) if SLUG_RE.fullmatch(slug) else None  # never a NUL to Postgres
            if team is None or team.role is None:
                raise NotFound("No such team that you belong to.", code="team_not_found")
            if team.role not in ("owner", "admin"):
                raise Forbidden("Only the team's owner and admins manage its webhooks.", code="team_forbidden")
            yield conn, repo.Owner("team", team_id=team.id)
        else:
            yield conn, repo.Owner("user", user_id=str(claims["sub"]))


def _endpoint_id(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFound("No such webhook endpoint.", code="webhook_not_found") from None


def _endpoint(conn: psycopg.Connection, owner: repo.Owner, endpoint_id: Any) -> repo.Endpoint:
    found = repo.get_endpoint(conn, owner, _endpoint_id(endpoint_id))
    if found is None:
        raise NotFound("No such webhook endpoint.", code="webhook_not_found")
    return found


# -- validation -------------------------------------------------------------------------------------------------------

def check_url(url: str, settings: Settings) -> None:
    """Raise ValueError (a message fit for the user) unless `url` may receive webhooks."""
    parts = urlsplit(url)
    if settings.env == "production" and parts.scheme != "https":
        raise ValueError("The URL must start with https://.")
    if parts.scheme not in ("http", "https"):
        raise ValueError("The URL must start with https:// (or http:// outside production).")
    if parts.username is not None or parts.password is not None:
        raise ValueError("The URL must not contain a user name or password.")
    if parts.fragment:
        raise ValueError("The URL must not contain a #fragment.")
    if settings.webhook_allow_private_urls:
        if not parts.hostname:
            raise ValueError("The URL has no host name.")
        return
    try:
        check_base_url(url)
    except ValueError as exc:
        raise ValueError(str(exc).replace("base URL", "URL")) from None


def _url(value: Any, settings: Settings, errors: dict[str, str], out: dict[str, Any]) -> None:
    if not isinstance(value, str) or not value.strip():
        errors["url"] = "The address that receives the webhooks, such as https://example.com/hooks."
        return
    url = value.strip()
    if len(value) > MAX_URL:  # what was sent, as the document's maxLength counts it
        errors["url"] = f"At most {MAX_URL} characters."
        return
    if any(not ch.isprintable() or ch.isspace() for ch in url):
        errors["url"] = "No spaces or control characters."
        return
    try:
        check_url(url, settings)
    except ValueError as exc:
        errors["url"] = str(exc)
        return
    out["url"] = url


def _description(value: Any, errors: dict[str, str], out: dict[str, Any]) -> None:
    if value is None:
        out["description"] = ""
    elif not isinstance(value, str):
        errors["description"] = "Text, at most 200 characters."
    elif len(value) > MAX_DESCRIPTION:  # what was sent, as the document's maxLength counts it
        errors["description"] = f"At most {MAX_DESCRIPTION} characters."
    elif any(not ch.isprintable() for ch in value.strip()):
        errors["description"] = "Printable characters only."
    else:
        out["description"] = value.strip()


def _event_types(value: Any, errors: dict[str, str], out: dict[str, Any]) -> None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        errors["event_types"] = "Choose at least one event."
        return
    if len(value) > len(EVENT_TYPES):
        errors["event_types"] = f"At most {len(EVENT_TYPES)} events."
        return
    chosen: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in EVENT_TYPES:
            shown = item[:60] if isinstance(item, str) else type(item).__name__
            errors["event_types"] = f"Unknown event {shown!r}; events: {', '.join(EVENT_TYPES)}."
            return
        if item not in chosen:
            chosen.append(item)
    out["event_types"] = chosen


def validate(payload: Any, settings: Settings, *, partial: bool) -> dict[str, Any]:
    """The stored values of a create (url and event_types required) or a change, or ValidationError per field."""
    if not isinstance(payload, dict):
        raise ValidationError({"body": "Send a JSON object."})
    errors: dict[str, str] = {}
    if unknown := unknown_field(payload, FIELDS):
        errors["body"] = unknown
    out: dict[str, Any] = {}
    if "url" in payload or not partial:
        _url(payload.get("url"), settings, errors, out)
    if "description" in payload:
        _description(payload["description"], errors, out)
    if "event_types" in payload or not partial:
        _event_types(payload.get("event_types"), errors, out)
    if "enabled" in payload:
        if not isinstance(payload["enabled"], bool):
            errors["enabled"] = "true or false."
        else:
            out["enabled"] = payload["enabled"]
    if errors:
        raise ValidationError(errors)
    return out


def _seal(keyring: KeyRing, endpoint_id: str) -> tuple[str, str, str]:
    """A new secret and its (ciphertext, key id), bound to the endpoint."""
    secret = wire.new_secret()
    ciphertext, key_id = keyring.encrypt(secret, notify.secret_aad(endpoint_id))
    return secret, ciphertext, key_id


# -- endpoints --------------------------------------------------------------------------------------------------------

def listing(db: Database, claims: Mapping[str, Any], scope: Scope) -> list[repo.Endpoint]:
    with managing(db, claims, scope) as (conn, owner):
        return repo.list_endpoints(conn, owner)


def create(db: Database, settings: Settings, keyring: KeyRing, claims: Mapping[str, Any], scope: Scope,
           payload: Any) -> tuple[repo.Endpoint, str]:
    """A new endpoint and its signing secret (shown this once; stored encrypted, since signing needs it)."""
    values = validate(payload, settings, partial=False)
    with managing(db, claims, scope) as (conn, owner):
        if repo.count_endpoints(conn, owner) >= MAX_ENDPOINTS:
            raise ValidationError({"url": f"At most {MAX_ENDPOINTS} endpoints; delete one first."})
        endpoint_id = str(uuid.uuid4())
        secret, ciphertext, key_id = _seal(keyring, endpoint_id)
        repo.insert_endpoint(conn, endpoint_id, owner, str(claims["sub"]), values, ciphertext, key_id)
        return _endpoint(conn, owner, endpoint_id), secret


def get(db: Database, claims: Mapping[str, Any], scope: Scope, endpoint_id: Any) -> repo.Endpoint:
    with managing(db, claims, scope) as (conn, owner):
        return _endpoint(conn, owner, endpoint_id)


def update(db: Database, settings: Settings, claims: Mapping[str, Any], scope: Scope, endpoint_id: Any,
           payload: Any) -> repo.Endpoint:
    """Change the URL, description, events, or enable/disable (enabling clears the failure state)."""
    with managing(db, claims, scope) as (conn, owner):
        found = _endpoint(conn, owner, endpoint_id)
        values = validate(payload, settings, partial=True)
        if values:
            repo.update_endpoint(conn, found.id, values)
        return _endpoint(conn, owner, found.id)


def delete(db: Database, claims: Mapping[str, Any], scope: Scope, endpoint_id: Any) -> None:
    with managing(db, claims, scope) as (conn, owner):
        repo.delete_endpoint(conn, _endpoint(conn, owner, endpoint_id).id)


def rotate(db: Database, keyring: KeyRing, claims: Mapping[str, Any], scope: Scope,
           endpoint_id: Any) -> tuple[repo.Endpoint, str]:
    """A new signing secret (shown once); for a day the old one signs too (a second `v1,` signature), so the
    receiver can switch without missing a delivery."""
    with managing(db, claims, scope) as (conn, owner):
        found = _endpoint(conn, owner, endpoint_id)
        secret, ciphertext, key_id = _seal(keyring, found.id)
        # The old ciphertext moves to the grace column in SQL: a column `authenticated` may not read, so the
        # update of this endpoint (found above under the caller's RLS) runs as the system.
        with admin_repo.service_role(conn):
            repo.set_secret(conn, found.id, ciphertext, key_id, ROTATION_GRACE_SECONDS)
        return _endpoint(conn, owner, found.id), secret


def send_test(db: Database, claims: Mapping[str, Any], scope: Scope, endpoint_id: Any) -> repo.Delivery:
    """Queue a signed `webhook.test` event to the endpoint; the worker sends it like any other."""
    with managing(db, claims, scope) as (conn, owner):
        found = _endpoint(conn, owner, endpoint_id)
        if not found.enabled:
            raise Conflict("This endpoint is disabled; enable it before sending a test event.",
                           code="webhook_disabled")
        if repo.pending_tests(conn, found.id) >= MAX_PENDING_TESTS:
            raise Conflict(f"{MAX_PENDING_TESTS} test events are already waiting to be sent to this endpoint; "
                           "wait for them first.", code="webhook_tests_pending")
        with admin_repo.service_role(conn):  # deliveries and the job queue are written by the system
            delivery_id = notify.queue_test(conn, found.id)
        delivery = repo.get_delivery(conn, delivery_id)
    assert delivery is not None
    return delivery


def deliveries(db: Database, claims: Mapping[str, Any], scope: Scope, endpoint_id: Any,
               limit: int = LOG_LIMIT) -> list[repo.Delivery]:
    with managing(db, claims, scope) as (conn, owner):
        return repo.list_deliveries(conn, _endpoint(conn, owner, endpoint_id).id, limit)


@dataclass(frozen=True)
class EndpointView:
    endpoint: repo.Endpoint
    attempts: list[repo.Attempt]
    pending: bool


def overview(db: Database, claims: Mapping[str, Any], scope: Scope) -> list[EndpointView]:
    """Every endpoint of the scope with its last attempts, for the page."""
    with managing(db, claims, scope) as (conn, owner):
        out = []
        for e in repo.list_endpoints(conn, owner):
            recent = repo.list_deliveries(conn, e.id, 10)
            out.append(EndpointView(e, repo.list_attempts(conn, e.id, 10),
                                    any(d.status == "pending" for d in recent)))
        return out


def parse_limit(raw: Any) -> int:
    if raw is None:
        return LOG_LIMIT
    try:
        value = int(str(raw))
    except ValueError:
        raise ValidationError({"limit": "A whole number from 1 to 100."}) from None
    if not 1 <= value <= 100:
        raise ValidationError({"limit": "A whole number from 1 to 100."})
    return value


# -- JSON -------------------------------------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status(e: repo.Endpoint) -> str:
    if not e.enabled:
        return "disabled"
    return "failing" if e.failing_since else "active"


def endpoint_dict(e: repo.Endpoint) -> dict[str, Any]:
    return {"id": e.id, "scope": e.scope, "url": e.url, "description": e.description,
            "event_types": list(e.event_types), "enabled": e.enabled, "status": status(e),
            "failing_since": _iso(e.failing_since), "disabled_at": _iso(e.disabled_at),
            "disabled_reason": e.disabled_reason, "created_at": e.created_at.isoformat(),
            "updated_at": e.updated_at.isoformat()}


def delivery_dict(d: repo.Delivery) -> dict[str, Any]:
    return {"id": d.id, "webhook_id": wire.message_id(d.id), "event_id": d.event_id, "event_type": d.event_type,
            "test": d.test, "status": d.status, "attempts": d.attempts,
            "next_attempt_at": _iso(d.next_attempt_at) if d.status == "pending" else None,
            "last_attempt_at": _iso(d.last_attempt_at), "last_status": d.last_status,
            "last_response_excerpt": d.last_excerpt, "last_error": d.last_error,
            "created_at": d.created_at.isoformat()}

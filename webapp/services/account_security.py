"""Account security for the local auth backend: changing a password, one-time reset links, and the "must change
password" flag (set on the first admin's printed one-time password).

Changing a password ends every other session of the user (auth.sessions rows; their access tokens are refused on
the next request by public.principal_status and their refresh tokens go by foreign key cascade), in the same
transaction that stores the new hash. Wrong current passwords are counted with the sign-in throttle's table, per
user, so the settings page cannot be used to guess a password faster than the sign-in page.

A reset link carries a random token (256 bits); only its HMAC (key derived from SECRET_KEY) is stored. A link is
good for an hour, once, and only while it is the user's newest; using it ends every session of the user. Failed
uses are throttled per link and per client address, and every failure reads the same: INVALID_LINK."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from webapp import passwords
from webapp.auth.backends import password_problem
from webapp.config import Settings
from webapp.db import Database, principal_refused
from webapp.errors import AppError, Conflict, NotFound, RateLimited, ValidationError
from webapp.repos import admin as admin_repo
from webapp.repos import password_resets, sign_in_attempts
from webapp.repos import users as users_repo
from webapp.services.admin import admin_tx

CHANGE_LIMIT = 5  # wrong current passwords per user per window, as sign-in allows per account
CHANGE_WINDOW = 15 * 60
WRONG_CURRENT = "This is not your current password."
SAME_PASSWORD = "Choose a password different from the current one."  # noqa: S105 (a message)


def _change_key(user_id: str) -> str:
    return "password-change:" + user_id


def _uuid_or_none(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(str(value))) if value else None
    except ValueError:
        return None


def check_change_throttle(db: Database, user_id: str) -> None:
    """RateLimited while the user has had too many wrong current passwords in the window."""
    with db.as_service() as conn:
        wait = sign_in_attempts.wait_seconds(conn, [_change_key(user_id)], [CHANGE_LIMIT], CHANGE_WINDOW)
    if wait > 0:
        raise RateLimited("Too many wrong passwords. Wait a while and try again.", code="password_change_throttled",
                          headers={"Retry-After": str(wait)})


def record_wrong_current(db: Database, user_id: str) -> None:
    with db.as_service() as conn:
        sign_in_attempts.record_failure(conn, [_change_key(user_id)], CHANGE_WINDOW)


def change_password_local(db: Database, user_id: str, keep_session_id: str | None, current_password: str,
                          new_password: str) -> None:
    """Replace the user's password after checking the current one, clear the must-change flag and end every
    session of the user except `keep_session_id` — one transaction. ValidationError with `current_password`
    and/or `password` beside the fields; RateLimited after too many wrong current passwords; Unauthorized when
    the user no longer exists."""
    current_password = current_password or ""
    new_password = new_password or ""
    check_change_throttle(db, user_id)
    errors: dict[str, str] = {}
    problem = password_problem(new_password)
    if problem:
        errors["password"] = problem
    elif new_password == current_password:
        errors["password"] = SAME_PASSWORD
    new_hash = None if problem else passwords.hash_password(new_password)
    wrong = False
    with db.as_service() as conn:
        if users_repo.by_id(conn, user_id) is None:
            raise principal_refused("user_not_found")
        if not current_password:
            errors = {"current_password": "Enter your current password.", **errors}
        elif len(current_password) > 4096 or not users_repo.password_matches(conn, user_id, current_password):
            wrong = True
        elif not errors and new_hash is not None:
            users_repo.set_password_hash(conn, user_id, new_hash)
            users_repo.clear_password_change(conn, user_id)
            users_repo.end_sessions_except(conn, user_id, _uuid_or_none(keep_session_id))
    if wrong:
        record_wrong_current(db, user_id)
        errors = {"current_password": WRONG_CURRENT, **errors}
    if errors:
        raise ValidationError(errors)


def must_change_password(db: Database, user_id: str) -> bool:
    """Whether the user still has to replace a one-time password (one statement, one round trip)."""
    with db.service_statement() as conn:
        row = conn.execute("select exists (select 1 from public.password_change_required where user_id = %s)",
                           [user_id]).fetchone()
    return bool(row and row[0])


# -- one-time reset links (local backend) ---------------------------------------------------------------------------

RESET_TTL = 3600  # a link is good for one hour
INVALID_LINK = "This link is invalid or expired."
RESET_ADDRESS_LIMIT = 20  # failed reset attempts per client address per window
RESET_TOKEN_LIMIT = 10  # failed attempts per link per window
RESET_WINDOW = 15 * 60
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class InvalidResetLink(AppError):
    """The only thing a reset page says about a link that does not work, whatever the reason."""

    status = 400
    code = "reset_link_invalid"

    def __init__(self) -> None:
        super().__init__(INVALID_LINK)


@dataclass(frozen=True)
class ResetLink:
    token: str  # shown once, in the link; never stored
    user_id: str
    email: str
    expires_at: datetime


def _reset_key(settings: Settings) -> bytes:
    """The HMAC key for reset tokens, derived from SECRET_KEY for this one purpose."""
    return hmac.new(settings.secret_key.encode(), b"switchboard password reset link v1", hashlib.sha256).digest()


def reset_token_hash(settings: Settings, token: str) -> bytes:
    return hmac.new(_reset_key(settings), token.encode(), hashlib.sha256).digest()


def _well_formed(token: Any) -> bool:
    return isinstance(token, str) and 32 <= len(token) <= 64 and set(token) <= _TOKEN_CHARS


def issue_reset_link(conn: psycopg.Connection, settings: Settings, user: users_repo.AuthUser, actor_id: str | None,
                     via: str) -> ResetLink:
    """A new link for `user` inside the caller's transaction, ending their older links; audited."""
    token = secrets.token_urlsafe(32)
    link_id, created = password_resets.replace(conn, user.id, reset_token_hash(settings, token), actor_id)
    expires = created + timedelta(seconds=RESET_TTL)
    admin_repo.insert_audit(conn, actor_id, "user.password_reset_link", f"user:{user.email}", None,
                            {"link": link_id, "via": via, "expires_at": expires.isoformat()})
    return ResetLink(token, user.id, user.email, expires)


def _reset_keys(settings: Settings, token: str, address: str | None) -> list[str]:
    keys = ["reset-link:" + reset_token_hash(settings, token if isinstance(token, str) else "").hex()[:32]]
    if address:
        keys.append("reset-address:" + address)
    return keys


def _check_reset_throttle(db: Database, keys: list[str]) -> None:
    limits = [RESET_TOKEN_LIMIT, RESET_ADDRESS_LIMIT][: len(keys)]
    with db.as_service() as conn:
        wait = sign_in_attempts.wait_seconds(conn, keys, limits, RESET_WINDOW)
    if wait > 0:
        raise RateLimited("Too many attempts. Wait a while and try again.", code="reset_throttled",
                          headers={"Retry-After": str(wait)})


def _reset_failed(db: Database, keys: list[str]) -> None:
    with db.as_service() as conn:
        sign_in_attempts.record_failure(conn, keys, RESET_WINDOW)


def reset_link_email(db: Database, settings: Settings, token: Any, address: str | None) -> str:
    """The email of the live link's account (for the page's heading), or InvalidResetLink; throttled."""
    keys = _reset_keys(settings, token, address)
    _check_reset_throttle(db, keys)
    link = None
    if _well_formed(token):
        with db.as_service() as conn:
            link = password_resets.find_live(conn, reset_token_hash(settings, token), RESET_TTL)
    if link is None:
        _reset_failed(db, keys)
        raise InvalidResetLink()
    return link.email


def reset_password(db: Database, settings: Settings, token: Any, new_password: str, address: str | None) -> str:
    """Use a live link: set the new password, clear the must-change flag, end every session of the user, mark the
    link used and audit it, in one transaction. Returns the account's email. A weak password leaves the link
    unused (ValidationError); a link that does not work is InvalidResetLink, whatever the reason; throttled per
    link and per client address."""
    keys = _reset_keys(settings, token, address)
    _check_reset_throttle(db, keys)
    problem = password_problem(new_password or "")
    if problem:
        _reset_failed(db, keys[:1])  # counts against the link only: a person choosing a password is no attack
        raise ValidationError({"password": problem})
    link = None
    if _well_formed(token):
        new_hash = passwords.hash_password(new_password)
        with db.as_service() as conn:
            link = password_resets.use(conn, reset_token_hash(settings, token), RESET_TTL)
            if link is not None:
                users_repo.set_password_hash(conn, link.user_id, new_hash)
                users_repo.clear_password_change(conn, link.user_id)
                ended = users_repo.end_sessions_except(conn, link.user_id, None)
                admin_repo.insert_audit(conn, link.user_id, "user.password_reset", f"user:{link.email}", None,
                                        {"link": link.id, "sessions_ended": ended})
    if link is None:
        _reset_failed(db, keys)
        raise InvalidResetLink()
    return link.email


def create_reset_link_by_admin(db: Database, settings: Settings, claims: Mapping[str, Any], user_id: str
                               ) -> ResetLink:
    """An admin makes a link for a user (the database confirms the admin first); audited with the admin as actor.
    Local backend only: with Supabase, the user asks for GoTrue's recovery email on the forgot-password page."""
    if settings.auth_backend != "local":
        raise Conflict("Reset links are for the local sign-in backend. With Supabase, the user asks for a "
                       "recovery email on the “Forgot password?” page.", code="reset_links_local_only")
    uid = _uuid_or_none(user_id)
    with admin_tx(db, claims) as conn, admin_repo.service_role(conn):
        user = users_repo.by_id(conn, uid) if uid else None
        if user is None:
            raise NotFound("No such user.", code="user_not_found")
        return issue_reset_link(conn, settings, user, str(claims["sub"]), "admin")


def create_reset_link_by_operator(db: Database, settings: Settings, email: str) -> ResetLink | None:
    """`flask users reset-password EMAIL`: a link for the user, audited with no actor (the operator's shell).
    None when no live user has this email."""
    with db.as_service() as conn:
        user = users_repo.by_email(conn, email.strip())
        return issue_reset_link(conn, settings, user, None, "cli") if user else None

"""Account security for the local auth backend: changing a password, and the "must change password" flag.

Changing a password ends every other session of the user (auth.sessions rows; their access tokens are refused on
the next request by public.principal_status and their refresh tokens go by foreign key cascade), in the same
transaction that stores the new hash. Wrong current passwords are counted with the sign-in throttle's table, per
user, so the settings page cannot be used to guess a password faster than the sign-in page."""

from __future__ import annotations

import uuid

from webapp import passwords
from webapp.auth.backends import password_problem
from webapp.db import Database, principal_refused
from webapp.errors import RateLimited, ValidationError
from webapp.repos import sign_in_attempts
from webapp.repos import users as users_repo

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
    with db.as_service() as conn:
        return users_repo.must_change_password(conn, user_id)

"""GoTrue's wire shapes for the local backend's /auth/v1 (webapp/auth/gotrue_api.py): its two error formats, its
user object, and how it reads request bodies and checks emails and passwords — learnt from supabase/auth
(internal/api/errors.go, apierrors, models/user.go, signup.go, password.go), answered with the app's own rules."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Response, jsonify, request

from webapp.auth import backends
from webapp.repos import users as users_repo

API_VERSION_HEADER = "X-Supabase-Api-Version"
API_VERSION_2024 = "2024-01-01"
MAX_METADATA_BYTES = 4096  # user_metadata rides in every access token: keep the Authorization header small
MAX_EMAIL = 255
INVALID_LOGIN = "Invalid login credentials"
NIL_UUID = "00000000-0000-0000-0000-000000000000"


class GoTrueError(Exception):
    """An error answered in GoTrue's shape: HTTP status, GoTrue error code, message (and extra body fields)."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra or {}


class OAuthError(Exception):
    """GoTrue's OAuth-style error: always 400 {"error", "error_description"}, whatever the API version."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


def bad_request(message: str, code: str = "validation_failed") -> GoTrueError:
    return GoTrueError(400, code, message)


# -- answers -------------------------------------------------------------------------------------------------------

def wants_2024() -> bool:
    """GoTrue's DetermineClosestAPIVersion: a valid date on or after 2024-01-01 selects the 2024 format."""
    raw = request.headers.get(API_VERSION_HEADER, "")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        return False
    try:
        return datetime.strptime(raw, "%Y-%m-%d").date() >= datetime(2024, 1, 1).date()
    except ValueError:
        return False


def error_response(err: GoTrueError) -> Response:
    if wants_2024():
        body: dict[str, Any] = {"code": err.code, "message": err.message}
    else:
        body = {"code": err.status, "error_code": err.code, "msg": err.message}
    body.update(err.extra)
    resp = jsonify(body)
    resp.status_code = err.status
    resp.headers["x-sb-error-code"] = err.code
    if wants_2024():
        resp.headers[API_VERSION_HEADER] = API_VERSION_2024
    for name, value in err.headers.items():
        resp.headers[name] = value
    return resp


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def identity(user_id: str, email: str, confirmed: bool, created: str | None, updated: str | None,
              last_sign_in: str | None) -> dict[str, Any]:
    """The email identity GoTrue keeps in auth.identities (the local schema has no such table): derived from the
    user, with a stable identity id."""
    return {
        "identity_id": str(uuid.uuid5(uuid.NAMESPACE_URL, "switchboard:identity:email:" + user_id)),
        "id": user_id,
        "user_id": user_id,
        "identity_data": {"email": email, "email_verified": confirmed, "phone_verified": False, "sub": user_id},
        "provider": "email",
        "last_sign_in_at": last_sign_in,
        "created_at": created,
        "updated_at": updated,
        "email": email,
    }


def user_json(user: users_repo.UserRecord) -> dict[str, Any]:
    """GoTrue's user object (models.User) for a row of auth.users."""
    confirmed = iso(user.email_confirmed_at)
    created, updated, last = iso(user.created_at), iso(user.updated_at), iso(user.last_sign_in_at)
    body: dict[str, Any] = {
        "id": user.id, "aud": user.aud, "role": user.role, "email": user.email,
        "email_confirmed_at": confirmed, "phone": user.phone, "confirmed_at": confirmed,
        "last_sign_in_at": last, "app_metadata": user.app_metadata, "user_metadata": user.user_metadata,
        "identities": [identity(user.id, user.email, confirmed is not None, created, updated, last)],
        "created_at": created, "updated_at": updated, "is_anonymous": user.is_anonymous,
    }
    return {k: v for k, v in body.items() if v is not None}  # GoTrue omits empty timestamps (omitempty)


def signup_json(user_id: str, email: str, data: dict[str, Any]) -> dict[str, Any]:
    """What sign-up answers, for a new email and a taken one alike: GoTrue's answer when the email must be
    confirmed first (a user, no session), built from the request alone so the two cannot be told apart."""
    now = iso(datetime.now(UTC))
    return {
        "id": user_id, "aud": "authenticated", "role": "authenticated", "email": email, "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]}, "user_metadata": data,
        "identities": [identity(user_id, email, False, now, now, None)],
        "created_at": now, "updated_at": now, "is_anonymous": False,
    }


# -- request reading -----------------------------------------------------------------------------------------------

def read_body() -> dict[str, Any]:
    """The JSON object sent, read with the strict parser whatever the content type (GoTrue reads any body as
    JSON). Not an object, or text Postgres cannot store (lone surrogates): 400 bad_json."""
    data = request.get_data(cache=True)
    if not data or data.isspace():
        return {}
    body = request.get_json(force=True)  # a parse failure raises AppError invalid_json (mapped to bad_json)
    if not isinstance(body, dict):
        raise bad_request("Could not parse request body as JSON: the body must be a JSON object", "bad_json")
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request("Could not parse request body as JSON: invalid Unicode (lone surrogate escape)",
                           "bad_json") from None
    return body


def string_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"Could not parse request body as JSON: {name} must be a string", "bad_json")
    return value


def metadata_field(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"Could not parse request body as JSON: {name} must be an object", "bad_json")
    return value


def check_metadata_size(metadata: dict[str, Any]) -> None:
    if len(json.dumps(metadata, ensure_ascii=False).encode("utf-8")) > MAX_METADATA_BYTES:
        raise GoTrueError(422, "validation_failed",
                          f"User metadata is limited to {MAX_METADATA_BYTES} bytes of JSON.")


def valid_email(raw: str) -> str:
    """GoTrue's validateEmail, with the app's own email rule."""
    email = raw.strip()
    if not email:
        raise bad_request("An email address is required")
    if len(email) > MAX_EMAIL:
        raise bad_request("An email address is too long")
    if not backends.EMAIL_RE.fullmatch(email):
        raise bad_request("Unable to validate email address: invalid format")
    return email.lower()


def check_password_strength(password: str) -> None:
    """GoTrue's checkPasswordStrength answers, with the app's rules (webapp.auth.backends.password_problem)."""
    problem = backends.password_problem(password)
    if problem is None:
        return
    if len(password) > backends.MAX_PASSWORD:
        raise bad_request(f"Password cannot be longer than {backends.MAX_PASSWORD} characters")
    reason = "length" if len(password) < backends.MIN_PASSWORD else "pwned"
    raise GoTrueError(422, "weak_password", problem, extra={"weak_password": {"reasons": [reason]}})

"""The subset of Supabase Auth's (GoTrue's) HTTP API that the official clients use, served by the local backend at
the same paths under /auth/v1, so supabase-js and supabase-py sign up, sign in, refresh and sign out against
`make run` exactly as against a Supabase project.

Same JSON shapes, statuses and error codes as GoTrue (supabase/auth internal/api), both error formats: the legacy
{"code": <status>, "error_code", "msg"} and, when the client sends `X-Supabase-Api-Version: 2024-01-01` (both
official clients do), {"code": "<error_code>", "message"}. Access tokens are the app's own (mint_access_token with
the session id), so the verifier, the per-request principal check and sign-out work on them unchanged. Refresh
tokens rotate with GoTrue's reuse detection (webapp/repos/refresh_tokens.py). Registered only with
AUTH_BACKEND=local: with a Supabase project these paths belong to Supabase."""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from typing import Any

import psycopg
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from webapp import passwords
from webapp.auth import backends
from webapp.auth.gotrue_shapes import (
    INVALID_LOGIN,
    NIL_UUID,
    GoTrueError,
    OAuthError,
    bad_request,
    check_metadata_size,
    check_password_strength,
    error_response,
    metadata_field,
    read_body,
    signup_json,
    string_field,
    user_json,
    valid_email,
)
from webapp.auth.throttle import RequestLimit, SignInThrottle, request_limit
from webapp.auth.tokens import mint_access_token
from webapp.db import principal_ids
from webapp.errors import AppError, RateLimited, Unauthorized, ValidationError
from webapp.repos import refresh_tokens
from webapp.repos import users as users_repo

log = logging.getLogger("switchboard.gotrue")

bp = Blueprint("gotrue", __name__, url_prefix="/auth/v1")


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _session_json(user: users_repo.UserRecord, session_id: str, refresh_token: str) -> dict[str, Any]:
    """GoTrue's AccessTokenResponse: an access token for the session and the refresh token just issued."""
    settings = _svc().settings
    now = int(time.time())
    token = mint_access_token(settings, user_id=user.id, email=user.email, app_metadata=user.app_metadata,
                              user_metadata=user.user_metadata, session_id=session_id, now=now)
    return {"access_token": token, "token_type": "bearer", "expires_in": settings.access_token_ttl,
            "expires_at": now + settings.access_token_ttl, "refresh_token": refresh_token, "user": user_json(user)}


def _limit(kind: str) -> RequestLimit:
    """The request limit per client address of sign-ups or token refreshes (settings AUTH_*_RATE_*)."""
    return request_limit(_svc().settings, kind)


def _client_address() -> str | None:
    return request.remote_addr  # ProxyFix has put the client's address here when behind known proxies


def _user_agent() -> str | None:
    agent = "".join(ch for ch in request.headers.get("User-Agent", "") if ch.isprintable())[:300]
    return agent or None


_REFUSED = {
    "user_not_found": (403, "user_not_found", "User from sub claim in JWT does not exist"),
    "user_banned": (403, "user_banned", "User is banned"),
    "session_revoked": (403, "session_not_found", "Session from session_id claim in JWT does not exist"),
}


def _caller() -> tuple[str, str | None]:
    """(user id, session id) of the bearer token, checked as GoTrue's requireAuthentication does: the app's token
    verifier, then the principal check every request makes (user live, not banned, session not ended)."""
    match = re.fullmatch(r"[Bb]earer (\S+)", request.headers.get("Authorization", ""))
    if match is None:
        raise GoTrueError(401, "no_authorization", "This endpoint requires a valid Bearer token")
    try:
        claims = _svc().verifier.verify(match.group(1))
    except Unauthorized as exc:
        raise GoTrueError(403, "bad_jwt", f"invalid JWT: unable to parse or verify signature, {exc.message}") \
            from None
    user_id, session_id = principal_ids(claims)
    with _svc().db.as_service() as conn:
        row = conn.execute("select public.principal_status(%s::uuid, %s::uuid)", [user_id, session_id]).fetchone()
    status = row[0] if row else None
    if not isinstance(status, dict) or not status.get("ok"):
        reason = status.get("reason") if isinstance(status, dict) else None
        raise GoTrueError(*_REFUSED.get(str(reason), _REFUSED["user_not_found"]))
    return user_id, session_id


# -- the gateway in front (Supabase's API gateway checks the apikey before GoTrue sees the request) --------------

@bp.before_request
def _check_apikey() -> Response | None:
    expected = _svc().settings.supabase_anon_key
    if request.method == "OPTIONS" or not expected or request.endpoint == "gotrue.jwks":
        return None
    sent = request.headers.get("apikey") or request.args.get("apikey") or ""
    if not sent:
        resp = jsonify({"message": "No API key found in request",
                        "hint": "No `apikey` request header or url param was found."})
    elif not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8")):
        resp = jsonify({"message": "Invalid API key",
                        "hint": "Double check your Supabase `anon` or `service_role` API key."})
    else:
        return None
    resp.status_code = 401
    return resp


@bp.after_request
def _headers(resp: Response) -> Response:
    resp.vary.add("Origin")  # CORS answers differ by origin
    resp.headers.setdefault("Cache-Control", "no-store")  # tokens and user data: never in a shared cache
    return resp


# -- routes --------------------------------------------------------------------------------------------------------

_PROVIDERS = ("anonymous_users", "apple", "azure", "bitbucket", "discord", "facebook", "snapchat", "figma", "fly",
              "github", "gitlab", "google", "keycloak", "kakao", "linkedin", "linkedin_oidc", "notion", "spotify",
              "slack", "slack_oidc", "workos", "twitch", "twitter", "email", "phone", "zoom")


@bp.get("/settings")
def settings() -> Any:
    """What the server offers: email and password only; sign-up does not sign in (mailer_autoconfirm false)."""
    return jsonify({
        "external": {name: name == "email" for name in _PROVIDERS},
        "disable_signup": False, "mailer_autoconfirm": False, "phone_autoconfirm": False, "sms_provider": "",
        "saml_enabled": False, "saml_private_key_next_configured": False, "passkeys_enabled": False,
    })


@bp.get("/.well-known/jwks.json")
def jwks() -> Any:
    """Local tokens are HS256 (a shared secret): no public key to publish, as GoTrue answers without one."""
    return jsonify({"keys": []})


@bp.post("/signup")
def signup() -> Any:
    """Create the account if the email is free. Never signs in and never tells whether the email was taken: the
    same answer (a user, no session) and the same work (one password hash, one insert attempt) either way."""
    body = read_body()
    email_raw, phone = string_field(body, "email"), string_field(body, "phone")
    password = string_field(body, "password")
    data = metadata_field(body, "data") or {}
    if not password:
        raise bad_request("Signup requires a valid password")
    check_password_strength(password)
    if email_raw and phone:
        raise bad_request("Only an email address or phone number should be provided on signup.")
    if phone:
        raise bad_request("Phone signups are disabled", "phone_provider_disabled")
    if not email_raw:
        raise bad_request("Sign up only available with email provider")
    email = valid_email(email_raw)
    check_metadata_size(data)
    _limit("signup").hit(_svc().db, _client_address())  # before the hash: a valid sign-up's cost is what's limited
    password_hash = passwords.hash_password(password)
    with _svc().db.as_service() as conn:
        created = users_repo.create_if_absent(conn, email, password_hash)
        user_id = created.id if created else str(uuid.uuid4())
        # Run for a taken email too (on no row), so both paths cost the same statements.
        users_repo.set_user_metadata(conn, created.id if created else NIL_UUID, data)
    return jsonify(signup_json(user_id, email, data))


@bp.post("/token")
def token() -> Any:
    grant = request.args.get("grant_type") or request.form.get("grant_type") or ""
    if grant == "password":
        return jsonify(_password_grant(read_body()))
    if grant == "refresh_token":
        return jsonify(_refresh_grant(read_body()))
    raise bad_request("unsupported_grant_type", "invalid_credentials")


def _password_grant(body: dict[str, Any]) -> dict[str, Any]:
    """Sign in with email and password: the local backend's check (users_repo.check_password), throttled with the
    web sign-in's throttle, counted the same way."""
    email, phone = string_field(body, "email").strip(), string_field(body, "phone")
    password = string_field(body, "password")
    if email and phone:
        raise bad_request("Only an email address or phone number should be provided on login.")
    if phone and not email:
        raise GoTrueError(422, "phone_provider_disabled", "Phone logins are disabled")
    if not email:
        raise bad_request("missing email or phone")
    if not backends.EMAIL_RE.fullmatch(email) or not password or len(password) > backends.MAX_PASSWORD:
        # No account can match: refused without hashing or counting (nothing about any account is revealed, and
        # a megabyte "email" never reaches the throttle's table).
        raise bad_request(INVALID_LOGIN, "invalid_credentials")
    throttle = SignInThrottle(_svc().db)
    try:
        throttle.check(email, _client_address())
    except RateLimited as exc:
        raise GoTrueError(429, "over_request_rate_limit", exc.message, headers=exc.headers) from None
    user, answer = None, None
    with _svc().db.as_service() as conn:
        user = users_repo.check_password(conn, email, password)
        if user is not None:
            session_id = users_repo.create_session(conn, user.id, user_agent=_user_agent())
            refresh = refresh_tokens.issue(conn, user.id, session_id)
            record = users_repo.record(conn, user.id)
            assert record is not None  # checked in this transaction
            answer = _session_json(record, session_id, refresh)
    if answer is None:
        throttle.failed(email, _client_address())
        raise bad_request(INVALID_LOGIN, "invalid_credentials")
    throttle.succeeded(email)
    return answer


_REFRESH_REFUSED = {
    "not_found": ("refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"),
    "user_banned": ("user_banned", "Invalid Refresh Token: User Banned"),
    "session_not_found": ("session_not_found", "Invalid Refresh Token: No Valid Session Found"),
    "session_expired": ("session_expired", "Invalid Refresh Token: Session Expired"),
    "already_used": ("refresh_token_already_used", "Invalid Refresh Token: Already Used"),
}


def _refresh_grant(body: dict[str, Any]) -> dict[str, Any]:
    """Exchange a refresh token for a new access token and a child refresh token (rotation, reuse detection)."""
    presented = body.get("refresh_token")
    if presented is None or presented == "":
        raise OAuthError("invalid_request", "refresh_token required")
    if not isinstance(presented, str):
        raise bad_request("Could not parse request body as JSON: refresh_token must be a string", "bad_json")
    _limit("refresh").hit(_svc().db, _client_address())
    answer = None
    # The transaction commits whatever the outcome: a detected reuse must end the session for good.
    with _svc().db.as_service() as conn:
        rotation = refresh_tokens.rotate(conn, presented)
        if rotation.outcome == "ok" and rotation.token and rotation.session_id and rotation.user_id:
            record = users_repo.record(conn, rotation.user_id)
            if record is not None:
                answer = _session_json(record, rotation.session_id, rotation.token)
    if answer is None:
        if rotation.outcome == "already_used":
            log.warning("refresh token reused after its interval: session ended (user %s)", rotation.user_id)
        code, message = _REFRESH_REFUSED.get(rotation.outcome, _REFRESH_REFUSED["not_found"])
        raise bad_request(message, code)
    return answer


@bp.get("/user")
def get_user() -> Any:
    user_id, _ = _caller()
    with _svc().db.as_service() as conn:
        record = users_repo.record(conn, user_id)
    if record is None:
        raise GoTrueError(*_REFUSED["user_not_found"])
    return jsonify(user_json(record))


@bp.put("/user")
def update_user() -> Any:
    """User metadata (`data`, merged: a null value removes the key) and the password (with `current_password`,
    through the app's password change, which ends every other session). Email, phone and app_metadata cannot be
    changed here. Everything is checked before anything is written."""
    user_id, session_id = _caller()
    body = read_body()
    email, phone = string_field(body, "email").strip(), string_field(body, "phone")
    data = metadata_field(body, "data")
    password = body.get("password")
    if password is not None and not isinstance(password, str):
        raise bad_request("Could not parse request body as JSON: password must be a string", "bad_json")
    current = string_field(body, "current_password")
    if password is not None:
        check_password_strength(password)
    if body.get("app_metadata") is not None:
        raise GoTrueError(403, "not_admin", "Updating app_metadata requires admin privileges")
    db = _svc().db
    with db.as_service() as conn:
        record = users_repo.record(conn, user_id)
    if record is None:
        raise GoTrueError(*_REFUSED["user_not_found"])
    if (email and email.lower() != record.email) or (phone and phone != record.phone):
        raise GoTrueError(422, "validation_failed",
                          "Changing the email address or phone number is not available on this server.")
    if data is not None:
        check_metadata_size(_merged(record.user_metadata, data))
    if password is not None:
        _change_password(user_id, session_id, current, password)
    with db.as_service() as conn:
        if data is not None:
            locked = users_repo.record(conn, user_id, for_update=True)
            if locked is not None:
                users_repo.set_user_metadata(conn, user_id, _merged(locked.user_metadata, data))
        record = users_repo.record(conn, user_id)
    if record is None:
        raise GoTrueError(*_REFUSED["user_not_found"])
    return jsonify(user_json(record))


def _merged(metadata: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """GoTrue's UpdateUserMetaData: top-level keys set or, when null, removed."""
    merged = dict(metadata)
    for key, value in updates.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _change_password(user_id: str, session_id: str | None, current: str, new: str) -> None:
    """webapp.services.account_security.change_password_local, its refusals in GoTrue's codes and order (strength,
    then the current password, then sameness)."""
    from webapp.services import account_security

    try:
        account_security.change_password_local(_svc().db, user_id, session_id, current, new)
    except RateLimited as exc:
        raise GoTrueError(429, "over_request_rate_limit", exc.message, headers=exc.headers) from None
    except ValidationError as exc:
        wrong_current = exc.errors.get("current_password")
        if wrong_current and not current:
            raise bad_request("Current password required when setting new password.",
                               "current_password_required") from None
        if wrong_current:
            raise bad_request("Current password required when setting new password.",
                               "current_password_mismatch") from None
        if exc.errors.get("password") == account_security.SAME_PASSWORD:
            raise GoTrueError(422, "same_password", "New password should be different from the old password.") \
                from None
        raise GoTrueError(422, "weak_password", exc.errors.get("password") or exc.message,
                          extra={"weak_password": {"reasons": ["pwned"]}}) from None


@bp.post("/logout")
def logout() -> Any:
    """End sessions: scope=global (default) every session of the user, local this one, others all but this one.
    Their refresh tokens go with them (cascade) and their access tokens are refused on the next request."""
    user_id, session_id = _caller()
    scope = request.args.get("scope", "")
    if scope not in ("", "global", "local", "others"):
        raise bad_request(f'Unsupported logout scope "{scope[:40]}"')
    with _svc().db.as_service() as conn:
        if scope == "local" and session_id:
            users_repo.end_session(conn, session_id, user_id)
        elif scope == "others" and session_id:
            users_repo.end_sessions_except(conn, user_id, session_id)
        elif scope != "others":
            users_repo.end_sessions_except(conn, user_id, None)
    return Response(status=204)


_ROUTES = {"settings": ("GET",), "signup": ("POST",), "token": ("POST",), "user": ("GET", "PUT"),
           "logout": ("POST",), ".well-known/jwks.json": ("GET",)}


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def other(rest: str) -> Any:
    """Anything else under /auth/v1: what GoTrue offers and this server does not (OTP, OAuth, MFA, admin ...)."""
    if rest in _ROUTES:
        raise GoTrueError(405, "method_not_allowed", "Method not allowed", headers={"Allow": ", ".join(_ROUTES[rest])})
    raise GoTrueError(404, "not_found", "This endpoint is not available on this server (local auth backend).")


# -- errors --------------------------------------------------------------------------------------------------------

@bp.errorhandler(GoTrueError)
def _gotrue_error(exc: GoTrueError) -> Response:
    return error_response(exc)


@bp.errorhandler(OAuthError)
def _oauth_error(exc: OAuthError) -> Response:
    resp = jsonify({"error": exc.error, "error_description": exc.description})
    resp.status_code = 400
    return resp


@bp.errorhandler(Exception)
def _other_error(exc: Exception) -> Response:
    """Everything else in GoTrue's shape too, never a stack trace: the strict body parser's 400, Flask's 413/415,
    a database outage (503, which the clients retry), and the unexpected (500)."""
    if isinstance(exc, AppError):
        if exc.code == "invalid_json":
            return error_response(bad_request(f"Could not parse request body as JSON: {exc.message}", "bad_json"))
        if isinstance(exc, RateLimited):
            return error_response(GoTrueError(429, "over_request_rate_limit", exc.message, headers=exc.headers))
        code = "validation_failed" if exc.status < 500 else "unexpected_failure"
        return error_response(GoTrueError(exc.status, code, exc.message, headers=exc.headers))
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return error_response(GoTrueError(status, "request_rejected" if status < 500 else "unexpected_failure",
                                          exc.description or exc.name))
    if isinstance(exc, psycopg.OperationalError):
        log.error("database unavailable on %s %s: %s", request.method, request.path, type(exc).__name__)
        return error_response(GoTrueError(503, "unexpected_failure", "The database is unavailable for a moment.",
                                          headers={"Retry-After": "1"}))
    log.error("unhandled error on %s %s: %s", request.method, request.path, type(exc).__name__,
              exc_info=current_app.debug)
    return error_response(GoTrueError(500, "unexpected_failure",
                                      "Unexpected failure, please check server logs for more information"))


def init_app(app: Flask) -> None:
    """Serve /auth/v1 (AUTH_BACKEND=local only; the caller decides). Bearer tokens and the apikey authenticate,
    never the session cookie: CSRF-exempt like the JSON API."""
    from webapp.extensions import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)

"""Sign-in backends for the web pages. Both end in a Supabase-shaped access token that the same TokenVerifier
checks, so everything downstream is identical whichever backend signed the user in."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

from webapp.auth.tokens import mint_access_token
from webapp.config import Settings
from webapp.db import Database
from webapp.errors import AppError, Conflict, RateLimited, Unauthorized, ValidationError
from webapp.repos import users as users_repo

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
MIN_PASSWORD = 10


@dataclass
class AuthSession:
    access_token: str
    refresh_token: str
    expires_at: int
    user_id: str
    email: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthSession:
        return cls(**{k: data[k] for k in ("access_token", "refresh_token", "expires_at", "user_id", "email")})


class AuthBackend(Protocol):
    def sign_up(self, email: str, password: str) -> AuthSession | None: ...
    def sign_in(self, email: str, password: str) -> AuthSession: ...
    def refresh(self, session: AuthSession) -> AuthSession: ...
    def sign_out(self, session: AuthSession) -> None: ...


def validate_credentials(email: str, password: str, *, new: bool) -> None:
    errors = {}
    if not EMAIL_RE.fullmatch(email or ""):
        errors["email"] = "Enter a valid email address."
    if new and len(password or "") < MIN_PASSWORD:
        errors["password"] = f"Use at least {MIN_PASSWORD} characters."
    elif not password:
        errors["password"] = "Enter your password."  # noqa: S105 (a message, not a password)
    if errors:
        raise ValidationError(errors)


class LocalBackend:
    """Users in the local auth.users, bcrypt via pgcrypto, tokens minted with the local JWT secret."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def _session_for(self, user: users_repo.AuthUser, session_id: str) -> AuthSession:
        now = int(time.time())
        token = mint_access_token(
            self.settings, user_id=user.id, email=user.email, app_metadata=user.app_metadata,
            user_metadata=user.user_metadata, session_id=session_id, now=now,
        )
        # Local refresh "token": the session id; refreshing re-reads the user, so a demoted or deleted user loses
        # access at the next refresh.
        return AuthSession(token, session_id, now + self.settings.access_token_ttl, user.id, user.email)

    def sign_up(self, email: str, password: str) -> AuthSession:
        validate_credentials(email, password, new=True)
        try:
            with self.db.as_service() as conn:
                user = users_repo.create(conn, email.strip(), password)
        except psycopg.errors.UniqueViolation:
            raise Conflict("An account with this email already exists.", code="email_taken", field="email") from None
        return self._session_for(user, str(uuid.uuid4()))

    def sign_in(self, email: str, password: str) -> AuthSession:
        validate_credentials(email, password, new=False)
        with self.db.as_service() as conn:
            user = users_repo.check_password(conn, email.strip(), password)
        if user is None:
            raise Unauthorized("Wrong email or password.", code="invalid_credentials")
        return self._session_for(user, str(uuid.uuid4()))

    def refresh(self, session: AuthSession) -> AuthSession:
        with self.db.as_service() as conn:
            user = users_repo.by_id(conn, session.user_id)
        if user is None:
            raise Unauthorized("Your account no longer exists.", code="session_expired")
        return self._session_for(user, session.refresh_token)

    def sign_out(self, session: AuthSession) -> None:
        return None


class SupabaseBackend:
    """supabase-py against a Supabase project. A fresh client per call: a client that signs in rewrites its own
    headers and would otherwise leak one user's session into another's request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _client(self, access_token: str | None = None) -> Any:
        from supabase import ClientOptions, create_client

        headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        options = ClientOptions(persist_session=False, auto_refresh_token=False, headers=headers)
        return create_client(self.settings.supabase_url, self.settings.supabase_anon_key, options=options)

    @staticmethod
    def _to_session(resp: Any) -> AuthSession:
        s = resp.session
        return AuthSession(s.access_token, s.refresh_token, int(s.expires_at or time.time() + (s.expires_in or 0)),
                           str(s.user.id), s.user.email or "")

    def _call(self, fn: Any, *args: Any) -> Any:
        from supabase import AuthApiError, AuthError, AuthWeakPasswordError

        try:
            return fn(*args)
        except AuthWeakPasswordError as exc:  # the project's password policy, stricter than ours
            raise ValidationError({"password": exc.message}) from None
        except AuthApiError as exc:
            status = getattr(exc, "status", 400) or 400
            if getattr(exc, "code", None) in ("user_already_exists", "email_exists"):
                raise Conflict("An account with this email already exists.", code="email_taken",
                               field="email") from None
            if status == 429:
                raise RateLimited("Too many sign-in attempts. Wait a minute and try again.",
                                  code="auth_rate_limited", headers={"Retry-After": "60"}) from None
            if status in (400, 401, 403, 422):
                raise Unauthorized(exc.message or "Sign-in refused.", code=getattr(exc, "code", None)
                                   or "invalid_credentials") from None
            raise AppError("The sign-in service is unavailable.", code="auth_unavailable", status=503) from None
        except AuthError:
            raise AppError("The sign-in service is unavailable.", code="auth_unavailable", status=503) from None
        except Exception:  # network errors from httpx
            raise AppError("The sign-in service is unavailable.", code="auth_unavailable", status=503) from None

    def sign_up(self, email: str, password: str) -> AuthSession | None:
        validate_credentials(email, password, new=True)
        # `with`: close the per-call client's HTTP connections now, not whenever the garbage collector runs.
        with self._client().auth as auth:
            resp = self._call(auth.sign_up, {"email": email.strip(), "password": password})
        # No session means the project requires email confirmation first.
        return self._to_session(resp) if resp.session else None

    def sign_in(self, email: str, password: str) -> AuthSession:
        validate_credentials(email, password, new=False)
        with self._client().auth as auth:
            resp = self._call(auth.sign_in_with_password, {"email": email.strip(), "password": password})
        return self._to_session(resp)

    def refresh(self, session: AuthSession) -> AuthSession:
        with self._client().auth as auth:
            resp = self._call(auth.refresh_session, session.refresh_token)
        return self._to_session(resp)

    def sign_out(self, session: AuthSession) -> None:
        with self._client().auth as auth:
            try:
                auth.admin.sign_out(session.access_token, "local")
            except Exception:  # the session ends locally whatever the server says
                return None


def make_backend(settings: Settings, db: Database) -> AuthBackend:
    if settings.auth_backend == "supabase":
        return SupabaseBackend(settings)
    return LocalBackend(settings, db)

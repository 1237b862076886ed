"""Sign-in backends for the web pages. Both end in a Supabase-shaped access token that the same TokenVerifier
checks, so everything downstream is identical whichever backend signed the user in."""

from __future__ import annotations

import functools
import re
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol

from webapp import passwords
from webapp.auth.tokens import mint_access_token
from webapp.config import Settings
from webapp.db import Database, principal_refused
from webapp.errors import AppError, RateLimited, Unauthorized, ValidationError
from webapp.repos import users as users_repo

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 reads it all; a megabyte "password" would only cost us CPU
# Shown for every sign-up the local backend accepts, whether the email was new or taken: the page must not tell
# a stranger which addresses have accounts.
SIGN_UP_NOTICE = "If this email can be used, its account is ready: sign in with the password you chose."


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
    def change_password(self, session: AuthSession, current_password: str, new_password: str) -> AuthSession: ...


# Keyboard rows and counting runs: "123456789012" or "qwertyuiopasdf" are on no list yet guessed first.
_RUNS = ("1234567890" * 4, "abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm", "qazwsxedcrfvtgbyhnujmikolp",
         "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p", "zaq1xsw2cde3vfr4bgt5nhy6mju7,ki8.lo9/;p0")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords, lowercased: the "passwords" frequency list the zxcvbn package ships (MIT;
    from Mark Burnett's 10 million password list). Loaded on first use (~30 ms), not at import."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def password_problem(password: str) -> str | None:
    """Why `password` may not be chosen, or None. Common passwords are refused as typed and with the digits and
    symbols people pad them with ("password1234!") taken off."""
    if len(password) < MIN_PASSWORD:
        return f"Use at least {MIN_PASSWORD} characters."
    if len(password) > MAX_PASSWORD:
        return f"Use at most {MAX_PASSWORD} characters."
    lowered = password.lower()
    core = lowered.strip("0123456789!@#$%^&*()-_=+.,?~ ")
    common = common_passwords()
    sequence = any(lowered in run or lowered in run[::-1] for run in _RUNS)
    if lowered in common or core in common or len(set(lowered)) < 4 or sequence:
        return "This password is too common or too easy to guess; choose another."
    return None


def validate_credentials(email: str, password: str, *, new: bool) -> None:
    errors = {}
    if not EMAIL_RE.fullmatch(email or ""):
        errors["email"] = "Enter a valid email address."
    problem = password_problem(password or "") if new else None
    if problem:
        errors["password"] = problem
    elif not password:
        errors["password"] = "Enter your password."  # noqa: S105 (a message, not a password)
    if errors:
        raise ValidationError(errors)


class LocalBackend:
    """Users in the local auth.users (argon2id; older bcrypt hashes still accepted), sessions in auth.sessions,
    tokens minted with the local JWT secret carrying the session's id."""

    sign_up_notice = SIGN_UP_NOTICE

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def _session_for(self, user: users_repo.AuthUser, session_id: str) -> AuthSession:
        now = int(time.time())
        token = mint_access_token(
            self.settings, user_id=user.id, email=user.email, app_metadata=user.app_metadata,
            user_metadata=user.user_metadata, session_id=session_id, now=now,
        )
        # Local refresh "token": the session id. It is only ever read back from the signed session cookie, and
        # refreshing needs the auth.sessions row, which sign-out deletes.
        return AuthSession(token, session_id, now + self.settings.access_token_ttl, user.id, user.email)

    def sign_up(self, email: str, password: str) -> None:
        """Create the account if the email is free. Always None (the page then asks the user to sign in), and
        the same work either way, so a taken email cannot be told from a new one."""
        validate_credentials(email, password, new=True)
        password_hash = passwords.hash_password(password)
        with self.db.as_service() as conn:
            users_repo.create_if_absent(conn, email.strip(), password_hash)

    def sign_in(self, email: str, password: str) -> AuthSession:
        validate_credentials(email, password, new=False)
        with self.db.as_service() as conn:
            user = users_repo.check_password(conn, email.strip(), password)
            session_id = users_repo.create_session(conn, user.id) if user else None
        if user is None or session_id is None:
            raise Unauthorized("Wrong email or password.", code="invalid_credentials")
        return self._session_for(user, session_id)

    def refresh(self, session: AuthSession) -> AuthSession:
        with self.db.as_service() as conn:
            live = users_repo.touch_session(conn, session.refresh_token, session.user_id)
            user = users_repo.by_id(conn, session.user_id) if live else None
        if not live:
            raise principal_refused("session_revoked")
        if user is None:
            raise principal_refused("user_not_found")
        return self._session_for(user, session.refresh_token)

    def sign_out(self, session: AuthSession) -> None:
        """End the session in auth.sessions: its access token and refresh token stop working at once."""
        with self.db.as_service() as conn:
            users_repo.end_session(conn, session.refresh_token, session.user_id)

    def change_password(self, session: AuthSession, current_password: str, new_password: str) -> AuthSession:
        """Check the current password, store the new one and end every other session; this one is kept (its id
        is the web session's refresh_token)."""
        from webapp.services.account_security import change_password_local

        change_password_local(self.db, session.user_id, session.refresh_token, current_password, new_password)
        return session


class EmailTaken(Exception):
    """GoTrue refused a sign-up because the email has an account (never shown to the user as such)."""


class SupabaseBackend:
    """supabase-py against a Supabase project. A fresh client per call: a client that signs in rewrites its own
    headers and would otherwise leak one user's session into another's request."""

    # Shown when GoTrue gives no session: confirmation needed, or (mapped here) the email already has an account.
    sign_up_notice = "Check your email to confirm your account, then sign in."

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _client(self, access_token: str | None = None, flow_type: str = "pkce") -> Any:
        from supabase import ClientOptions, create_client

        headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        options = ClientOptions(persist_session=False, auto_refresh_token=False, headers=headers,
                                flow_type=flow_type)
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
                raise EmailTaken() from None
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
            try:
                resp = self._call(auth.sign_up, {"email": email.strip(), "password": password})
            except EmailTaken:
                # GoTrue says so only when the project confirms no emails; the page still must not.
                return None
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
        """End the session in GoTrue (auth.sessions). GoTrue refuses an expired access token, and the session
        would then outlive the sign-out: refresh first when it is (about to be) expired."""
        token = session.access_token
        if session.expires_at - time.time() < 30:
            try:
                token = self.refresh(session).access_token
            except AppError:  # refresh refused: the session is already gone
                return None
        with self._client().auth as auth:
            try:
                auth.admin.sign_out(token, "local")
            except Exception:  # the session ends locally whatever the server says
                return None

    def change_password(self, session: AuthSession, current_password: str, new_password: str) -> AuthSession:
        """Check the current password with a password grant (whose extra session is ended at once), update the
        password with the user's own access token, then sign out the user's other sessions. GoTrue's own rules
        (weak_password, same_password) come back beside the field. Returns the session to keep (set_session
        refreshes it when it had expired)."""
        errors: dict[str, str] = {}
        problem = password_problem(new_password or "")
        if problem:
            errors["password"] = problem
        if not current_password:
            errors["current_password"] = "Enter your current password."  # noqa: S105 (a message)
        elif len(current_password) > MAX_PASSWORD or not self._password_ok(session.email, current_password):
            errors["current_password"] = "This is not your current password."  # noqa: S105 (a message)
        if errors:
            raise ValidationError(errors)
        with self._client().auth as auth:
            kept = self._call(auth.set_session, session.access_token, session.refresh_token)
            try:
                self._call(auth.update_user, {"password": new_password})
            except Unauthorized as exc:
                if exc.code == "same_password":
                    raise ValidationError({"password": "Choose a password different from the current one."}
                                          ) from None
                raise
            fresh = self._to_session(kept) if kept.session else session
            self._call(auth.admin.sign_out, fresh.access_token, "others")
        return fresh

    def _password_ok(self, email: str, password: str) -> bool:
        """True when GoTrue accepts the password; the session that proves it is ended straight away."""
        with self._client().auth as auth:
            try:
                resp = self._call(auth.sign_in_with_password, {"email": email, "password": password})
            except Unauthorized:
                return False
            with suppress(Exception):  # the check's answer stands; GoTrue ends the extra session on its own
                auth.admin.sign_out(resp.session.access_token, "local")
        return True

    def request_password_reset(self, email: str, redirect_to: str) -> None:
        """Ask GoTrue to send its recovery email (POST /recover). GoTrue answers the same whether or not the email
        has an account; so does this."""
        if not EMAIL_RE.fullmatch(email or ""):
            raise ValidationError({"email": "Enter a valid email address."})
        # Implicit flow: the email's link carries a token_hash the recovery page verifies server-side; a PKCE
        # challenge would need a verifier kept by this one short-lived client.
        with self._client(flow_type="implicit").auth as auth:
            self._call(auth.reset_password_for_email, email.strip(), {"redirect_to": redirect_to})

    def complete_recovery(self, token_hash: str, new_password: str) -> str:
        """Verify the recovery link's token_hash (verifyOtp type=recovery, single use), set the new password with
        the session it gives, then end every session of the user. Returns the account's email. A weak password
        is refused before the link is used."""
        problem = password_problem(new_password or "")
        if problem:
            raise ValidationError({"password": problem})
        with self._client(flow_type="implicit").auth as auth:
            resp = self._call(auth.verify_otp, {"token_hash": token_hash, "type": "recovery"})
            if not resp.session:
                raise Unauthorized("This link is invalid or expired.", code="otp_expired")
            self._call(auth.update_user, {"password": new_password})
            self._call(auth.admin.sign_out, resp.session.access_token, "global")
            return str(resp.session.user.email or "")


def make_backend(settings: Settings, db: Database) -> AuthBackend:
    if settings.auth_backend == "supabase":
        return SupabaseBackend(settings)
    return LocalBackend(settings, db)

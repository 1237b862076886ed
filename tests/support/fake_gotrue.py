"""A loopback Supabase Auth (GoTrue) for tests: a real HTTP server that answers the calls supabase-py makes.

Shapes follow supabase/auth (internal/api/token.go, signup.go, logout.go, user.go, jwks.go, errors.go) and what
supabase_auth 2.34.1 parses (`Session`, `User`, `helpers.handle_exception`):

- POST /auth/v1/signup                              -> a session (auto-confirm) or the bare user (confirmation needed)
- POST /auth/v1/token?grant_type=password           -> a session, or 400 "Invalid login credentials"
- POST /auth/v1/token?grant_type=refresh_token      -> a session with a rotated refresh token; refresh tokens are
                                                       single-use (reuse -> 400 refresh_token_already_used)
- POST /auth/v1/logout?scope=global|local|others    -> 204; the scope is recorded
- GET  /auth/v1/user                                -> the user of the bearer token
- PUT  /auth/v1/user {"password"}                   -> the updated user; weak_password / same_password (422); the
                                                       user's other sessions end, as user.UpdatePassword does
- POST /auth/v1/recover {"email"}?redirect_to=...   -> {} whether or not the email has an account; a known email
                                                       gets a recovery "email" in `outbox` (token_hash, redirect_to);
                                                       a second request within `recover_interval` is 429
                                                       over_email_send_rate_limit (recover.go, mail.go)
- POST /auth/v1/verify {"token_hash","type":"recovery"} -> a session; the token is single use and expires after
                                                       `otp_ttl` (403 otp_expired "Email link is invalid or has
                                                       expired")
- GET  /auth/v1/.well-known/jwks.json               -> the public EC key (with kid) that signs the access tokens

Access tokens are ES256 JWTs with the claims GoTrue issues (internal/tokens/service.go), signed with a fresh P-256
key, so the app's TokenVerifier checks them through the JWKS exactly as it checks real ones. Every request except
the JWKS needs the `apikey` header (the Supabase API gateway answers 401 without it). Every request is recorded.

Errors: a request carrying `X-Supabase-Api-Version: 2024-01-01` (supabase-py always sends it) gets the current
`{"code": "<error_code>", "message": ...}` body and the version header echoed; without it, the older
`{"code": <status>, "error_code": ..., "msg": ...}` body. `legacy_password_errors=True` makes the password grant
answer as GoTrue did before error codes: `{"error": "invalid_grant", "error_description": ...}`.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

PREFIX = "/auth/v1"
JWKS_PATH = PREFIX + "/.well-known/jwks.json"
API_VERSION_HEADER = "X-Supabase-Api-Version"
API_VERSION = "2024-01-01"
INVALID_LOGIN = "Invalid login credentials"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakeUser:
    id: str
    email: str
    password: str
    confirmed: bool
    created_at: float
    app_metadata: dict[str, Any] = field(default_factory=lambda: {"provider": "email", "providers": ["email"]})
    user_metadata: dict[str, Any] = field(default_factory=dict)
    last_sign_in_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The user as GoTrue's models.User marshals it (the fields supabase_auth's `User` reads)."""
        created = _iso(self.created_at)
        identity = {
            "identity_id": str(uuid.uuid5(uuid.NAMESPACE_URL, "identity:" + self.id)),
            "id": self.id,
            "user_id": self.id,
            "identity_data": {"email": self.email, "email_verified": self.confirmed, "phone_verified": False,
                              "sub": self.id},
            "provider": "email",
            "last_sign_in_at": created,
            "created_at": created,
            "updated_at": created,
            "email": self.email,
        }
        return {
            "id": self.id,
            "aud": "authenticated",
            "role": "authenticated",
            "email": self.email,
            "email_confirmed_at": created if self.confirmed else None,
            "phone": "",
            "confirmation_sent_at": None if self.confirmed else created,
            "confirmed_at": created if self.confirmed else None,
            "last_sign_in_at": _iso(self.last_sign_in_at) if self.last_sign_in_at else None,
            "app_metadata": dict(self.app_metadata),
            "user_metadata": {"email": self.email, "email_verified": self.confirmed, "phone_verified": False,
                              "sub": self.id, **self.user_metadata},
            "identities": [identity],
            "created_at": created,
            "updated_at": created,
            "is_anonymous": False,
        }


@dataclass(frozen=True)
class RecoveryEmail:
    """What GoTrue would have mailed: the recovery link's parts as the email template sees them."""

    email: str
    token_hash: str
    redirect_to: str | None
    sent_at: float


@dataclass
class RefreshToken:
    token: str
    user_id: str
    session_id: str
    used: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any

    @property
    def apikey(self) -> str | None:
        return self.headers.get("apikey")

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def grant_type(self) -> str | None:
        return self.query.get("grant_type")


class GoTrueError(Exception):
    def __init__(self, status: int, code: str, message: str, *, oauth: bool = False,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.oauth = status, code, message, oauth
        self.extra = extra or {}


class FakeGoTrue:
    """See the module docstring. `start()` before use, `stop()` after (or use it as a context manager)."""

    def __init__(self, *, anon_key: str = "anon-test-key", autoconfirm: bool = True, access_ttl: int = 3600,
                 legacy_password_errors: bool = False) -> None:
        self.anon_key = anon_key
        self.autoconfirm = autoconfirm  # False: sign-up answers with the user only, as with "Confirm email" on
        self.access_ttl = access_ttl
        self.min_password_length = 6  # GoTrue's default; projects may demand more
        self.legacy_password_errors = legacy_password_errors
        self.fail_status: int | None = None  # answer every auth call (not the JWKS) with this 5xx status
        self.on_user_created: Callable[[FakeUser], None] | None = None  # e.g. mirror the user into auth.users
        # GoTrue keeps sessions in the app's database (auth.sessions): mirror their start and end there.
        self.on_session_created: Callable[[str, str], None] | None = None  # (session id, user id)
        self.on_session_ended: Callable[[str], None] | None = None  # (session id)
        self.before_password_grant: Callable[[], None] | None = None  # e.g. a barrier to overlap two sign-ins
        self.kid = "fake-" + secrets.token_hex(4)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.users: dict[str, FakeUser] = {}  # by lower-cased email
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.sessions: dict[str, str] = {}  # live session id -> user id
        self.logouts: list[tuple[str, str]] = []  # (scope, session id)
        self.requests: list[RecordedRequest] = []
        self.outbox: list[RecoveryEmail] = []  # recovery emails "sent"
        self.recovery_tokens: dict[str, tuple[str, float]] = {}  # token hash -> (user id, sent at)
        self.recover_interval = 60  # GoTrue's SMTP max frequency: one recovery email per user per minute
        self.otp_ttl = 3600  # GoTrue's mailer OTP expiry
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), name="fake-gotrue",
                                        daemon=True)
        self._running = False

    # --- lifecycle ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What the app gets as SUPABASE_URL."""
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def issuer(self) -> str:
        return self.base_url + PREFIX

    def start(self) -> FakeGoTrue:
        self._thread.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Shut down and close the socket: later requests get "connection refused"."""
        if self._running:
            self._server.shutdown()
            self._thread.join(5)
            self._running = False
        self._server.server_close()

    def __enter__(self) -> FakeGoTrue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state helpers for tests ----------------------------------------------------------------------------

    def add_user(self, email: str, password: str, *, confirmed: bool = True,
                 app_metadata: dict[str, Any] | None = None) -> FakeUser:
        with self._lock:
            user = FakeUser(str(uuid.uuid4()), email.strip().lower(), password, confirmed, time.time())
            if app_metadata:
                user.app_metadata.update(app_metadata)
            self.users[user.email] = user
        if self.on_user_created:
            self.on_user_created(user)
        return user

    def user_by_id(self, user_id: str) -> FakeUser | None:
        with self._lock:
            return next((u for u in self.users.values() if u.id == user_id), None)

    def revoke_sessions(self, user_id: str) -> None:
        """What an admin "sign out everywhere" does: every session and refresh token of the user is gone."""
        with self._lock:
            for sid in [s for s, uid in self.sessions.items() if uid == user_id]:
                self._end_session(sid)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests
                    if r.path == PREFIX + path and (method is None or r.method == method)]

    def grants(self, grant_type: str) -> list[RecordedRequest]:
        return [r for r in self.requests_to("/token", "POST") if r.grant_type == grant_type]

    def public_jwk(self) -> dict[str, Any]:
        nums = self._key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64url(nums.x.to_bytes(32, "big")),
                "y": b64url(nums.y.to_bytes(32, "big")), "kid": self.kid, "alg": "ES256", "use": "sig",
                "key_ops": ["verify"]}

    # --- tokens -------------------------------------------------------------------------------------------

    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"  # JWS: raw r||s

    def access_token(self, user: FakeUser, session_id: str, *, now: int | None = None,
                     ttl: int | None = None) -> str:
        """An access token with GoTrue's claims (AccessTokenClaims), header {"alg","kid","typ"}."""
        issued = int(time.time()) if now is None else now
        claims = {
            "iss": self.issuer,
            "sub": user.id,
            "aud": "authenticated",
            "exp": issued + (self.access_ttl if ttl is None else ttl),
            "iat": issued,
            "email": user.email,
            "phone": "",
            "app_metadata": dict(user.app_metadata),
            "user_metadata": user.to_json()["user_metadata"],
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": issued}],
            "session_id": session_id,
            "is_anonymous": False,
        }
        return self.sign({"alg": "ES256", "kid": self.kid, "typ": "JWT"}, claims)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this fake issued and that is still valid, or GoTrueError (403 bad_jwt)."""
        try:
            head, payload, sig = token.split(".")
            raw = _b64decode(sig)
            signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            self._key.public_key().verify(signature, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
            claims: dict[str, Any] = json.loads(_b64decode(payload))
        except (ValueError, InvalidSignature):
            raise GoTrueError(403, "bad_jwt", "invalid JWT: unable to parse or verify signature") from None
        if claims.get("exp", 0) <= time.time():
            raise GoTrueError(403, "bad_jwt", "invalid JWT: unable to parse or verify signature, token has "
                                              "invalid claims: token is expired")
        return claims

    def _new_session(self, user: FakeUser) -> dict[str, Any]:
        with self._lock:
            sid = str(uuid.uuid4())
            self.sessions[sid] = user.id
            if self.on_session_created:
                self.on_session_created(sid, user.id)
            return self._session_json(user, sid)

    def _session_json(self, user: FakeUser, session_id: str) -> dict[str, Any]:
        now = int(time.time())
        refresh = RefreshToken(secrets.token_urlsafe(9), user.id, session_id)  # GoTrue: 12-char tokens
        self.refresh_tokens[refresh.token] = refresh
        user.last_sign_in_at = now
        return {
            "access_token": self.access_token(user, session_id, now=now),
            "token_type": "bearer",
            "expires_in": self.access_ttl,
            "expires_at": now + self.access_ttl,
            "refresh_token": refresh.token,
            "user": user.to_json(),
        }

    def _end_session(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        if self.on_session_ended:
            self.on_session_ended(session_id)
        for token in [t for t, r in self.refresh_tokens.items() if r.session_id == session_id]:
            del self.refresh_tokens[token]

    # --- endpoints ----------------------------------------------------------------------------------------

    def _signup(self, body: dict[str, Any]) -> tuple[int, Any]:
        email = str(body.get("email") or "").strip().lower()
        password = str(body.get("password") or "")
        if not email or "@" not in email:
            raise GoTrueError(400, "validation_failed", "Unable to validate email address: invalid format")
        if len(password) < self.min_password_length:
            raise GoTrueError(422, "weak_password",
                              f"Password should be at least {self.min_password_length} characters.",
                              extra={"weak_password": {"reasons": ["length"]}})
        with self._lock:
            existing = self.users.get(email)
        if existing is not None:
            if self.autoconfirm:
                raise GoTrueError(422, "user_already_exists", "User already registered")
            # With confirmations on, GoTrue hides which emails exist: an obfuscated user, no session.
            ghost = FakeUser(str(uuid.uuid4()), email, "", False, time.time())
            return 200, ghost.to_json()
        user = self.add_user(email, password, confirmed=self.autoconfirm)
        if not self.autoconfirm:
            return 200, user.to_json()
        return 200, self._new_session(user)

    def _password_grant(self, body: dict[str, Any]) -> tuple[int, Any]:
        if self.before_password_grant:
            self.before_password_grant()
        email = str(body.get("email") or "").strip().lower()
        with self._lock:
            user = self.users.get(email)
        if user is None or not secrets.compare_digest(user.password, str(body.get("password") or "")):
            raise GoTrueError(400, "invalid_credentials", INVALID_LOGIN, oauth=self.legacy_password_errors)
        if not user.confirmed:
            raise GoTrueError(400, "email_not_confirmed", "Email not confirmed", oauth=self.legacy_password_errors)
        return 200, self._new_session(user)

    def _refresh_grant(self, body: dict[str, Any]) -> tuple[int, Any]:
        token = str(body.get("refresh_token") or "")
        if not token:
            raise GoTrueError(400, "validation_failed", "refresh_token required")
        with self._lock:
            record = self.refresh_tokens.get(token)
            if record is None:
                raise GoTrueError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
            if record.used:
                # Reuse outside the reuse interval: GoTrue revokes the whole token family (the session).
                self._end_session(record.session_id)
                raise GoTrueError(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")
            user = self.user_by_id(record.user_id)
            if user is None or record.session_id not in self.sessions:
                raise GoTrueError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
            record.used = True
            return 200, self._session_json(user, record.session_id)

    def _bearer_claims(self, headers: dict[str, str]) -> dict[str, Any]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise GoTrueError(401, "no_authorization", "This endpoint requires a valid Bearer token")
        if token == self.anon_key:
            raise GoTrueError(403, "bad_jwt", "invalid claim: missing sub claim")
        claims = self.verify(token)
        with self._lock:
            if claims.get("session_id") not in self.sessions:
                raise GoTrueError(403, "session_not_found", "Session from session_id claim in JWT does not exist")
        return claims

    def _logout(self, query: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        scope = query.get("scope", "global") or "global"
        if scope not in ("global", "local", "others"):
            raise GoTrueError(400, "validation_failed", f'Unsupported logout scope "{scope}"')
        try:
            claims = self._bearer_claims(headers)
        except GoTrueError as exc:
            if exc.code == "session_not_found":  # already signed out: GoTrue answers 204 as well
                with self._lock:
                    self.logouts.append((scope, ""))
                return 204, None
            raise
        sid, uid = str(claims["session_id"]), str(claims["sub"])
        with self._lock:
            self.logouts.append((scope, sid))
            if scope == "local":
                self._end_session(sid)
            else:
                for other in [s for s, u in self.sessions.items() if u == uid]:
                    if scope == "global" or other != sid:
                        self._end_session(other)
        return 204, None

    def _user(self, headers: dict[str, str]) -> tuple[int, Any]:
        claims = self._bearer_claims(headers)
        user = self.user_by_id(str(claims["sub"]))
        if user is None:
            raise GoTrueError(403, "user_not_found", "User from sub claim in JWT does not exist")
        return 200, user.to_json()

    def _update_user(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        claims = self._bearer_claims(headers)
        user = self.user_by_id(str(claims["sub"]))
        if user is None:
            raise GoTrueError(403, "user_not_found", "User from sub claim in JWT does not exist")
        password = body.get("password")
        if isinstance(password, str) and password:
            if len(password) < self.min_password_length:
                raise GoTrueError(422, "weak_password",
                                  f"Password should be at least {self.min_password_length} characters.",
                                  extra={"weak_password": {"reasons": ["length"]}})
            if secrets.compare_digest(password, user.password):
                raise GoTrueError(422, "same_password", "New password should be different from the old password.")
            with self._lock:
                user.password = password
                # user.UpdatePassword: recovery tokens cleared, every other session logged out
                for token in [t for t, (uid, _) in self.recovery_tokens.items() if uid == user.id]:
                    del self.recovery_tokens[token]
                for other in [s for s, uid in self.sessions.items() if uid == user.id and s != claims["session_id"]]:
                    self._end_session(other)
        return 200, user.to_json()

    def _recover(self, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        email = str(body.get("email") or "").strip().lower()
        if not email:
            raise GoTrueError(400, "validation_failed", "Password recovery requires an email")
        if "@" not in email:
            raise GoTrueError(400, "validation_failed", "Unable to validate email address: invalid format")
        with self._lock:
            user = self.users.get(email)
            if user is None:
                return 200, {}
            last = max((sent for uid, sent in self.recovery_tokens.values() if uid == user.id), default=0.0)
            if time.time() - last < self.recover_interval:
                raise GoTrueError(429, "over_email_send_rate_limit",
                                  f"For security purposes, you can only request this after "
                                  f"{self.recover_interval} seconds.")
            for token in [t for t, (uid, _) in self.recovery_tokens.items() if uid == user.id]:
                del self.recovery_tokens[token]  # a new recovery token replaces the old one
            token_hash = secrets.token_hex(28)  # GoTrue: sha224 hex of email + OTP
            now = time.time()
            self.recovery_tokens[token_hash] = (user.id, now)
            self.outbox.append(RecoveryEmail(user.email, token_hash, query.get("redirect_to"), now))
        return 200, {}

    def _verify(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("type") != "recovery":
            raise GoTrueError(400, "validation_failed", "Unsupported verification type")
        token_hash = str(body.get("token_hash") or "")
        with self._lock:
            found = self.recovery_tokens.pop(token_hash, None)  # single use
            user = self.user_by_id(found[0]) if found else None
            if found is None or user is None or time.time() - found[1] > self.otp_ttl:
                raise GoTrueError(403, "otp_expired", "Email link is invalid or has expired")
            return 200, self._new_session(user)

    def dispatch(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                 body: Any) -> tuple[int, Any]:
        if method == "GET" and path == JWKS_PATH:  # public: no apikey needed, as on Supabase
            return 200, {"keys": [self.public_jwk()]}
        if not headers.get("apikey"):
            raise GoTrueError(401, "no_api_key", "No API key found in request")
        if headers["apikey"] != self.anon_key:
            raise GoTrueError(401, "invalid_api_key", "Invalid API key")
        if self.fail_status:
            raise GoTrueError(self.fail_status, "unexpected_failure", "Unexpected failure")
        body = body if isinstance(body, dict) else {}
        route = (method, path[len(PREFIX):] if path.startswith(PREFIX) else path)
        if route == ("POST", "/signup"):
            return self._signup(body)
        if route == ("POST", "/token"):
            grant = query.get("grant_type")
            if grant == "password":
                return self._password_grant(body)
            if grant == "refresh_token":
                return self._refresh_grant(body)
            raise GoTrueError(400, "validation_failed", "unsupported_grant_type", oauth=True)
        if route == ("POST", "/logout"):
            return self._logout(query, headers)
        if route == ("GET", "/user"):
            return self._user(headers)
        if route == ("PUT", "/user"):
            return self._update_user(headers, body)
        if route == ("POST", "/recover"):
            return self._recover(query, body)
        if route == ("POST", "/verify"):
            return self._verify(body)
        raise GoTrueError(404, "not_found", "Not found")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the Supabase gateway serves

            def _serve(self) -> None:
                split = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                with owner._lock:
                    owner.requests.append(RecordedRequest(self.command, split.path, query, headers, body))
                modern = headers.get(API_VERSION_HEADER.lower(), "") >= API_VERSION
                try:
                    status, payload = owner.dispatch(self.command, split.path, query, headers, body)
                except GoTrueError as exc:
                    status = exc.status
                    if exc.oauth:
                        error = "invalid_grant" if exc.status == 400 else "server_error"
                        payload = {"error": error, "error_description": exc.message}
                    elif exc.code in ("no_api_key", "invalid_api_key"):  # the gateway, not GoTrue, answers
                        payload = {"message": exc.message}
                    elif modern:
                        payload = {"code": exc.code, "message": exc.message, **exc.extra}
                    else:
                        payload = {"code": exc.status, "error_code": exc.code, "msg": exc.message, **exc.extra}
                self.send_response(status)
                if modern:
                    self.send_header(API_VERSION_HEADER, API_VERSION)
                if split.path == JWKS_PATH and status == 200:
                    self.send_header("Cache-Control", "public, max-age=600")
                if payload is None:
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = json.dumps(payload).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

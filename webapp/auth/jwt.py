"""Verify Supabase access tokens: HS256 with the legacy JWT secret, ES256/RS256 with keys from the project's JWKS.

Every failure is an `Unauthorized` with a stable code and a message that never contains the token, secret or key;
a JWKS that cannot be fetched while the needed key is not cached is a `ServiceUnavailable` (`jwks_unavailable`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from jose import jwk, jws
from jose.backends.base import Key
from jose.exceptions import JOSEError

from webapp.config import Settings
from webapp.errors import ServiceUnavailable, Unauthorized

log = logging.getLogger(__name__)

AUDIENCE = "authenticated"
ROLE = "authenticated"
JWKS_PATH = "/.well-known/jwks.json"
JWKS_TTL = 600.0  # GoTrue's own Cache-Control max-age; Supabase asks apps not to cache longer
JWKS_REFETCH_INTERVAL = 30.0  # random kids must not turn into one JWKS request each
JWKS_STALE_MAX = 3600.0  # while the JWKS is down, keep using known keys this long after the last good fetch
JWKS_TIMEOUT = 3.0
JWKS_MAX_BYTES = 256 * 1024
MAX_TOKEN_CHARS = 16 * 1024
KNOWN_ALGORITHMS = frozenset({"HS256", "ES256", "RS256"})
# Which JWK shape may verify which alg: (kty, crv). Binding alg to key type blocks algorithm confusion.
ASYMMETRIC = {"ES256": ("EC", "P-256"), "RS256": ("RSA", None)}
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")

Clock = Callable[[], float]


def _invalid(message: str = "The access token is not valid.", code: str = "invalid_token") -> Unauthorized:
    return Unauthorized(message, code=code)


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The sign-in key service is unavailable; try again shortly.", code="jwks_unavailable")


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def read_header(token: object) -> dict[str, Any]:
    """The unverified JOSE header of a compact JWS, or Unauthorized for anything malformed."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise _invalid()
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise _invalid()
    try:
        header = json.loads(_b64decode(parts[0]))
    except (ValueError, binascii.Error):
        raise _invalid() from None
    if not isinstance(header, dict):
        raise _invalid()
    if "crit" in header:  # RFC 7515 §4.1.11: we understand no extensions, so we must reject
        raise _invalid()
    return header


# ---------------------------------------------------------------------------------------------------------------
# JWKS


@dataclass(frozen=True)
class PublicKey:
    alg: str
    key: Key


@dataclass(frozen=True)
class _Snapshot:
    keys: Mapping[str, PublicKey] = field(default_factory=dict)
    fetched_at: float | None = None  # last successful fetch


class JwksError(Exception):
    """The JWKS could not be fetched or parsed; the message is for logs and names no secret."""


def _jwk_alg(entry: Mapping[str, Any]) -> str | None:
    for alg, (kty, crv) in ASYMMETRIC.items():
        if entry.get("kty") == kty and entry.get("crv") == crv and entry.get("alg", alg) == alg:
            return alg
    return None


def _public_key(entry: object) -> tuple[str, PublicKey] | None:
    """One JWKS entry as (kid, key), or None when it is not a usable public signature key."""
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    alg = _jwk_alg(entry)
    if not isinstance(kid, str) or not kid or alg is None or "d" in entry or entry.get("use", "sig") != "sig":
        return None
    ops = entry.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    try:
        return kid, PublicKey(alg, jwk.construct(entry, alg))
    except (JOSEError, ValueError, TypeError):
        return None


def parse_jwks(doc: object) -> dict[str, PublicKey]:
    """The usable keys of a JWKS document by kid; entries we cannot use are skipped."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError("not a JWKS document")
    return dict(filter(None, map(_public_key, doc["keys"])))


def _read_capped(resp: requests.Response) -> bytes:
    deadline = time.monotonic() + JWKS_TIMEOUT  # `timeout` bounds each read, not a slow drip
    body = b""
    for chunk in resp.iter_content(16 * 1024):
        body += chunk
        if len(body) > JWKS_MAX_BYTES:
            raise JwksError("response too large")
        if time.monotonic() > deadline:
            raise JwksError("response too slow")
    return body


class JwksCache:
    """Public keys by kid from one JWKS URL: TTL-cached, refetched on an unknown kid at most every 30 s."""

    def __init__(self, url: str, session: requests.Session, clock: Clock) -> None:
        self._url = url
        self._session = session
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot = _Snapshot()
        self._attempted_at: float | None = None
        self._last_failed = False

    def get(self, kid: str) -> PublicKey:
        """The key for `kid`; Unauthorized when the JWKS lacks it, ServiceUnavailable when it cannot be fetched."""
        found = self._fresh(self._snapshot, kid, JWKS_TTL)  # lock-free fast path: snapshots are immutable
        if found:
            return found
        with self._lock:  # one fetch at a time; waiters then use its result
            now = self._clock()
            found = self._fresh(self._snapshot, kid, JWKS_TTL)
            if found:
                return found
            if self._attempted_at is None or now - self._attempted_at >= JWKS_REFETCH_INTERVAL:
                self._refresh(now)
            found = self._fresh(self._snapshot, kid, JWKS_TTL if not self._last_failed else JWKS_STALE_MAX)
            if found:
                return found
            if self._last_failed or self._snapshot.fetched_at is None:
                raise _unavailable()
            raise _invalid("The access token was signed with an unknown key.")

    def clear(self) -> None:
        """Forget every key and allow an immediate refetch (key rotation, incident response)."""
        with self._lock:
            self._snapshot = _Snapshot()
            self._attempted_at = None
            self._last_failed = False

    def _fresh(self, snap: _Snapshot, kid: str, max_age: float) -> PublicKey | None:
        if snap.fetched_at is None or self._clock() - snap.fetched_at >= max_age:
            return None
        return snap.keys.get(kid)

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            keys = self._download()
        except JwksError as exc:
            self._last_failed = True
            log.warning("JWKS fetch from %s failed: %s", self._url, exc)
            return
        self._last_failed = False
        self._snapshot = _Snapshot(keys, now)

    def _download(self) -> dict[str, PublicKey]:
        try:
            with self._session.get(self._url, timeout=JWKS_TIMEOUT, allow_redirects=False, stream=True,
                                   headers={"Accept": "application/json"}) as resp:
                if resp.status_code != 200:
                    raise JwksError(f"HTTP {resp.status_code}")
                body = _read_capped(resp)
        except requests.RequestException as exc:
            raise JwksError(type(exc).__name__) from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise JwksError("not JSON") from None
        return parse_jwks(doc)


# ---------------------------------------------------------------------------------------------------------------
# Claims


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    # bool is an int in Python, and json.loads accepts Infinity/NaN, which would defeat every time check.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(f"The access token's `{name}` claim is missing or not a number.")
    return value


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _audience_ok(aud: object) -> bool:
    if isinstance(aud, str):
        return aud == AUDIENCE
    return isinstance(aud, list) and AUDIENCE in aud


def check_claims(claims: Mapping[str, Any], *, issuer: str, now: float, leeway: float) -> None:
    """Identity claims first, times last, so `token_expired` means "otherwise fine, refresh it"."""
    if claims.get("iss") != issuer:
        raise _invalid("The access token was issued by another issuer.")
    if not _audience_ok(claims.get("aud")):
        raise _invalid("The access token is not meant for this service.")
    if claims.get("role") != ROLE:
        raise _invalid("The access token is not a signed-in user's token.")
    if not _is_uuid(claims.get("sub")):
        raise _invalid("The access token's subject is not a user id.")
    exp, iat = _number(claims, "exp"), _number(claims, "iat")
    nbf = _number(claims, "nbf") if "nbf" in claims else None
    if iat - leeway > now or (nbf is not None and nbf - leeway > now):
        raise _invalid("The access token is not valid yet.", code="token_not_yet_valid")
    if exp + leeway <= now:
        raise _invalid("The access token has expired.", code="token_expired")


# ---------------------------------------------------------------------------------------------------------------
# Verifier


class TokenVerifier:
    """Checks a Supabase access token's signature and claims; thread-safe, one per app."""

    def __init__(self, settings: Settings, session: requests.Session | None = None, clock: Clock = time.time) -> None:
        self._issuer = settings.jwt_issuer
        self._leeway = float(settings.jwt_leeway)
        self._clock = clock
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._hmac_key = jwk.construct(settings.jwt_secret, "HS256") if settings.jwt_secret else None
        allowed = KNOWN_ALGORITHMS.intersection(settings.jwt_algorithms)
        # HS256 without a secret would have nothing to check against.
        self._algorithms = allowed if self._hmac_key else allowed - {"HS256"}
        self._jwks = JwksCache(settings.jwks_url or settings.jwt_issuer + JWKS_PATH, self._session, clock)

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims of `token`, or Unauthorized / ServiceUnavailable."""
        header = read_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _invalid("The access token's signing algorithm is not accepted.")
        claims = self._verified_payload(token, alg, self._key_for(alg, header))
        check_claims(claims, issuer=self._issuer, now=self._clock(), leeway=self._leeway)
        return claims

    def clear_cache(self) -> None:
        """Drop the cached JWKS so the next asymmetric token refetches it."""
        self._jwks.clear()

    def close(self) -> None:
        """Close the HTTP session if this verifier created it."""
        if self._own_session:
            self._session.close()

    def _key_for(self, alg: str, header: Mapping[str, Any]) -> Key:
        if alg == "HS256":
            if self._hmac_key is None:  # unreachable: the allow-list drops HS256 without a secret
                raise _invalid()
            return self._hmac_key
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid("The access token names no signing key.")
        public = self._jwks.get(kid)
        if public.alg != alg:
            raise _invalid("The access token's algorithm does not match its key.")
        return public.key

    @staticmethod
    def _verified_payload(token: str, alg: str, key: Key) -> dict[str, Any]:
        try:
            payload = jws.verify(token, key, algorithms=[alg])
            claims = json.loads(payload)
        except (JOSEError, ValueError, TypeError):
            raise _invalid("The access token's signature is not valid.") from None
        if not isinstance(claims, dict):
            raise _invalid()
        return claims

"""Sign-in throttling per account and per client address, counted in Postgres so every worker and instance
shares one count. Failures only: a correct password is never slowed down by someone else's guesses beyond the
address limit, and a success clears the account's count (not the address's, which an attacker could otherwise
reset with an account of their own).

RequestLimit: the local Supabase Auth API's request limits per client address (sign-ups, token refreshes), every
request counted in a fixed window (AUTH_SIGNUP_RATE_LIMIT / AUTH_REFRESH_RATE_LIMIT and their windows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webapp.db import Database
from webapp.errors import RateLimited
from webapp.repos import auth_rate_hits, sign_in_attempts


@dataclass(frozen=True)
class Limits:
    per_account: int = 5  # failures per account per window
    per_address: int = 30  # failures per client address per window (an office shares one address)
    window_seconds: int = 15 * 60


DEFAULT = Limits()


def _keys(email: str, address: str | None) -> list[str]:
    keys = ["account:" + email.strip().lower()]
    if address:
        keys.append("address:" + address)
    return keys


class SignInThrottle:
    def __init__(self, db: Database, limits: Limits = DEFAULT) -> None:
        self.db, self.limits = db, limits

    def check(self, email: str, address: str | None) -> None:
        """RateLimited (429 with Retry-After) while the account or the address is over its limit."""
        keys = _keys(email, address)
        lims = [self.limits.per_account, self.limits.per_address][: len(keys)]
        with self.db.as_service() as conn:
            wait = sign_in_attempts.wait_seconds(conn, keys, lims, self.limits.window_seconds)
        if wait > 0:
            raise RateLimited("Too many failed sign-in attempts. Wait a while and try again.",
                              code="sign_in_throttled", headers={"Retry-After": str(wait)})

    def failed(self, email: str, address: str | None) -> None:
        with self.db.as_service() as conn:
            sign_in_attempts.record_failure(conn, _keys(email, address), self.limits.window_seconds)

    def succeeded(self, email: str) -> None:
        with self.db.as_service() as conn:
            sign_in_attempts.clear(conn, _keys(email, None)[0])


@dataclass(frozen=True)
class RequestLimit:
    """At most `limit` requests of one kind (`name`) per client address per `window_seconds`; limit 0: no limit."""

    name: str
    limit: int
    window_seconds: int

    def hit(self, db: Database, address: str | None) -> None:
        """Count this request; RateLimited (429 with Retry-After) past the limit, in every worker alike."""
        if self.limit <= 0:
            return
        key = f"{self.name}:address:{address or '-'}"[:300]
        with db.as_service() as conn:
            wait = auth_rate_hits.hit(conn, key, self.limit, self.window_seconds)
        if wait > 0:
            raise RateLimited("Request rate limit reached", code="over_request_rate_limit",
                              headers={"Retry-After": str(wait)})


def request_limit(settings: Any, kind: str) -> RequestLimit:
    """The per-address limit of sign-ups (`signup`: the sign-up page and /auth/v1/signup share one count) or of
    token refreshes (`refresh`), from the settings AUTH_*_RATE_LIMIT / AUTH_*_RATE_WINDOW_SECONDS."""
    if kind == "signup":
        return RequestLimit("signup", settings.auth_signup_rate_limit, settings.auth_signup_rate_window_seconds)
    return RequestLimit("refresh", settings.auth_refresh_rate_limit, settings.auth_refresh_rate_window_seconds)

"""Sign-in throttling per account and per client address, counted in Postgres so every worker and instance
shares one count. Failures only: a correct password is never slowed down by someone else's guesses beyond the
address limit, and a success clears the account's count (not the address's, which an attacker could otherwise
reset with an account of their own)."""

from __future__ import annotations

from dataclasses import dataclass

from webapp.db import Database
from webapp.errors import RateLimited
from webapp.repos import sign_in_attempts


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

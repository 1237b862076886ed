"""Password hashes: argon2id (argon2-cffi) for every new hash; bcrypt hashes made by pgcrypto or GoTrue are still
accepted and upgraded on the next successful sign-in. argon2 reads the whole password, so nothing past 72 bytes
is ignored as bcrypt would."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): about as slow as bcrypt cost 10 on this hardware, and
# light enough that a burst of sign-ins does not exhaust a worker's memory.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the email is unknown, so that answer takes as long as a wrong password.
_DUMMY = _HASHER.hash("not a password: makes unknown emails cost one verification")


def hash_password(password: str) -> str:
    """A fresh argon2id hash (PHC string, as GoTrue also accepts)."""
    return _HASHER.hash(password)


def is_bcrypt(stored: str | None) -> bool:
    return bool(stored) and str(stored).startswith(("$2a$", "$2b$", "$2y$"))


def verify_argon2(stored: str | None, password: str) -> bool:
    """True when `stored` is an argon2 hash of `password`. Anything else (none, bcrypt, garbage) costs one dummy
    verification and is False, so every failure takes about the same time."""
    target = stored if stored and stored.startswith("$argon2") else _DUMMY
    try:
        return _HASHER.verify(target, password) and target is stored
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def burn(password: str) -> None:
    """Spend one verification's time for a path that has nothing to verify (unknown email, existing sign-up)."""
    verify_argon2(None, password)


def needs_rehash(stored: str) -> bool:
    return is_bcrypt(stored) or (stored.startswith("$argon2") and _HASHER.check_needs_rehash(stored))

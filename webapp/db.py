"""Postgres access exactly as PostgREST does it: one transaction per unit of work, the role and the verified
claims set with set_config(..., true), so row-level security is enforced by Postgres itself."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from webapp.errors import Unauthorized

_SET_CONTEXT = (
    "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true),"
    " set_config('statement_timeout', %s, true)"
)


# The principal check of an as_user unit of work, sent with the set_config statement as one simple query (one
# round trip); it runs as `authenticated` with the claims already set, so it may ask only about itself.
_CHECK_PRINCIPAL = "; select public.principal_status(%s::uuid, %s::uuid)"

_REFUSALS = {
    "user_not_found": "This account no longer exists.",
    "user_banned": "This account is suspended.",
    "session_revoked": "This session has ended; sign in again.",
    "invalid_api_key": "The API key is not valid.",
    "api_key_revoked": "This API key has been revoked.",
    "api_key_expired": "This API key has expired.",
}

# A key-authenticated unit of work: the claims are built in SQL for the key's owner (public.api_key_claims checks the
# key and the owner) and set in the same simple query as the role, so the key costs no extra round trip.
_PLACEHOLDER_CLAIMS = json.dumps({"role": "authenticated"})
_CHECK_API_KEY = "; select set_config('request.jwt.claims', public.api_key_claims(%s), true)"


class ApiKeyClaims(dict[str, Any]):
    """The claims of a request authenticated by a personal API key. Empty until the key is resolved, inside the
    request's first round trip (db.as_user, or the gateway's context statement); then the owner's claims with
    `api_key_id`. Reading `sub` before that resolves it on its own (one round trip)."""

    def __init__(self, digest: str, prefix: str, resolve: Callable[[ApiKeyClaims], None]) -> None:
        super().__init__()
        self.digest, self.prefix, self._resolve = digest, prefix, resolve
        self.verdict: dict[str, Any] | None = None

    def __missing__(self, name: str) -> Any:
        if name == "sub" and self.verdict is None:
            self._resolve(self)
            return dict.__getitem__(self, "sub")
        raise KeyError(name)

    def accept(self, verdict: Any) -> dict[str, Any]:
        """Take public.api_key_principal's verdict: the owner's claims, or Unauthorized with the reason."""
        status = check_principal(verdict)
        key = status.get("api_key") or {}
        self.update({"sub": str(status["user_id"]), "role": "authenticated", "aud": "authenticated",
                     "api_key_id": str(key.get("id")), "amr": [{"method": "api_key"}]})
        self.verdict = status
        return status

    def __repr__(self) -> str:  # never the digest
        return f"ApiKeyClaims(prefix={self.prefix!r}, sub={dict.get(self, 'sub')!r})"


def principal_refused(reason: str | None) -> Unauthorized:
    """The 401 for a validly signed token whose user or session is gone (see public.principal_status)."""
    code = reason if reason in _REFUSALS else "user_not_found"
    return Unauthorized(_REFUSALS[code], code=code)


def principal_ids(claims: Mapping[str, Any]) -> tuple[str, str | None]:
    """(user id, session id or None) from verified claims. A session_id that is not a UUID names no session:
    the nil UUID stands in for it, which no session row has, so the check refuses it."""
    sid = claims.get("session_id")
    if sid is None:
        return str(claims["sub"]), None
    try:
        return str(claims["sub"]), str(uuid.UUID(str(sid)))
    except ValueError:
        return str(claims["sub"]), str(uuid.UUID(int=0))


def check_principal(status: Any) -> dict[str, Any]:
    """The principal_status verdict, or Unauthorized when it refuses."""
    if not isinstance(status, dict) or not status.get("ok"):
        raise principal_refused(status.get("reason") if isinstance(status, dict) else None)
    return status


_PREFIX = ("select set_config('role', {r}, true), set_config('request.jwt.claims', {c}, true),"
           " set_config('statement_timeout', {t}, true); ")
_PREFIX_POSITIONAL = _PREFIX.format(r="%s", c="%s", t="%s")
_PREFIX_NAMED = _PREFIX.format(r="%(_sb_role)s", c="%(_sb_claims)s", t="%(_sb_timeout)s")


class OneShot:
    """A stand-in connection for a unit of work that is exactly one statement (the gateway's hot path): the
    role/claims `set_config` and the statement travel together as one simple query, which Postgres runs as one
    implicit transaction — the same context as `_as`, in one round trip instead of four."""

    def __init__(self, conn: psycopg.Connection, role: str, claims: str, timeout: str) -> None:
        self._conn, self._context, self._used = conn, (role, claims, timeout), False

    def execute(self, query: str, params: Any = None) -> psycopg.ClientCursor[Any]:
        if self._used:
            raise RuntimeError("a one-shot unit of work runs exactly one statement")
        self._used = True
        cur = psycopg.ClientCursor(self._conn)
        role, claims, timeout = self._context
        if isinstance(params, Mapping):
            cur.execute(_PREFIX_NAMED + query,
                        {**params, "_sb_role": role, "_sb_claims": claims, "_sb_timeout": timeout})
        else:
            cur.execute(_PREFIX_POSITIONAL + query, [role, claims, timeout, *(params or [])])
        cur.nextset()
        return cur


class Database:
    """A psycopg 3 pool whose connections are only ever used inside as_user/as_service/as_anon transactions."""

    def __init__(self, url: str, min_size: int = 1, max_size: int = 10, statement_timeout: str = "15s") -> None:
        # prepare_threshold=None: Supavisor's transaction pooler cannot carry prepared statements.
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"prepare_threshold": None, "autocommit": True},
            open=False,
            name="switchboard",
        )
        self.statement_timeout = statement_timeout

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def _as(self, role: str, claims: Mapping[str, Any] | str,
            principal: tuple[str, str | None] | None = None,
            api_key: ApiKeyClaims | None = None) -> Iterator[psycopg.Connection]:
        params: list[Any] = [role, claims if isinstance(claims, str) else json.dumps(dict(claims)),
                             self.statement_timeout]
        check, check_params = ((_CHECK_PRINCIPAL, list(principal)) if principal is not None
                               else (_CHECK_API_KEY, [api_key.digest]) if api_key is not None else ("", []))
        for attempt in (1, 2):
            stack = ExitStack()
            try:
                conn = stack.enter_context(self.pool.connection())
                stack.enter_context(conn.transaction())
                if not check:
                    conn.execute(_SET_CONTEXT, params)
                    status = None
                else:
                    # Client-side binding: two statements in one simple query, so one round trip still.
                    cur = psycopg.ClientCursor(conn)
                    cur.execute(_SET_CONTEXT + check, [*params, *check_params])
                    cur.nextset()
                    row = cur.fetchone()
                    status = row[0] if row else None
            except psycopg.OperationalError:
                # A pooled connection that died while idle (e.g. Postgres restarted): nothing has run yet, so
                # hand it back (the pool discards broken connections) and start once more on a fresh one.
                with suppress(psycopg.Error):
                    stack.__exit__(*sys.exc_info())
                if attempt == 2:
                    raise
                self.pool.check()  # its idle siblings likely died too: test them all, drop the dead ones
                continue
            with stack:
                if principal is not None:
                    check_principal(status)  # raising here rolls the transaction back
                elif api_key is not None:
                    api_key.accept(json.loads(status or "{}").get("api_key_verdict"))
                yield conn
            return

    def as_user(self, claims: Mapping[str, Any]) -> Any:
        """A transaction as `authenticated` with these (already verified) JWT claims. The same round trip that
        sets them checks the principal: a deleted, banned or signed-out user's token is Unauthorized here. With
        ApiKeyClaims, that round trip builds the owner's claims from the key in SQL (and fills `claims`)."""
        if isinstance(claims, ApiKeyClaims):
            return self._as("authenticated", _PLACEHOLDER_CLAIMS, api_key=claims)
        if not claims.get("sub"):
            raise ValueError("as_user needs verified claims with a sub")
        return self._as("authenticated", {**claims, "role": "authenticated"}, principal_ids(claims))

    @contextmanager
    def service_statement(self) -> Iterator[OneShot]:
        """One statement as `service_role` in one round trip (see OneShot). Callers retry on OperationalError
        only where the statement is idempotent."""
        try:
            with self.pool.connection() as conn:
                yield OneShot(conn, "service_role", json.dumps({"role": "service_role"}), self.statement_timeout)
        except psycopg.OperationalError:
            self.pool.check()  # drop the pool's other dead connections before the caller retries
            raise

    def as_service(self) -> Any:
        """A transaction as `service_role` (bypasses RLS): system work only, never on a user's behalf by default."""
        return self._as("service_role", {"role": "service_role"})

    def as_anon(self) -> Any:
        """A transaction as `anon`, for public reads such as pricing."""
        return self._as("anon", {"role": "anon"})

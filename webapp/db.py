"""Postgres access exactly as PostgREST does it: one transaction per unit of work, the role and the verified
claims set with set_config(..., true), so row-level security is enforced by Postgres itself."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

_SET_CONTEXT = (
    "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true),"
    " set_config('statement_timeout', %s, true)"
)


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
    def _as(self, role: str, claims: Mapping[str, Any]) -> Iterator[psycopg.Connection]:
        params = [role, json.dumps(dict(claims)), self.statement_timeout]
        for attempt in (1, 2):
            stack = ExitStack()
            try:
                conn = stack.enter_context(self.pool.connection())
                stack.enter_context(conn.transaction())
                conn.execute(_SET_CONTEXT, params)
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
                yield conn
            return

    def as_user(self, claims: Mapping[str, Any]) -> Any:
        """A transaction as `authenticated` with these (already verified) JWT claims."""
        if not claims.get("sub"):
            raise ValueError("as_user needs verified claims with a sub")
        return self._as("authenticated", {**claims, "role": "authenticated"})

    def as_service(self) -> Any:
        """A transaction as `service_role` (bypasses RLS): system work only, never on a user's behalf by default."""
        return self._as("service_role", {"role": "service_role"})

    def as_anon(self) -> Any:
        """A transaction as `anon`, for public reads such as pricing."""
        return self._as("anon", {"role": "anon"})

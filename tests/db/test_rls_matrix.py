"""The row-level security matrix, proven by running real statements under the real roles (db.as_anon, db.as_user,
db.as_service), never by reading pg_policies.

Every cell is one transaction: an optional preparation step run as service_role, then the statement under test as
the acting role, then a deliberate rollback, so no cell changes the shared database. The rows the cells act on are
created once per module (committed) and removed at the end.

Cell = table x actor x operation x target row. Outcomes:
    +  allowed       the statement saw / changed the target row (exactly one row)
    0  zero rows     no error, but the row is invisible to the actor (RLS `using` filtered it)
    X  denied 42501  permission denied: the role has no grant (checked before any policy runs)
    R  denied 42501  new row violates row-level security policy (a `with check` refused the row)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from webapp.db import Database
from webapp.repos import users as users_repo

ALLOWED = "allowed"
ZERO = "zero rows"
DENIED = "denied 42501"
RLS = "denied 42501 (new row violates row-level security policy)"
CODES = {"+": ALLOWED, "0": ZERO, "X": DENIED, "R": RLS}

ACTORS = ("anon", "userA", "userB", "admin", "service")
OPERATIONS = ("select", "insert", "update", "delete")


@dataclass(frozen=True)
class Spec:
    """How to run each operation against one target row of a table. `%(key)s` is the target row's key;
    `%(user)s` the user who owns (or is recorded on) the target row; `%(fresh)s` / `%(slug)s` / `%(model)s` are
    unique per cell. `prep` maps an operation to SQL run as service_role first, inside the same transaction."""

    targets: tuple[str, ...]
    select: str
    insert: str
    update: str
    delete: str
    prep: dict[str, str] = field(default_factory=dict)


SPECS: dict[str, Spec] = {
    # Targets: a provider that is enabled, and one disabled for the duration of this module.
    "llm_providers": Spec(
        targets=("enabled", "disabled"),
        select="select 1 from public.llm_providers where id = %(key)s",
        insert="insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled)"
               " values (%(slug)s, 'RLS test', 'openai', 'https://rls.example.test/v1', 'm', %(enabled)s)",
        update="update public.llm_providers set name = name || ' (rls)' where id = %(key)s",
        delete="delete from public.llm_providers where id = %(key)s",
    ),
    # Targets: a rate of the enabled provider, and a rate of the disabled provider.
    "llm_model_rates": Spec(
        targets=("enabled", "disabled"),
        select="select 1 from public.llm_model_rates where id = %(key)s",
        insert="insert into public.llm_model_rates (provider_id, model, input_rate, output_rate)"
               " values (%(provider)s, %(model)s, 1, 1)",
        update="update public.llm_model_rates set input_rate = input_rate + 1 where id = %(key)s",
        delete="delete from public.llm_model_rates where id = %(key)s",
    ),
    # Targets: admin keys recorded as created by A and by B (ownership must give a non-admin nothing).
    "llm_admin_keys": Spec(
        targets=("A", "B"),
        select="select 1 from public.llm_admin_keys where id = %(key)s",
        insert="insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, active, created_by)"
               " values (%(key_provider)s, 'rls-ciphertext', 'k1', 'abcd', false, %(user)s)",
        update="update public.llm_admin_keys set label = 'rls' where id = %(key)s",
        delete="delete from public.llm_admin_keys where id = %(key)s",
    ),
    # One row per user (primary key user_id): an insert needs the target's existing row gone first.
    "user_preferences": Spec(
        targets=("A", "B"),
        select="select 1 from public.user_preferences where user_id = %(key)s",
        insert="insert into public.user_preferences (user_id, first_name) values (%(user)s, 'New')",
        update="update public.user_preferences set first_name = 'Changed' where user_id = %(key)s",
        delete="delete from public.user_preferences where user_id = %(key)s",
        prep={"insert": "delete from public.user_preferences where user_id = %(user)s"},
    ),
    "user_provider_keys": Spec(
        targets=("A", "B"),
        select="select 1 from public.user_provider_keys where id = %(key)s",
        insert="insert into public.user_provider_keys (user_id, provider_id, ciphertext, key_id, last4)"
               " values (%(user)s, %(spare_provider)s, 'rls-ciphertext', 'k1', 'abcd')",
        update="update public.user_provider_keys set priority = priority + 1 where id = %(key)s",
        delete="delete from public.user_provider_keys where id = %(key)s",
    ),
    # One row per user, and service_role may not delete: the module removes A's and B's account rows at set-up
    # (superuser), and every cell except insert first creates the target's row as service_role.
    "credit_accounts": Spec(
        targets=("A", "B"),
        select="select 1 from public.credit_accounts where user_id = %(key)s",
        insert="insert into public.credit_accounts (user_id, balance) values (%(user)s, 0)",
        update="update public.credit_accounts set balance = balance + 1 where user_id = %(key)s",
        delete="delete from public.credit_accounts where user_id = %(key)s",
        prep={op: "insert into public.credit_accounts (user_id, balance) values (%(user)s, 7)"
              for op in ("select", "update", "delete")},
    ),
    "credit_ledger": Spec(
        targets=("A", "B"),
        select="select 1 from public.credit_ledger where id = %(key)s",
        insert="insert into public.credit_ledger (user_id, kind, delta, balance_after)"
               " values (%(user)s, 'grant', 1, 1)",
        update="update public.credit_ledger set reason = 'rls' where id = %(key)s",
        delete="delete from public.credit_ledger where id = %(key)s",
    ),
    "credit_reservations": Spec(
        targets=("A", "B"),
        select="select 1 from public.credit_reservations where request_id = %(key)s",
        insert="insert into public.credit_reservations (request_id, user_id, amount) values (%(fresh)s, %(user)s, 1)",
        update="update public.credit_reservations set closed_at = now() where request_id = %(key)s",
        delete="delete from public.credit_reservations where request_id = %(key)s",
    ),
    "llm_request_logs": Spec(
        targets=("A", "B"),
        select="select 1 from public.llm_request_logs where id = %(key)s",
        insert="insert into public.llm_request_logs (request_id, user_id, mode, status)"
               " values (%(fresh)s, %(user)s, 'member', 200)",
        update="update public.llm_request_logs set latency_ms = latency_ms + 1 where id = %(key)s",
        delete="delete from public.llm_request_logs where id = %(key)s",
    ),
    # Targets: audit rows whose actor is A and B (being the actor must give a non-admin nothing).
    "admin_audit_log": Spec(
        targets=("A", "B"),
        select="select 1 from public.admin_audit_log where id = %(key)s",
        insert="insert into public.admin_audit_log (actor_id, action) values (%(user)s, 'rls.test')",
        update="update public.admin_audit_log set target = 'rls' where id = %(key)s",
        delete="delete from public.admin_audit_log where id = %(key)s",
    ),
    # Gateway limits: only the service role (gateway_admit) reads or writes them.
    "rate_limit_windows": Spec(
        targets=("A", "B"),
        select="select 1 from public.rate_limit_windows where user_id = %(key)s",
        insert="insert into public.rate_limit_windows (user_id, window_start, count) values (%(user)s, now(), 1)",
        update="update public.rate_limit_windows set count = count + 1 where user_id = %(key)s",
        delete="delete from public.rate_limit_windows where user_id = %(key)s",
        prep={"insert": "delete from public.rate_limit_windows where user_id = %(user)s"},
    ),
    "active_streams": Spec(
        targets=("A", "B"),
        select="select 1 from public.active_streams where request_id = %(key)s",
        insert="insert into public.active_streams (request_id, user_id) values (%(fresh)s, %(user)s)",
        update="update public.active_streams set started_at = now() where request_id = %(key)s",
        delete="delete from public.active_streams where request_id = %(key)s",
    ),
    # Failed sign-in counts (per account, per address): only the service role (the sign-in throttle).
    "sign_in_attempts": Spec(
        targets=("row",),
        select="select 1 from public.sign_in_attempts where key = %(key)s",
        insert="insert into public.sign_in_attempts (key, window_start, failures) values (%(fresh)s, now(), 1)",
        update="update public.sign_in_attempts set failures = failures + 1 where key = %(key)s",
        delete="delete from public.sign_in_attempts where key = %(key)s",
    ),
    # Request counts of the local Supabase Auth API (sign-ups, refreshes per address): only the service role.
    "auth_rate_hits": Spec(
        targets=("row",),
        select="select 1 from public.auth_rate_hits where key = %(key)s",
        insert="insert into public.auth_rate_hits (key, window_end, hits) values (%(fresh)s, now(), 1)",
        update="update public.auth_rate_hits set hits = hits + 1 where key = %(key)s",
        delete="delete from public.auth_rate_hits where key = %(key)s",
    ),
    # One-time password reset links (a keyed hash of the token, never the token): only the service role; a user
    # cannot even see that a link for their own account exists.
    "password_reset_links": Spec(
        targets=("A", "B"),
        select="select 1 from public.password_reset_links where id = %(key)s",
        insert="insert into public.password_reset_links (user_id, token_hash) values (%(user)s, %(fresh_bytes)s)",
        update="update public.password_reset_links set used_at = now() where id = %(key)s",
        delete="delete from public.password_reset_links where id = %(key)s",
    ),
    # The "must change the one-time password" flag: only the service role (the settings page asks as it).
    "password_change_required": Spec(
        targets=("A", "B"),
        select="select 1 from public.password_change_required where user_id = %(key)s",
        insert="insert into public.password_change_required (user_id) values (%(user)s)",
        update="update public.password_change_required set since = now() where user_id = %(key)s",
        delete="delete from public.password_change_required where user_id = %(key)s",
        prep={"insert": "delete from public.password_change_required where user_id = %(user)s"},
    ),
    # Personal API keys: the owner (and admins) read the metadata; every write goes through the app as the service
    # role; nobody deletes (revoking is a soft delete, so the logs keep the key's name).
    "api_keys": Spec(
        targets=("A", "B"),
        select="select 1 from public.api_keys where id = %(key)s",
        insert="insert into public.api_keys (user_id, name, prefix, hash) values (%(user)s, 'rls',"
               " substr(md5(%(fresh)s), 1, 12), encode(sha256(convert_to(%(fresh)s, 'UTF8')), 'hex'))",
        update="update public.api_keys set name = 'rls renamed' where id = %(key)s",
        delete="delete from public.api_keys where id = %(key)s",
    ),
    # Receipt rows the log table refused, kept aside by the log writer: only the service role, append-only.
    "request_log_rejects": Spec(
        targets=("row",),
        select="select 1 from public.request_log_rejects where id = %(key)s",
        insert="insert into public.request_log_rejects (request_id, row_data, reason)"
               " values (%(fresh)s, '{}'::jsonb, 'rls')",
        update="update public.request_log_rejects set reason = 'x' where id = %(key)s",
        delete="delete from public.request_log_rejects where id = %(key)s",
    ),
    # What an admin change did to a user's routing (issue 11): the owner reads and dismisses; the app writes.
    "user_notices": Spec(
        targets=("A", "B"),
        select="select 1 from public.user_notices where id = %(key)s",
        insert="insert into public.user_notices (user_id, kind, message) values (%(user)s, 'rls.test', 'rls')",
        update="update public.user_notices set dismissed_at = now() where id = %(key)s",
        delete="delete from public.user_notices where id = %(key)s",
    ),
    # The single-row catalog counter: read by service_role, written only by its security-definer trigger.
    "catalog_version": Spec(
        targets=("singleton",),
        select="select 1 from public.catalog_version where id = %(key)s",
        insert="insert into public.catalog_version (id, version) values (true, 1)",
        update="update public.catalog_version set version = version + 1 where id = %(key)s",
        delete="delete from public.catalog_version where id = %(key)s",
    ),
    # The single row of credit settings: every signed-in user reads the display columns (the page shows the
    # balance's money value and the low-balance warning); the app writes it as service_role for admins.
    "site_settings": Spec(
        targets=("singleton",),
        select="select 1 from public.site_settings where id = %(key)s",
        insert="insert into public.site_settings (id) values (true)",
        update="update public.site_settings set low_balance_threshold = low_balance_threshold + 1"
               " where id = %(key)s",
        delete="delete from public.site_settings where id = %(key)s",
    ),
}

# The expected outcome of every cell. Each string is "select insert update delete", one character per target in
# SPECS[table].targets order (legend in the module docstring). userA's own rows are target A, userB's target B.
EXPECTED: dict[str, dict[str, str]] = {
    "llm_providers": {              # enabled, disabled; only admins create and delete (issue 11), through RLS
        "anon":    "+0 XX XX XX",
        "userA":   "+0 RR 00 00",
        "userB":   "+0 RR 00 00",
        "admin":   "++ ++ ++ ++",
        "service": "++ ++ ++ ++",
    },
    "llm_model_rates": {            # rate of the enabled provider, rate of the disabled provider
        "anon":    "+0 XX XX XX",
        "userA":   "+0 RR 00 00",
        "userB":   "+0 RR 00 00",
        "admin":   "++ ++ ++ ++",
        "service": "++ ++ ++ ++",
    },
    "llm_admin_keys": {             # created by A, created by B; keys are revoked (kept), never deleted
        "anon":    "XX XX XX XX",
        "userA":   "00 RR 00 XX",
        "userB":   "00 RR 00 XX",
        "admin":   "++ ++ ++ XX",
        "service": "++ ++ ++ ++",
    },
    "user_preferences": {           # A's row, B's row; no delete grant for authenticated
        "anon":    "XX XX XX XX",
        "userA":   "+0 +R +0 XX",
        "userB":   "0+ R+ 0+ XX",
        "admin":   "00 RR 00 XX",
        "service": "++ ++ ++ ++",
    },
    "user_provider_keys": {         # A's key, B's key
        "anon":    "XX XX XX XX",
        "userA":   "+0 +R +0 +0",
        "userB":   "0+ R+ 0+ 0+",
        "admin":   "00 RR 00 00",
        "service": "++ ++ ++ ++",
    },
    "credit_accounts": {            # writes only through the credits_* functions; no deletes at all
        "anon":    "XX XX XX XX",
        "userA":   "+0 XX XX XX",
        "userB":   "0+ XX XX XX",
        "admin":   "++ XX XX XX",
        "service": "++ ++ ++ XX",
    },
    "credit_ledger": {              # append-only, even for service_role
        "anon":    "XX XX XX XX",
        "userA":   "+0 XX XX XX",
        "userB":   "0+ XX XX XX",
        "admin":   "++ XX XX XX",
        "service": "++ ++ XX XX",
    },
    "credit_reservations": {
        "anon":    "XX XX XX XX",
        "userA":   "+0 XX XX XX",
        "userB":   "0+ XX XX XX",
        "admin":   "++ XX XX XX",
        "service": "++ ++ ++ XX",
    },
    "llm_request_logs": {           # receipts: append-only
        "anon":    "XX XX XX XX",
        "userA":   "+0 XX XX XX",
        "userB":   "0+ XX XX XX",
        "admin":   "++ XX XX XX",
        "service": "++ ++ XX XX",
    },
    "admin_audit_log": {            # actor A, actor B; append-only
        "anon":    "XX XX XX XX",
        "userA":   "00 XX XX XX",
        "userB":   "00 XX XX XX",
        "admin":   "++ XX XX XX",
        "service": "++ ++ XX XX",
    },
    "rate_limit_windows": {         # service role only
        "anon":    "XX XX XX XX",
        "userA":   "XX XX XX XX",
        "userB":   "XX XX XX XX",
        "admin":   "XX XX XX XX",
        "service": "++ ++ ++ ++",
    },
    "active_streams": {             # service role only
        "anon":    "XX XX XX XX",
        "userA":   "XX XX XX XX",
        "userB":   "XX XX XX XX",
        "admin":   "XX XX XX XX",
        "service": "++ ++ ++ ++",
    },
    "sign_in_attempts": {           # service role only
        "anon":    "X X X X",
        "userA":   "X X X X",
        "userB":   "X X X X",
        "admin":   "X X X X",
        "service": "+ + + +",
    },
    "auth_rate_hits": {             # service role only
        "anon":    "X X X X",
        "userA":   "X X X X",
        "userB":   "X X X X",
        "admin":   "X X X X",
        "service": "+ + + +",
    },
    "password_reset_links": {       # service role only, even for the link's own user
        "anon":    "XX XX XX XX",
        "userA":   "XX XX XX XX",
        "userB":   "XX XX XX XX",
        "admin":   "XX XX XX XX",
        "service": "++ ++ ++ ++",
    },
    "password_change_required": {   # service role only
        "anon":    "XX XX XX XX",
        "userA":   "XX XX XX XX",
        "userB":   "XX XX XX XX",
        "admin":   "XX XX XX XX",
        "service": "++ ++ ++ ++",
    },
    "api_keys": {                   # A's key, B's key: metadata to its owner and admins; writes by the app only
        "anon":    "XX XX XX XX",
        "userA":   "+0 XX XX XX",
        "userB":   "0+ XX XX XX",
        "admin":   "++ XX XX XX",
        "service": "++ ++ ++ XX",
    },
    "request_log_rejects": {        # service role only, append-only
        "anon":    "X X X X",
        "userA":   "X X X X",
        "userB":   "X X X X",
        "admin":   "X X X X",
        "service": "+ + X X",
    },
    "user_notices": {               # A's notice, B's notice: the owner reads and dismisses, nothing else
        "anon":    "XX XX XX XX",
        "userA":   "+0 XX +0 XX",
        "userB":   "0+ XX 0+ XX",
        "admin":   "00 XX 00 XX",
        "service": "++ ++ ++ ++",
    },
    "catalog_version": {            # singleton
        "anon":    "X X X X",
        "userA":   "X X X X",
        "userB":   "X X X X",
        "admin":   "X X X X",
        "service": "+ X X X",
    },
    "site_settings": {              # singleton: display columns to authenticated; written only as service_role
        "anon":    "X X X X",
        "userA":   "+ X X X",
        "userB":   "+ X X X",
        "admin":   "+ X X X",
        "service": "+ X + X",
    },
}

# Cells whose failure is a known migration defect, explained in the assertion message (never skipped).
KNOWN_DEFECTS: dict[tuple[str, str], str] = {
    ("llm_model_rates", "disabled"): (
        "MIGRATION BUG (20261123000200_providers.sql): the select policies on llm_model_rates are `using (true)`, "
        "so anon and every signed-in user read the rates of disabled providers. They must follow the provider's "
        "`enabled` flag like llm_providers does (admins still see everything)."
    ),
}


def _cells() -> list[Any]:
    cells = []
    for table, spec in SPECS.items():
        for actor in ACTORS:
            groups = EXPECTED[table][actor].split()
            assert len(groups) == len(OPERATIONS), (table, actor)
            for op, group in zip(OPERATIONS, groups, strict=True):
                assert len(group) == len(spec.targets), (table, actor, op)
                for target, code in zip(spec.targets, group, strict=True):
                    cells.append(pytest.param(table, actor, op, target, CODES[code],
                                              id=f"{table}-{actor}-{op}-{target}"))
    return cells


CELLS = _cells()


class _Undo(Exception):
    """Raised inside a cell's transaction to roll it back after recording what happened."""

    def __init__(self, rows: int) -> None:
        super().__init__(rows)
        self.rows = rows


@dataclass
class World:
    db: Database
    claims: dict[str, dict[str, Any]]      # actor -> verified claims (userA, userB, admin)
    user_ids: dict[str, str]               # "A", "B", "admin" -> auth.users id
    providers: dict[str, str]              # "enabled", "disabled", "spare" -> llm_providers id
    keys: dict[tuple[str, str], Any]       # (table, target) -> key of the target row


def claims_for(user: users_repo.AuthUser) -> dict[str, Any]:
    """The claims a verified access token for this user carries (as tests/conftest.py builds them)."""
    return {"sub": user.id, "email": user.email, "role": "authenticated", "aud": "authenticated",
            "app_metadata": user.app_metadata, "user_metadata": user.user_metadata}


def new_user(db: Database, admin: bool = False) -> users_repo.AuthUser:
    with db.as_service() as conn:
        return users_repo.create(conn, f"rls-{uuid.uuid4().hex[:12]}@example.test", "correct horse battery",
                                 admin=admin)


@contextmanager
def acting(world: World, actor: str) -> Iterator[psycopg.Connection]:
    if actor == "anon":
        cm = world.db.as_anon()
    elif actor == "service":
        cm = world.db.as_service()
    else:
        cm = world.db.as_user(world.claims[actor])
    with cm as conn:
        yield conn


def prepare_as_service(conn: psycopg.Connection, statement: str, params: dict[str, Any]) -> None:
    """Run set-up SQL as service_role inside the acting transaction, then switch back to the acting role."""
    role = conn.execute("select current_user").fetchone()[0]  # type: ignore[index]
    conn.execute("select set_config('role', 'service_role', true)")
    conn.execute(statement, params)
    conn.execute("select set_config('role', %s, true)", [role])
    assert conn.execute("select current_user").fetchone()[0] == role  # type: ignore[index]


def classify_error(exc: psycopg.Error) -> str:
    if exc.sqlstate == "42501":
        return RLS if "row-level security" in str(exc) else DENIED
    return f"unexpected error {exc.sqlstate}: {exc}"


def classify_rows(rows: int) -> str:
    return {1: ALLOWED, 0: ZERO}.get(rows, f"{rows} rows")


def attempt(world: World, actor: str, statement: str, params: dict[str, Any], *, prep: str | None = None,
            fetch: bool = False) -> str:
    """Run one statement as `actor` in a transaction that is always rolled back; describe the outcome."""
    try:
        with acting(world, actor) as conn:
            if prep:
                prepare_as_service(conn, prep, params)
            cur = conn.execute(statement, params)
            raise _Undo(len(cur.fetchall()) if fetch else cur.rowcount)
    except _Undo as undo:
        return classify_rows(undo.rows)
    except psycopg.Error as exc:
        return classify_error(exc)


def cell_params(world: World, table: str, target: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "key": world.keys[(table, target)],
        "fresh": str(uuid.uuid4()),
        "fresh_bytes": uuid.uuid4().bytes,
        "slug": f"rls-{uuid.uuid4().hex[:10]}",
        "model": f"rls-model-{uuid.uuid4().hex[:10]}",
        "spare_provider": world.providers["spare"],
        "key_provider": world.providers["disabled"],
    }
    if target in ("A", "B"):
        params["user"] = world.user_ids[target]
    if target in ("enabled", "disabled"):
        params["provider"] = world.providers[target]
        params["enabled"] = target == "enabled"
    return params


@pytest.fixture(scope="module")
def world(db: Database, database_urls: tuple[str, str]) -> Iterator[World]:
    """Users A, B and an admin; one row of A and one of B in every per-user table; a disabled provider."""
    a, b, adm = new_user(db), new_user(db), new_user(db, admin=True)
    ids = {"A": a.id, "B": b.id, "admin": adm.id}
    keys: dict[tuple[str, str], Any] = {("catalog_version", "singleton"): True, ("site_settings", "singleton"): True,
                                        ("sign_in_attempts", "row"): f"account:rls-{uuid.uuid4().hex[:8]}@x.test",
                                        ("auth_rate_hits", "row"): f"signup:address:rls-{uuid.uuid4().hex[:8]}"}
    audit_ids: list[int] = []
    admin_key_ids: list[str] = []
    with psycopg.connect(database_urls[0], autocommit=True) as su:
        prov = dict(su.execute("select slug, id::text from public.llm_providers").fetchall())
        was_enabled = su.execute("select enabled from public.llm_providers where slug = 'ollama'").fetchone()[0]
        su.execute("update public.llm_providers set enabled = false where slug = 'ollama'")
        su.execute("insert into public.sign_in_attempts (key, window_start, failures) values (%s, now(), 1)",
                   [keys[("sign_in_attempts", "row")]])
        su.execute("insert into public.auth_rate_hits (key, window_end, hits) values (%s, now(), 1)",
                   [keys[("auth_rate_hits", "row")]])
        keys[("request_log_rejects", "row")] = su.execute(
            "insert into public.request_log_rejects (request_id, row_data, reason)"
            " values (gen_random_uuid(), '{}'::jsonb, 'rls') returning id").fetchone()[0]
        providers = {"enabled": prov["openai"], "disabled": prov["ollama"], "spare": prov["anthropic"]}
        for target in ("enabled", "disabled"):
            keys[("llm_providers", target)] = providers[target]
            keys[("llm_model_rates", target)] = su.execute(
                "select id::text from public.llm_model_rates where provider_id = %s order by model limit 1",
                [providers[target]]).fetchone()[0]
        for target in ("A", "B"):
            uid = ids[target]
            key_id = su.execute(
                "insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label, active, created_by)"
                " values (%s, 'rls-admin-ciphertext', 'k1', 'wxyz', 'rls matrix', false, %s) returning id::text",
                [providers["disabled"], uid]).fetchone()[0]
            admin_key_ids.append(key_id)
            keys[("llm_admin_keys", target)] = key_id
            keys[("user_preferences", target)] = uid
            keys[("user_provider_keys", target)] = su.execute(
                "insert into public.user_provider_keys (user_id, provider_id, ciphertext, key_id, last4)"
                " values (%s, %s, 'rls-user-ciphertext', 'k1', 'wxyz') returning id::text",
                [uid, providers["enabled"]]).fetchone()[0]
            su.execute("delete from public.credit_accounts where user_id = %s", [uid])
            keys[("credit_accounts", target)] = uid
            keys[("credit_ledger", target)] = su.execute(
                "insert into public.credit_ledger (user_id, kind, delta, balance_after, reason)"
                " values (%s, 'grant', 5, 5, 'rls matrix') returning id", [uid]).fetchone()[0]
            request_id = str(uuid.uuid4())
            su.execute("insert into public.credit_reservations (request_id, user_id, amount) values (%s, %s, 3)",
                       [request_id, uid])
            keys[("credit_reservations", target)] = request_id
            keys[("llm_request_logs", target)] = su.execute(
                "insert into public.llm_request_logs (request_id, user_id, mode, status)"
                " values (%s, %s, 'member', 200) returning id::text", [str(uuid.uuid4()), uid]).fetchone()[0]
            audit_id = su.execute("insert into public.admin_audit_log (actor_id, action, target)"
                                  " values (%s, 'rls.fixture', 'rls matrix') returning id", [uid]).fetchone()[0]
            audit_ids.append(audit_id)
            keys[("admin_audit_log", target)] = audit_id
            su.execute("insert into public.rate_limit_windows (user_id, window_start, count) values (%s, now(), 1)"
                       " on conflict (user_id) do nothing", [uid])
            keys[("rate_limit_windows", target)] = uid
            stream_id = str(uuid.uuid4())
            su.execute("insert into public.active_streams (request_id, user_id) values (%s, %s)", [stream_id, uid])
            keys[("active_streams", target)] = stream_id
            keys[("password_reset_links", target)] = su.execute(
                "insert into public.password_reset_links (user_id, token_hash) values (%s, %s) returning id::text",
                [uid, uuid.uuid4().bytes]).fetchone()[0]
            su.execute("insert into public.password_change_required (user_id) values (%s)", [uid])
            keys[("password_change_required", target)] = uid
            keys[("user_notices", target)] = su.execute(
                "insert into public.user_notices (user_id, kind, message) values (%s, 'rls.fixture', 'rls matrix')"
                " returning id::text", [uid]).fetchone()[0]
            keys[("api_keys", target)] = su.execute(
                "insert into public.api_keys (user_id, name, prefix, hash) values (%s, 'rls matrix', %s, %s)"
                " returning id::text", [uid, uuid.uuid4().hex[:12], uuid.uuid4().hex * 2]).fetchone()[0]
    claims = {"userA": claims_for(a), "userB": claims_for(b), "admin": claims_for(adm)}
    try:
        yield World(db, claims, ids, providers, keys)
    finally:
        with psycopg.connect(database_urls[0], autocommit=True) as su:
            su.execute("delete from public.admin_audit_log where id = any(%s)", [audit_ids])
            su.execute("delete from public.llm_admin_keys where id = any(%s::uuid[])", [admin_key_ids])
            su.execute("delete from auth.users where id = any(%s::uuid[])", [list(ids.values())])
            su.execute("update public.llm_providers set enabled = %s where slug = 'ollama'", [was_enabled])


@pytest.mark.parametrize(("table", "actor", "op", "target", "expected"), CELLS)
def test_rls_cell(world: World, table: str, actor: str, op: str, target: str, expected: str) -> None:
    spec = SPECS[table]
    params = cell_params(world, table, target)
    got = attempt(world, actor, getattr(spec, op), params, prep=spec.prep.get(op), fetch=op == "select")
    note = KNOWN_DEFECTS.get((table, target), "") if got != expected else ""
    assert got == expected, f"{op} on {table} ({target} row) as {actor}: expected {expected!r}, got {got!r}. {note}"


def test_matrix_size() -> None:
    """The matrix is table x actor x operation x target; keep the count visible when tables are added."""
    assert len(CELLS) == sum(len(s.targets) for s in SPECS.values()) * len(ACTORS) * len(OPERATIONS)
    assert len(CELLS) == 740


# --- Columns no `authenticated` caller may ever read: the encrypted keys -------------------------------------------

CIPHERTEXT_CELLS = [
    pytest.param(table, expr, actor, ALLOWED if actor == "service" else DENIED, id=f"{table}-{name}-{actor}")
    for table in ("llm_admin_keys", "user_provider_keys")
    for expr, name in (("ciphertext", "ciphertext"), ("*", "star"))
    for actor in ACTORS
]


@pytest.mark.parametrize(("table", "expr", "actor", "expected"), CIPHERTEXT_CELLS)
def test_ciphertext_never_selectable_by_api_roles(world: World, table: str, expr: str, actor: str,
                                                  expected: str) -> None:
    # A's own row: for user_provider_keys userA is the owner, for llm_admin_keys the admin is allowed the row.
    params = {"key": world.keys[(table, "A")]}
    got = attempt(world, actor, f"select {expr} from public.{table} where id = %(key)s", params, fetch=True)
    assert got == expected, f"select {expr} from {table} as {actor}: expected {expected!r}, got {got!r}"


# --- Site settings: the sign-up grant and who changed the row are the admins' (read by the app as service_role) --

DISPLAY_COLUMNS = ("currency_symbol, credit_value", "low_balance_threshold")
SITE_SETTINGS_CELLS = [
    pytest.param(expr, actor, ALLOWED if actor == "service" or (actor != "anon" and expr in DISPLAY_COLUMNS)
                 else DENIED, id=f"site_settings-{expr}-{actor}")
    for expr in ("signup_grant", "updated_by", "updated_at", "*", "currency_symbol, credit_value",
                 "low_balance_threshold")
    for actor in ACTORS
]


@pytest.mark.parametrize(("expr", "actor", "expected"), SITE_SETTINGS_CELLS)
def test_site_settings_columns(world: World, expr: str, actor: str, expected: str) -> None:
    got = attempt(world, actor, f"select {expr} from public.site_settings where id", {}, fetch=True)
    assert got == expected, f"select {expr} from site_settings as {actor}: expected {expected!r}, got {got!r}"


# --- A personal API key's hash: the service role's only; key claims never carry admin rights ----------------------

@pytest.mark.parametrize(("expr", "actor"), [(e, a) for e in ("hash", "*") for a in ACTORS])
def test_api_key_hash_never_selectable_by_api_roles(world: World, expr: str, actor: str) -> None:
    params = {"key": world.keys[("api_keys", "A")]}  # A's own key (and the admin may read its metadata)
    got = attempt(world, actor, f"select {expr} from public.api_keys where id = %(key)s", params, fetch=True)
    assert got == (ALLOWED if actor == "service" else DENIED), f"select {expr} from api_keys as {actor}: {got!r}"


def test_admin_key_claims_are_not_admin_under_rls(world: World) -> None:
    """An admin's request made with a personal API key runs as `authenticated` with `api_key_id` in its claims:
    public.is_admin() says no, so the admin-wide policies give it nothing beyond the admin's own rows."""
    key_claims = {**world.claims["admin"], "api_key_id": str(uuid.uuid4())}
    params = {"key": world.keys[("api_keys", "B")]}
    with world.db.as_user(key_claims) as conn:
        assert conn.execute("select public.is_admin()").fetchone() == (False,)
        assert conn.execute("select 1 from public.api_keys where id = %(key)s", params).fetchall() == []
        assert conn.execute("select 1 from public.llm_request_logs where user_id = %s",
                            [world.user_ids["B"]]).fetchall() == []
    with world.db.as_user(world.claims["admin"]) as conn:
        assert conn.execute("select public.is_admin()").fetchone() == (True,)
        assert conn.execute("select 1 from public.api_keys where id = %(key)s", params).fetchall() == [(1,)]


# --- A user cannot hand their own row to someone else --------------------------------------------------------------

def test_owner_cannot_move_preferences_to_another_user(world: World) -> None:
    params = {"key": world.user_ids["A"], "other": world.user_ids["B"]}
    got = attempt(world, "userA", "update public.user_preferences set user_id = %(other)s where user_id = %(key)s",
                  params)
    assert got == RLS


def test_owner_cannot_move_provider_key_to_another_user(world: World) -> None:
    params = {"key": world.keys[("user_provider_keys", "A")], "other": world.user_ids["B"]}
    got = attempt(world, "userA", "update public.user_provider_keys set user_id = %(other)s where id = %(key)s",
                  params)
    assert got == DENIED, "user_id must not be in the update column grant of user_provider_keys"


def test_owner_cannot_insert_a_key_for_another_user_even_with_a_valid_provider(world: World) -> None:
    params = {"user": world.user_ids["B"], "provider": world.providers["spare"]}
    got = attempt(world, "userA", "insert into public.user_provider_keys (user_id, provider_id, ciphertext, key_id,"
                  " last4) values (%(user)s, %(provider)s, 'c', 'k1', 'abcd')", params)
    assert got == RLS


# --- Credit functions: service_role only -------------------------------------------------------------------------

FUNCTION_CALLS = {
    "credits_lock_account": "select public.credits_lock_account(%(user)s)",
    "credits_adjust": "select public.credits_adjust(%(user)s, 1, 'rls', null)",
    "credits_reserve": "select public.credits_reserve(%(user)s, %(fresh)s, 0, null)",
    "credits_settle": "select public.credits_settle(%(reservation)s, 1)",
    "credits_refund": "select public.credits_refund(%(reservation)s)",
}
FUNCTION_CELLS = [
    pytest.param(fn, actor, ALLOWED if actor == "service" else DENIED, id=f"{fn}-{actor}")
    for fn in FUNCTION_CALLS
    for actor in ACTORS
]


@pytest.mark.parametrize(("fn", "actor", "expected"), FUNCTION_CELLS)
def test_credit_functions_execute_only_as_service(world: World, fn: str, actor: str, expected: str) -> None:
    params = {"user": world.user_ids["A"], "fresh": str(uuid.uuid4()),
              "reservation": world.keys[("credit_reservations", "A")]}
    got = attempt(world, actor, FUNCTION_CALLS[fn], params, fetch=True)
    assert got == expected, f"{fn} as {actor}: expected {expected!r}, got {got!r}"


# --- Whole-schema properties -----------------------------------------------------------------------------------------

def public_tables(conn: psycopg.Connection) -> dict[str, bool]:
    rows = conn.execute(
        "select c.relname, c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p')").fetchall()
    return dict(rows)


def test_every_public_table_has_rls_enabled(admin_conn: psycopg.Connection) -> None:
    tables = public_tables(admin_conn)
    assert tables, "no public tables found"
    without = sorted(name for name, enabled in tables.items() if not enabled)
    assert without == [], f"public tables without row level security: {without}"


def test_every_public_table_is_in_the_matrix(admin_conn: psycopg.Connection) -> None:
    from tests.db.test_rollups_rls import ROLLUP_TABLES  # the usage rollups too (own, team, site rows)
    from tests.db.test_teams_rls import TEAM_TABLES  # the team tables have their own matrix (team roles)
    from tests.notify.test_outbox_rls import NOTIFY_TABLES  # the outbox and its job queue (own events only)
    from tests.notify.test_webhooks_rls import WEBHOOK_TABLES  # so have the webhook tables (user, team, site)

    tables = (set(public_tables(admin_conn)) - set(TEAM_TABLES) - set(WEBHOOK_TABLES) - set(ROLLUP_TABLES)
              - set(NOTIFY_TABLES))
    assert tables == set(SPECS), (f"tables missing from the RLS matrix: {sorted(tables - set(SPECS))}; "
                                  f"matrix tables that do not exist: {sorted(set(SPECS) - tables)}")


def test_no_public_views_that_could_bypass_rls(admin_conn: psycopg.Connection) -> None:
    views = admin_conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('v', 'm')"
        " and not coalesce('security_invoker=true' = any(c.reloptions), false)").fetchall()
    assert views == [], f"views in public run with their owner's rights and bypass RLS: {views}"


@pytest.mark.parametrize("actor", ["anon", "userA", "admin"])
def test_api_roles_cannot_read_auth_users(world: World, actor: str) -> None:
    got = attempt(world, actor, "select id from auth.users limit 1", {}, fetch=True)
    assert got == DENIED


def test_service_role_reads_auth_users(world: World) -> None:
    got = attempt(world, "service", "select id from auth.users where id = %(id)s", {"id": world.user_ids["A"]},
                  fetch=True)
    assert got == ALLOWED


def test_user_cannot_change_own_app_metadata(world: World, admin_conn: psycopg.Connection) -> None:
    statement = ("update auth.users set raw_app_meta_data = coalesce(raw_app_meta_data, '{}')"
                 " || jsonb_build_object('role', 'admin') where id = auth.uid()")
    assert attempt(world, "userA", statement, {}) == DENIED
    row = admin_conn.execute("select raw_app_meta_data ->> 'role' from auth.users where id = %s",
                             [world.user_ids["A"]]).fetchone()
    assert row == (None,)


def test_user_metadata_role_does_not_make_an_admin(world: World) -> None:
    """user_metadata is user-editable; only app_metadata.role counts for is_admin()."""
    forged = {**world.claims["userA"], "user_metadata": {"role": "admin"}}
    with world.db.as_user(forged) as conn:
        assert conn.execute("select public.is_admin()").fetchone() == (False,)
        rows = conn.execute("select 1 from public.admin_audit_log where id = %s",
                            [world.keys[("admin_audit_log", "A")]]).fetchall()
    assert rows == []


@pytest.mark.parametrize(("actor", "role", "is_admin"), [
    ("anon", "anon", False), ("userA", "authenticated", False), ("admin", "authenticated", True),
    ("service", "service_role", False),
])
def test_each_actor_runs_as_its_role(world: World, actor: str, role: str, is_admin: bool) -> None:
    with acting(world, actor) as conn:
        row = conn.execute("select current_user, auth.uid()::text, auth.role(), public.is_admin()").fetchone()
    expected_uid = {"userA": world.user_ids["A"], "admin": world.user_ids["admin"]}.get(actor)
    assert row == (role, expected_uid, role, is_admin)

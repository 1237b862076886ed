"""The teams RLS matrix: every team table (and the team rows of credit_reservations and llm_request_logs) x every
role a caller can have towards one team (owner, team admin, member, ex-member, outsider, site admin, anon, and
service_role) x select/insert/update/delete x target row, proven by running real statements under the real roles
(tests/db/test_rls_matrix.py's machinery), plus the columns no API role may read and the management functions'
refusals (a member cannot raise their own cap or grant credits; an ex-member can do nothing)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.db.test_rls_matrix import CODES, DENIED, OPERATIONS, Spec, _Undo, claims_for, classify_error, new_user
from webapp.db import Database

TEAM_ACTORS = ("anon", "owner", "tadmin", "member", "exmember", "outsider", "siteadmin", "service")
TEAM_TABLES = ("teams", "team_members", "team_invitations", "team_credit_accounts", "team_credit_ledger",
               "team_provider_keys")

SPECS: dict[str, Spec] = {
    "teams": Spec(
        targets=("team",),
        select="select 1 from public.teams where id = %(key)s",
        insert="insert into public.teams (name, slug) values ('rls', %(slug)s)",
        update="update public.teams set name = 'rls changed' where id = %(key)s",
        delete="delete from public.teams where id = %(key)s",
    ),
    "team_members": Spec(
        targets=("owner", "member"),
        select="select 1 from public.team_members where team_id = %(team)s and user_id = %(user)s",
        insert="insert into public.team_members (team_id, user_id, role) values (%(team)s, %(outsider)s, 'member')",
        update="update public.team_members set monthly_credit_cap = 999999999 where team_id = %(team)s"
               " and user_id = %(user)s",
        delete="delete from public.team_members where team_id = %(team)s and user_id = %(user)s",
    ),
    "team_invitations": Spec(
        targets=("inv",),
        select="select 1 from public.team_invitations where id = %(key)s",
        insert="insert into public.team_invitations (team_id, hash, expires_at)"
               " values (%(team)s, %(hash)s, now() + interval '1 day')",
        update="update public.team_invitations set revoked_at = now() where id = %(key)s",
        delete="delete from public.team_invitations where id = %(key)s",
    ),
    "team_credit_accounts": Spec(
        targets=("wallet",),
        select="select 1 from public.team_credit_accounts where team_id = %(key)s",
        insert="insert into public.team_credit_accounts (team_id, balance) values (%(fresh)s, 0)",
        update="update public.team_credit_accounts set balance = balance + 1000000 where team_id = %(key)s",
        delete="delete from public.team_credit_accounts where team_id = %(key)s",
        prep={"insert": "insert into public.teams (id, name, slug) values (%(fresh)s, 'rls', %(slug)s)"},
    ),
    "team_credit_ledger": Spec(
        targets=("grant", "member", "owner"),
        select="select 1 from public.team_credit_ledger where id = %(key)s",
        insert="insert into public.team_credit_ledger (team_id, kind, delta, balance_after)"
               " values (%(team)s, 'grant', 1, 1)",
        update="update public.team_credit_ledger set reason = 'rls' where id = %(key)s",
        delete="delete from public.team_credit_ledger where id = %(key)s",
    ),
    "team_provider_keys": Spec(
        targets=("key",),
        select="select 1 from public.team_provider_keys where id = %(key)s",
        insert="insert into public.team_provider_keys (team_id, provider_id, ciphertext, key_id, last4)"
               " values (%(team)s, %(spare_provider)s, 'rls', 'k1', 'abcd')",
        update="update public.team_provider_keys set enabled = false where id = %(key)s",
        delete="delete from public.team_provider_keys where id = %(key)s",
    ),
    "credit_reservations": Spec(  # the team's rows
        targets=("member", "owner"),
        select="select 1 from public.credit_reservations where request_id = %(key)s",
        insert="insert into public.credit_reservations (request_id, user_id, amount, team_id)"
               " values (%(fresh)s, %(user)s, 1, %(team)s)",
        update="update public.credit_reservations set closed_at = now() where request_id = %(key)s",
        delete="delete from public.credit_reservations where request_id = %(key)s",
    ),
    "llm_request_logs": Spec(  # the team's rows
        targets=("member", "owner"),
        select="select 1 from public.llm_request_logs where id = %(key)s",
        insert="insert into public.llm_request_logs (request_id, user_id, mode, status, team_id)"
               " values (%(fresh)s, %(user)s, 'member', 200, %(team)s)",
        update="update public.llm_request_logs set latency_ms = latency_ms + 1 where id = %(key)s",
        delete="delete from public.llm_request_logs where id = %(key)s",
    ),
}

# Per table and actor: one group per operation (select insert update delete), one code per target.
# +: allowed (one row), 0: zero rows (RLS hid it), X: permission denied (no grant).
EXPECTED: dict[str, dict[str, str]] = {
    "teams": {
        "anon": "X X X X", "owner": "+ X X X", "tadmin": "+ X X X", "member": "+ X X X",
        "exmember": "0 X X X", "outsider": "0 X X X", "siteadmin": "+ X X X", "service": "+ + + +",
    },
    "team_members": {
        "anon": "XX XX XX XX", "owner": "++ XX XX XX", "tadmin": "++ XX XX XX", "member": "++ XX XX XX",
        "exmember": "00 XX XX XX", "outsider": "00 XX XX XX", "siteadmin": "++ XX XX XX",
        "service": "++ ++ ++ ++",
    },
    "team_invitations": {
        "anon": "X X X X", "owner": "+ X X X", "tadmin": "+ X X X", "member": "0 X X X",
        "exmember": "0 X X X", "outsider": "0 X X X", "siteadmin": "+ X X X", "service": "+ + + +",
    },
    "team_credit_accounts": {
        "anon": "X X X X", "owner": "+ X X X", "tadmin": "+ X X X", "member": "+ X X X",
        "exmember": "0 X X X", "outsider": "0 X X X", "siteadmin": "+ X X X", "service": "+ + + X",
    },
    "team_credit_ledger": {
        "anon": "XXX XXX XXX XXX", "owner": "+++ XXX XXX XXX", "tadmin": "+++ XXX XXX XXX",
        "member": "++0 XXX XXX XXX", "exmember": "000 XXX XXX XXX", "outsider": "000 XXX XXX XXX",
        "siteadmin": "+++ XXX XXX XXX", "service": "+++ +++ XXX XXX",
    },
    "team_provider_keys": {
        "anon": "X X X X", "owner": "+ X X X", "tadmin": "+ X X X", "member": "+ X X X",
        "exmember": "0 X X X", "outsider": "0 X X X", "siteadmin": "+ X X X", "service": "+ + + +",
    },
    "credit_reservations": {
        "anon": "XX XX XX XX", "owner": "++ XX XX XX", "tadmin": "++ XX XX XX", "member": "+0 XX XX XX",
        "exmember": "00 XX XX XX", "outsider": "00 XX XX XX", "siteadmin": "++ XX XX XX",
        "service": "++ ++ ++ XX",
    },
    "llm_request_logs": {
        "anon": "XX XX XX XX", "owner": "++ XX XX XX", "tadmin": "++ XX XX XX", "member": "+0 XX XX XX",
        "exmember": "00 XX XX XX", "outsider": "00 XX XX XX", "siteadmin": "++ XX XX XX",
        "service": "++ ++ XX XX",
    },
}


def _cells() -> list[Any]:
    cells = []
    for table, spec in SPECS.items():
        for actor in TEAM_ACTORS:
            groups = EXPECTED[table][actor].split()
            assert len(groups) == len(OPERATIONS), (table, actor)
            for op, group in zip(OPERATIONS, groups, strict=True):
                assert len(group) == len(spec.targets), (table, actor, op)
                for target, code in zip(spec.targets, group, strict=True):
                    cells.append(pytest.param(table, actor, op, target, CODES[code],
                                              id=f"{table}-{actor}-{op}-{target}"))
    return cells


CELLS = _cells()


class TeamWorld:
    def __init__(self, db: Database, claims: dict[str, dict[str, Any]], ids: dict[str, str], team: str,
                 keys: dict[tuple[str, str], Any], spare_provider: str) -> None:
        self.db, self.claims, self.ids, self.team, self.keys = db, claims, ids, team, keys
        self.spare_provider = spare_provider


def attempt(world: TeamWorld, actor: str, statement: str, params: dict[str, Any], *, prep: str | None = None,
            fetch: bool = False) -> str:
    try:
        if actor == "anon":
            cm = world.db.as_anon()
        elif actor == "service":
            cm = world.db.as_service()
        else:
            cm = world.db.as_user(world.claims[actor])
        with cm as conn:
            if prep:
                role = conn.execute("select current_user").fetchone()[0]  # type: ignore[index]
                conn.execute("select set_config('role', 'service_role', true)")
                conn.execute(prep, params)
                conn.execute("select set_config('role', %s, true)", [role])
            cur = conn.execute(statement, params)
            raise _Undo(len(cur.fetchall()) if fetch else cur.rowcount)
    except _Undo as undo:
        return {1: CODES["+"], 0: CODES["0"]}.get(undo.rows, f"{undo.rows} rows")
    except psycopg.Error as exc:
        return f"{exc.sqlstate}" if exc.sqlstate not in ("42501",) else classify_error(exc)


@pytest.fixture(scope="module")
def tworld(db: Database, database_urls: tuple[str, str]) -> Iterator[TeamWorld]:
    """One team with an owner, a team admin, a member and an ex-member; an outsider and a site admin; a grant, an
    invitation, a key, and a reservation, ledger row and log row of the member and of the owner."""
    users = {name: new_user(db, admin=name == "siteadmin")
             for name in ("owner", "tadmin", "member", "exmember", "outsider", "siteadmin")}
    ids = {name: u.id for name, u in users.items()}
    team = str(uuid.uuid4())
    keys: dict[tuple[str, str], Any] = {}
    with psycopg.connect(database_urls[0], autocommit=True) as su:
        spare = su.execute("select id::text from public.llm_providers where slug = 'anthropic'").fetchone()[0]
        enabled = su.execute("select id::text from public.llm_providers where slug = 'openai'").fetchone()[0]
        with su.transaction():
            su.execute("insert into public.teams (id, name, slug) values (%s, 'RLS team', %s)",
                       [team, f"rls-{uuid.uuid4().hex[:10]}"])
            for name, role in (("owner", "owner"), ("tadmin", "admin"), ("member", "member"),
                               ("exmember", "member")):
                su.execute("insert into public.team_members (team_id, user_id, role) values (%s, %s, %s)",
                           [team, ids[name], role])
        su.execute("insert into public.team_credit_accounts (team_id, balance) values (%s, 0)", [team])
        keys[("teams", "team")] = team
        keys[("team_credit_accounts", "wallet")] = team
        keys[("team_invitations", "inv")] = su.execute(
            "insert into public.team_invitations (team_id, hash, expires_at) values (%s, %s, now() + interval"
            " '1 day') returning id::text", [team, uuid.uuid4().hex * 2]).fetchone()[0]
        keys[("team_provider_keys", "key")] = su.execute(
            "insert into public.team_provider_keys (team_id, provider_id, ciphertext, key_id, last4, added_by)"
            " values (%s, %s, 'rls-team-ciphertext', 'k1', 'wxyz', %s) returning id::text",
            [team, enabled, ids["owner"]]).fetchone()[0]
        keys[("team_credit_ledger", "grant")] = su.execute(
            "insert into public.team_credit_ledger (team_id, kind, delta, balance_after, reason)"
            " values (%s, 'grant', 5, 5, 'rls') returning id", [team]).fetchone()[0]
        for who in ("member", "owner"):
            keys[("team_credit_ledger", who)] = su.execute(
                "insert into public.team_credit_ledger (team_id, user_id, kind, delta, balance_after)"
                " values (%s, %s, 'reserve', 0, 5) returning id", [team, ids[who]]).fetchone()[0]
            rid = str(uuid.uuid4())
            su.execute("insert into public.credit_reservations (request_id, user_id, amount, team_id)"
                       " values (%s, %s, 0, %s)", [rid, ids[who], team])
            keys[("credit_reservations", who)] = rid
            keys[("llm_request_logs", who)] = su.execute(
                "insert into public.llm_request_logs (request_id, user_id, mode, status, team_id)"
                " values (%s, %s, 'member', 200, %s) returning id::text", [str(uuid.uuid4()), ids[who], team]
            ).fetchone()[0]
        # The ex-member leaves (their old rows stay theirs; the team's are no longer visible to them).
        su.execute("delete from public.team_members where team_id = %s and user_id = %s", [team, ids["exmember"]])
    claims = {name: claims_for(u) for name, u in users.items()}
    try:
        yield TeamWorld(db, claims, ids, team, keys, spare)
    finally:
        with psycopg.connect(database_urls[0], autocommit=True) as su:
            su.execute("delete from public.teams where id = %s", [team])
            su.execute("delete from auth.users where id = any(%s::uuid[])", [list(ids.values())])


def _params(world: TeamWorld, table: str, target: str) -> dict[str, Any]:
    params: dict[str, Any] = {"key": world.keys.get((table, target)), "team": world.team,
                              "fresh": str(uuid.uuid4()), "slug": f"rls-{uuid.uuid4().hex[:10]}",
                              "hash": uuid.uuid4().hex * 2, "outsider": world.ids["outsider"],
                              "spare_provider": world.spare_provider}
    if target in ("owner", "member"):
        params["user"] = world.ids[target]
    else:
        params["user"] = world.ids["member"]
    return params


@pytest.mark.parametrize(("table", "actor", "op", "target", "expected"), CELLS)
def test_team_rls_cell(tworld: TeamWorld, table: str, actor: str, op: str, target: str, expected: str) -> None:
    spec = SPECS[table]
    got = attempt(tworld, actor, getattr(spec, op), _params(tworld, table, target), prep=spec.prep.get(op),
                  fetch=op == "select")
    assert got == expected, f"{op} on {table} ({target} row) as {actor}: expected {expected!r}, got {got!r}"


def test_team_matrix_size() -> None:
    """8 tables (6 new, 2 with team rows) x 8 actors x 4 operations x their targets."""
    assert len(CELLS) == sum(len(s.targets) for s in SPECS.values()) * len(TEAM_ACTORS) * len(OPERATIONS)
    assert len(CELLS) == 416


# --- secrets no API role may read ------------------------------------------------------------------------------------

SECRET_CELLS = [
    pytest.param(sql, actor, CODES["+"] if actor == "service" else DENIED, id=f"{name}-{actor}")
    for name, sql in (("key-ciphertext", "select ciphertext from public.team_provider_keys where id = %(key)s"),
                      ("key-star", "select * from public.team_provider_keys where id = %(key)s"),
                      ("invitation-hash", "select hash from public.team_invitations where id = %(inv)s"))
    for actor in TEAM_ACTORS
]


@pytest.mark.parametrize(("sql", "actor", "expected"), SECRET_CELLS)
def test_team_secrets_never_selectable_by_api_roles(tworld: TeamWorld, sql: str, actor: str, expected: str) -> None:
    params = {"key": tworld.keys[("team_provider_keys", "key")], "inv": tworld.keys[("team_invitations", "inv")]}
    assert attempt(tworld, actor, sql, params, fetch=True) == expected


# --- the functions: who may call what ------------------------------------------------------------------------------

SERVICE_ONLY = {
    "team_credits_adjust": "select public.team_credits_adjust(%(team)s, 1, 'rls', null)",
    "team_credits_lock": "select public.team_credits_lock(%(team)s)",
    "credits_reserve_flex": "select public.credits_reserve_flex(%(member)s, %(fresh)s, 0, 0, null, null, null,"
                            " %(team)s)",
}


@pytest.mark.parametrize(("fn", "actor"), [(f, a) for f in SERVICE_ONLY for a in TEAM_ACTORS])
def test_wallet_functions_execute_only_as_service(tworld: TeamWorld, fn: str, actor: str) -> None:
    params = {"team": tworld.team, "member": tworld.ids["member"], "fresh": str(uuid.uuid4())}
    got = attempt(tworld, actor, SERVICE_ONLY[fn], params, fetch=True)
    assert got == (CODES["+"] if actor == "service" else DENIED), (fn, actor, got)


# (function call, actor) -> SQLSTATE or "+" (allowed). P0411 forbidden, P0412 not found / not a member.
MANAGEMENT = [
    ("select public.team_set_cap(%(team)s, %(member)s, 999999999)", "member", "P0411"),
    ("select public.team_set_cap(%(team)s, %(member)s, 5)", "tadmin", "+"),
    ("select public.team_set_cap(%(team)s, %(member)s, 5)", "exmember", "P0412"),
    ("select public.team_set_cap(%(team)s, %(member)s, 5)", "outsider", "P0412"),
    ("select public.team_set_role(%(team)s, %(member)s, 'admin')", "member", "P0411"),
    ("select public.team_set_role(%(team)s, %(owner)s, 'member')", "tadmin", "P0413"),
    ("select public.team_remove(%(team)s, %(tadmin)s)", "member", "P0411"),
    ("select public.team_remove(%(team)s, %(tadmin)s)", "tadmin", "+"),
    ("select public.team_remove(%(team)s, %(owner)s)", "owner", "P0413"),
    ("select public.team_transfer(%(team)s, %(member)s)", "tadmin", "P0411"),
    ("select public.team_transfer(%(team)s, %(member)s)", "owner", "+"),
    ("select public.team_update(%(team)s, 'x', null)", "member", "P0411"),
    ("select public.team_invite(%(team)s, %(hash)s, 'member', now() + interval '1 day')", "member", "P0411"),
    ("select public.team_invite(%(team)s, %(hash)s, 'member', now() + interval '1 day')", "tadmin", "+"),
    ("select public.team_put_key(%(team)s, %(provider)s, 'c', 'k', 'abcd', null)", "member", "P0411"),
    ("select public.team_set_default(%(team)s)", "exmember", "P0412"),
    ("select public.team_set_default(%(team)s)", "member", "+"),
    ("select public.team_create('x', %(slug)s)", "anon", DENIED),
]


@pytest.mark.parametrize(("sql", "actor", "expected"), MANAGEMENT)
def test_management_functions_decide_in_the_database(tworld: TeamWorld, sql: str, actor: str,
                                                     expected: str) -> None:
    params = {**{k: v for k, v in tworld.ids.items()}, "team": tworld.team, "hash": uuid.uuid4().hex * 2,
              "provider": tworld.spare_provider, "slug": f"rls-{uuid.uuid4().hex[:10]}"}
    got = attempt(tworld, actor, sql, params, fetch=True)
    assert got == (CODES["+"] if expected == "+" else expected), (sql, actor, got)


def test_exactly_one_owner_is_enforced_at_commit(tworld: TeamWorld, database_urls: tuple[str, str]) -> None:
    with psycopg.connect(database_urls[0], autocommit=True) as su:
        with pytest.raises(psycopg.Error) as none:
            su.execute("update public.team_members set role = 'admin' where team_id = %s and role = 'owner'",
                       [tworld.team])
        assert none.value.sqlstate == "P0413"
        with pytest.raises(psycopg.errors.UniqueViolation):
            su.execute("update public.team_members set role = 'owner' where team_id = %s and user_id = %s",
                       [tworld.team, tworld.ids["member"]])

"""Who sees and manages which webhook endpoints, proven by running real statements under the real roles: a user
their own; a team's owner and admins the team's (a plain member does not); a site admin the site's (not a user's);
a caller holding an API key nothing; deliveries and attempts follow their endpoint; the secret's ciphertext is
never readable by authenticated, and deliveries are never writable by it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from webapp.db import Database

WEBHOOK_TABLES = ("webhook_endpoints", "webhook_deliveries", "webhook_attempts")
ACTORS = ("userA", "userB", "owner", "tadmin", "member", "siteadmin", "keyA")
SEES = {"userA": {"user"}, "userB": set(), "owner": {"team"}, "tadmin": {"team"}, "member": set(),
        "siteadmin": {"site"}, "keyA": set()}


@dataclass
class World:
    db: Database
    claims: dict[str, dict[str, Any]]
    endpoints: dict[str, str]  # "user" / "team" / "site" -> endpoint id
    deliveries: dict[str, str]
    team_id: str


@pytest.fixture(scope="module")
def world(db: Database, make_user: Any, database_urls: tuple[str, str]) -> Iterator[World]:
    users = {name: make_user(admin=(name == "siteadmin")) for name in ACTORS if name != "keyA"}
    claims = {name: u.claims for name, u in users.items()}
    claims["keyA"] = {**users["userA"].claims, "api_key_id": str(uuid.uuid4())}
    team_id = str(uuid.uuid4())
    endpoints = {k: str(uuid.uuid4()) for k in ("user", "team", "site")}
    deliveries: dict[str, str] = {}
    with psycopg.connect(database_urls[0], autocommit=True) as admin:
        with admin.transaction():
            admin.execute("insert into public.teams (id, name, slug) values (%s, 'Hooks', %s)",
                          [team_id, f"hooks-{team_id[:8]}"])
            for name, role in (("owner", "owner"), ("tadmin", "admin"), ("member", "member")):
                admin.execute("insert into public.team_members (team_id, user_id, role) values (%s, %s, %s)",
                              [team_id, users[name].id, role])
        owners = {"user": (users["userA"].id, None), "team": (None, team_id), "site": (None, None)}
        for kind, endpoint_id in endpoints.items():
            user_id, tid = owners[kind]
            admin.execute("insert into public.webhook_endpoints (id, scope, user_id, team_id, url, event_types,"
                          " secret_ciphertext, secret_key_id) values (%s, %s, %s, %s, 'https://example.com/h',"
                          " '{api_key.created}', 'v1.k1.sealed', 'k1')", [endpoint_id, kind, user_id, tid])
            row = admin.execute("insert into public.webhook_deliveries (endpoint_id, event_type, body)"
                                " values (%s, 'webhook.test', '{}') returning id::text", [endpoint_id]).fetchone()
            assert row is not None
            deliveries[kind] = row[0]
            admin.execute("insert into public.webhook_attempts (delivery_id, endpoint_id, status_code)"
                          " values (%s, %s, 500)", [row[0], endpoint_id])
    yield World(db, claims, endpoints, deliveries, team_id)


def _visible(world: World, actor: str, table: str) -> set[str]:
    column = "id" if table == "webhook_endpoints" else "endpoint_id"
    with world.db.as_user(world.claims[actor]) as conn:
        rows = conn.execute(f"select {column}::text from public.{table} where {column} = any(%s::uuid[])",
                            [list(world.endpoints.values())]).fetchall()
    by_id = {v: k for k, v in world.endpoints.items()}
    return {by_id[r[0]] for r in rows}


@pytest.mark.parametrize("table", WEBHOOK_TABLES)
@pytest.mark.parametrize("actor", ACTORS)
def test_each_role_sees_exactly_what_it_manages(world: World, actor: str, table: str) -> None:
    assert _visible(world, actor, table) == SEES[actor]


class _Undo(Exception):
    """Raised to roll a statement back: the fixture's rows serve every test."""


def _rowcount(world: World, actor: str, statement: str, params: list[Any]) -> int:
    got = -1
    try:
        with world.db.as_user(world.claims[actor]) as conn:
            got = conn.execute(statement, params).rowcount
            raise _Undo
    except _Undo:
        pass
    return got


@pytest.mark.parametrize("kind", ("user", "team", "site"))
@pytest.mark.parametrize("actor", ACTORS)
def test_each_role_changes_and_deletes_only_what_it_manages(world: World, actor: str, kind: str) -> None:
    endpoint_id = world.endpoints[kind]
    expected = 1 if kind in SEES[actor] else 0
    assert _rowcount(world, actor, "update public.webhook_endpoints set description = 'rls' where id = %s",
                     [endpoint_id]) == expected
    assert _rowcount(world, actor, "delete from public.webhook_endpoints where id = %s", [endpoint_id]) == expected


@pytest.mark.parametrize(("actor", "kind", "allowed"), [
    ("userA", "user", True), ("userB", "forged-user", False), ("owner", "team", True), ("tadmin", "team", True),
    ("member", "team", False), ("siteadmin", "site", True), ("userA", "site", False), ("keyA", "user", False),
])
def test_insert_only_for_what_one_manages(world: World, actor: str, kind: str, allowed: bool) -> None:
    me = world.claims[actor]["sub"]
    owner = {"user": (me, None, "user"), "forged-user": (world.claims["userA"]["sub"], None, "user"),
             "team": (None, world.team_id, "team"), "site": (None, None, "site")}[kind]
    statement = ("insert into public.webhook_endpoints (scope, user_id, team_id, url, event_types,"
                 " secret_ciphertext, secret_key_id, created_by) values (%s, %s, %s, 'https://example.com/x',"
                 " '{api_key.created}', 'v1.k1.x', 'k1', %s)")
    try:
        got = _rowcount(world, actor, statement, [owner[2], owner[0], owner[1], me]) == 1
    except psycopg.errors.InsufficientPrivilege:
        got = False
    assert got is allowed


@pytest.mark.parametrize("actor", ("userA", "owner", "siteadmin"))
def test_the_secret_ciphertext_is_never_readable_by_authenticated(world: World, actor: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), world.db.as_user(world.claims[actor]) as conn:
        conn.execute("select secret_ciphertext from public.webhook_endpoints limit 1")


@pytest.mark.parametrize("statement", [
    "insert into public.webhook_deliveries (endpoint_id, event_type, body) values (%(e)s, 'x', '{}')",
    "update public.webhook_deliveries set status = 'succeeded' where endpoint_id = %(e)s",
    "delete from public.webhook_attempts where endpoint_id = %(e)s",
    "select body from public.webhook_deliveries where endpoint_id = %(e)s",
    "update public.webhook_endpoints set secret_ciphertext = 'v1.k1.planted' where id = %(e)s",
    "update public.webhook_endpoints set previous_secret_expires_at = now() + interval '1 year' where id = %(e)s",
])
def test_deliveries_and_secrets_are_written_only_by_the_system(world: World, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), world.db.as_user(world.claims["userA"]) as conn:
        conn.execute(statement, {"e": world.endpoints["user"]})

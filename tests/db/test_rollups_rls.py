"""The rollups' RLS matrix: who reads which usage rows (a user their own, a team's owners and admins the team's,
site admins everything, anon nothing), and that no API role writes them — only the log's trigger does.
Proven with real statements under the real roles, each in a transaction rolled back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.db.test_rls_matrix import claims_for, new_user
from webapp.db import Database

ROLLUP_TABLES = ("usage_daily", "usage_daily_platform", "usage_daily_errors", "usage_daily_byok_models",
                 "usage_monthly_users", "usage_daily_teams", "usage_admin_keys")


@pytest.fixture(scope="module")
def world(db: Database, database_urls: tuple[str, str]) -> Iterator[dict[str, Any]]:
    """Users A (team owner), B (team member), C (outsider), an admin; one receipt each of A and B (BYOK) billed to
    the team, one failed personal receipt of A served by an environment key."""
    users = {name: new_user(db, admin=(name == "admin")) for name in ("A", "B", "C", "admin")}
    team_id = str(uuid.uuid4())
    with psycopg.connect(database_urls[0], autocommit=True) as su, su.transaction():
        su.execute("insert into public.teams (id, name, slug) values (%s, 'Rollup RLS', %s)",
                   [team_id, f"rollup-rls-{team_id[:8]}"])
        su.execute("insert into public.team_members (team_id, user_id, role) values (%s, %s, 'owner'),"
                   " (%s, %s, 'member')", [team_id, users["A"].id, team_id, users["B"].id])
        for who, team, source, mode, status in (("A", team_id, None, "member", 200),
                                                ("B", team_id, None, "byok", 200),
                                                ("A", None, "admin_env", "member", 502)):
            su.execute("insert into public.llm_request_logs (request_id, user_id, mode, status, provider, model,"
                       " team_id, key_source, credits) values (gen_random_uuid(), %s, %s, %s, 'openai', 'gpt-4o-mini',"
                       " %s, %s, 5)", [users[who].id, mode, status, team, source])
    yield {"users": users, "team": team_id, "db": db}
    with psycopg.connect(database_urls[0], autocommit=True) as su:
        su.execute("delete from public.teams where id = %s", [team_id])
        su.execute("delete from auth.users where id = any(%s::uuid[])", [[u.id for u in users.values()]])


def _as(world: dict[str, Any], actor: str) -> Any:
    db: Database = world["db"]
    if actor == "anon":
        return db.as_anon()
    if actor == "service":
        return db.as_service()
    return db.as_user(claims_for(world["users"][actor]))


def _visible(world: dict[str, Any], actor: str, sql: str, params: list[Any]) -> int | str:
    try:
        with _as(world, actor) as conn:
            row = conn.execute(sql, params).fetchone()
            return int(row[0]) if row else 0
    except psycopg.errors.InsufficientPrivilege:
        return "X"


def test_a_user_reads_only_their_own_daily_and_monthly_rows_a_team_owner_the_teams(world: dict[str, Any]) -> None:
    a, b = world["users"]["A"].id, world["users"]["B"].id
    mine = "select count(*) from public.usage_daily where user_id = any(%s::uuid[])"
    monthly = "select count(*) from public.usage_monthly_users where user_id = any(%s::uuid[])"
    both = [[a, b]]
    # A: own personal + own team row, and B's team row as the team's owner; B (member): only their own.
    assert {actor: _visible(world, actor, mine, both) for actor in ("anon", "A", "B", "C", "admin", "service")} \
        == {"anon": "X", "A": 3, "B": 1, "C": 0, "admin": 3, "service": 3}
    # Monthly totals name no team: each user their own only (the owner reads B's team share from usage_daily).
    assert {actor: _visible(world, actor, monthly, both) for actor in ("anon", "A", "B", "C", "admin", "service")} \
        == {"anon": "X", "A": 1, "B": 1, "C": 0, "admin": 2, "service": 2}


def test_team_rollup_is_read_by_its_owners_and_site_admins(world: dict[str, Any]) -> None:
    sql = "select count(*) from public.usage_daily_teams where team_id = %s"
    assert {actor: _visible(world, actor, sql, [world["team"]]) for actor in ("anon", "A", "B", "C", "admin")} \
        == {"anon": "X", "A": 1, "B": 0, "C": 0, "admin": 1}


@pytest.mark.parametrize("table", ["usage_daily_platform", "usage_daily_errors", "usage_daily_byok_models",
                                   "usage_admin_keys"])
def test_platform_wide_rollups_are_for_site_admins_only(world: dict[str, Any], table: str) -> None:
    sql = f"select count(*) from public.{table}"
    seen = {actor: _visible(world, actor, sql, []) for actor in ("anon", "A", "B", "C", "admin", "service")}
    assert seen["anon"] == "X" and seen["A"] == seen["B"] == seen["C"] == 0
    assert isinstance(seen["admin"], int) and seen["admin"] >= 1 and seen["service"] == seen["admin"]


@pytest.mark.parametrize("table", ROLLUP_TABLES)
@pytest.mark.parametrize("actor", ["A", "admin", "service"])
def test_no_api_role_writes_a_rollup(world: dict[str, Any], table: str, actor: str) -> None:
    for statement in (f"update public.{table} set requests = requests + 1000",
                      f"delete from public.{table}",
                      f"insert into public.{table} (requests) values (1)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), _as(world, actor) as conn:
            conn.execute(statement)


def test_no_api_role_runs_the_rebuild_or_the_apply_function(world: dict[str, Any]) -> None:
    for actor in ("A", "admin", "service"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), _as(world, actor) as conn:
            conn.execute("select public.usage_rollups_rebuild()")

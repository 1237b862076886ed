"""The quote with X-Switchboard-Team plans as the gateway would for a request billed to that team (the team's
routing, here a task override), refuses an outsider as the gateway does (403 not_a_team_member) and a header that is
not a slug (400 invalid_team); without the header it plans as the gateway bills: the default team while the caller
is still its member, else the caller's own plan."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.api.test_teams_api import call, new_team
from tests.api.test_user_api import assert_error_shape

ASK = {"prompt": "hello there", "max_tokens": 50, "model": "ollama/llama3.2", "task": "summarize"}


def _quote(client: FlaskClient, user: Any, team: str | None = None) -> Any:
    headers = {**user.headers, **({"X-Switchboard-Team": team} if team is not None else {})}
    return client.post("/api/user/llm/quote", json=ASK, headers=headers)


def _routes(resp: Any) -> list[tuple[str, str, str]]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [(r["mode"], r["provider"], r["model"]) for r in resp.get_json()["routes"]]


def test_a_quote_for_a_team_uses_the_teams_routing(client: FlaskClient, make_user: Any) -> None:
    owner, member, outsider = make_user(), make_user(), make_user()
    slug = new_team(client, owner, member)
    resp = call(client, owner, "PUT", f"/api/teams/{slug}/routing",
                {"task_overrides": {"summarize": {"provider": "ollama", "model": "smollm2"}}})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert _routes(_quote(client, member)) == [("member", "ollama", "llama3.2")]  # your own: no override
    assert _routes(_quote(client, member, slug)) == [("member", "ollama", "smollm2")]  # the team's override
    assert _routes(_quote(client, member, f"  {slug} ")) == [("member", "ollama", "smollm2")]
    assert _routes(_quote(client, member, "")) == [("member", "ollama", "llama3.2")]  # empty: as if absent
    err = assert_error_shape(_quote(client, outsider, slug), 403, "not_a_team_member")
    assert "team" in err["message"]
    err = assert_error_shape(_quote(client, member, "Not A Slug"), 400, "invalid_team")
    assert "X-Switchboard-Team" in err["message"]


def test_without_the_header_a_quote_plans_for_the_default_team_as_the_gateway_bills(client: FlaskClient,
                                                                                     make_user: Any) -> None:
    owner, member = make_user(), make_user()
    slug = new_team(client, owner, member)
    assert call(client, owner, "PUT", f"/api/teams/{slug}/routing",
                {"task_overrides": {"summarize": {"provider": "ollama", "model": "smollm2"}}}).status_code == 200
    assert _routes(_quote(client, member)) == [("member", "ollama", "llama3.2")]
    assert call(client, member, "PUT", "/api/teams/default", {"team": slug}).status_code == 200
    assert _routes(_quote(client, member)) == [("member", "ollama", "smollm2")]  # billed to the default team
    assert call(client, member, "PUT", "/api/teams/default", {"team": None}).status_code == 200
    assert _routes(_quote(client, member)) == [("member", "ollama", "llama3.2")]

"""Request logs (filters, pagination, receipts), analytics (per day, per provider, top users, error rates,
member cost against BYOK traffic, inline SVG charts) and the audit list. Each test places its log rows on a day
of its own in the past, so the shared database's other rows never change the numbers."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.support.admin import HX, insert_log, temp_providers, web_sign_in


@pytest.fixture()
def admin(make_user: Any) -> Any:
    return make_user(admin=True)


@pytest.fixture()
def day() -> date:
    return date(2001, 1, 1) + timedelta(days=secrets.randbelow(8000))


def at(d: date, hour: int = 12) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


@pytest.fixture()
def traffic(admin_conn: psycopg.Connection, make_user: Any, day: date) -> dict[str, Any]:
    """Two users over two days: alice 3 member requests (one failed) on openai, bob 1 BYOK request on anthropic
    and 1 member request the next day on groq."""
    alice, bob = make_user(), make_user()
    ids = {
        "a1": insert_log(admin_conn, alice.id, "openai", created_at=at(day, 9), credits=1_000_000,
                         model="gpt-4o-mini", tokens=(1000, 1000)),
        "a2": insert_log(admin_conn, alice.id, "openai", created_at=at(day, 10), credits=2_000_000,
                         model="gpt-4o-mini"),
        "a3": insert_log(admin_conn, alice.id, "openai", created_at=at(day, 11), credits=0, status=502,
                         model="gpt-4o-mini", tokens=(0, 0)),
        # claude-haiku-4-5 at 1000 / 5000 micro per 1K and multiplier 1: 1000 in + 1000 out -> 6000 micro.
        "b1": insert_log(admin_conn, bob.id, "anthropic", mode="byok", created_at=at(day, 12), credits=0,
                         model="claude-haiku-4-5", tokens=(1000, 1000)),
        "b2": insert_log(admin_conn, bob.id, "groq", created_at=at(day + timedelta(days=1), 8), credits=500_000,
                         model="llama-3.1-8b-instant"),
    }
    return {"alice": alice, "bob": bob, "ids": ids, "day": day}


def _q(day: date, **extra: str) -> dict[str, str]:
    return {"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat(), **extra}


# -- logs ---------------------------------------------------------------------------------------------------------

def test_api_logs_filters_by_user_provider_mode_status_and_date(client: FlaskClient, admin: Any,
                                                               traffic: dict[str, Any]) -> None:
    day, ids = traffic["day"], traffic["ids"]

    def found(**extra: str) -> set[str]:
        resp = client.get("/api/admin/logs", query_string=_q(day, **extra), headers=admin.headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return {r["request_id"] for r in resp.get_json()["logs"]}

    assert found() == set(ids.values())
    assert found(user=traffic["alice"].email) == {ids["a1"], ids["a2"], ids["a3"]}
    assert found(user=traffic["bob"].id) == {ids["b1"], ids["b2"]}
    assert found(provider="groq") == {ids["b2"]}
    assert found(mode="byok") == {ids["b1"]}
    assert found(status="error") == {ids["a3"]} == found(status="502")
    assert found(status="ok", user=traffic["alice"].email) == {ids["a1"], ids["a2"]}
    assert found(to=day.isoformat()) == {ids["a1"], ids["a2"], ids["a3"], ids["b1"]}
    assert found(user="nobody-matches-this@example.test") == set()


def test_api_logs_paginate_newest_first(client: FlaskClient, admin: Any, traffic: dict[str, Any]) -> None:
    day, ids = traffic["day"], traffic["ids"]
    pages = [client.get("/api/admin/logs", query_string=_q(day, per_page="2", page=str(n)),
                        headers=admin.headers).get_json() for n in (1, 2, 3)]
    assert [p["total"] for p in pages] == [5, 5, 5] and pages[0]["pages"] == 3
    order = [r["request_id"] for p in pages for r in p["logs"]]
    assert order == [ids["b2"], ids["b1"], ids["a3"], ids["a2"], ids["a1"]]
    first = pages[0]["logs"][1]
    assert first["email"] == traffic["bob"].email and first["mode"] == "byok" and first["credits"] == "0.000000"


@pytest.mark.parametrize(("args", "field"), [
    ({"mode": "free"}, "mode"), ({"status": "teapot"}, "status"), ({"from": "yesterday"}, "from"),
    ({"from": "2020-02-02", "to": "2020-01-01"}, "from"), ({"page": "0"}, "page"), ({"per_page": "1000"}, "per_page"),
    ({"provider": "Not A Slug"}, "provider"),
])
def test_api_logs_filter_validation(client: FlaskClient, admin: Any, args: dict[str, str], field: str) -> None:
    resp = client.get("/api/admin/logs", query_string=args, headers=admin.headers)
    assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"]


def test_logs_panel_fragment_filters_and_links_each_row_to_its_receipt(client: FlaskClient, admin: Any,
                                                                       traffic: dict[str, Any]) -> None:
    web_sign_in(client, admin)
    day, ids = traffic["day"], traffic["ids"]
    resp = client.get("/admin/logs", query_string=_q(day, provider="openai"), headers=HX)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and html.lstrip().startswith('<div id="logs">')
    rows = re.findall(r'data-request-id="([0-9a-f-]+)"', html)
    assert rows == [ids["a3"], ids["a2"], ids["a1"]]
    assert f'href="/admin/logs/{ids["a1"]}"' in html and 'class="log failed"' in html
    assert '<option selected>openai</option>' in html, "the filter form keeps what was chosen"
    full = client.get("/admin/logs", query_string=_q(day, provider="openai"))
    assert "<html" in full.get_data(as_text=True), "a pushed filter URL renders the whole page"


def test_logs_panel_pages_keep_the_filters(client: FlaskClient, admin: Any, traffic: dict[str, Any]) -> None:
    web_sign_in(client, admin)
    html = client.get("/admin/logs", query_string=_q(traffic["day"], per_page="2"), headers=HX).get_data(as_text=True)
    assert "Page 1 of 3" in html
    nxt = re.search(r'href="([^"]+)"[^>]*rel="next"', html)
    assert nxt and "page=2" in nxt.group(1) and f"from={traffic['day'].isoformat()}" in nxt.group(1)


def test_logs_panel_bad_filter_is_422_with_error_beside_field(client: FlaskClient, admin: Any) -> None:
    web_sign_in(client, admin)
    resp = client.get("/admin/logs?status=teapot&from=nope", headers=HX)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="f-status-error"' in html and 'id="f-from-error"' in html
    assert 'value="teapot"' in html


def test_receipt_shows_the_log_row(client: FlaskClient, admin: Any, traffic: dict[str, Any]) -> None:
    web_sign_in(client, admin)
    rid = traffic["ids"]["a3"]
    html = client.get(f"/admin/logs/{rid}").get_data(as_text=True)
    assert 'id="receipt"' in html and rid in html and "upstream_error" in html and traffic["alice"].email in html
    fragment = client.get(f"/admin/logs/{rid}", headers=HX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<article class="card receipt" id="receipt">')
    api = client.get(f"/api/admin/logs/{rid}", headers=admin.headers).get_json()["log"]
    assert (api["status"], api["error_code"], api["provider"]) == (502, "upstream_error", "openai")


def test_unknown_receipt_is_404(client: FlaskClient, admin: Any) -> None:
    resp = client.get("/api/admin/logs/00000000-0000-4000-8000-000000000000", headers=admin.headers)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "request_not_found"


# -- analytics ----------------------------------------------------------------------------------------------------

def test_api_usage_per_day_provider_top_users_errors_and_modes(client: FlaskClient, admin: Any,
                                                               traffic: dict[str, Any]) -> None:
    day = traffic["day"]
    resp = client.get("/api/admin/usage", query_string=_q(day), headers=admin.headers)
    assert resp.status_code == 200
    u = resp.get_json()
    assert u["totals"] == {"requests": 5, "errors": 1, "error_rate": 0.2, "cached_tokens": 0,
                           "cache_write_tokens": 0, "reasoning_tokens": 0}
    assert [(d["day"], d["requests"], d["credits"], d["errors"]) for d in u["days"]] == [
        (day.isoformat(), 4, "3.000000", 1), ((day + timedelta(days=1)).isoformat(), 1, "0.500000", 0)]
    providers = {p["provider"]: p for p in u["providers"]}
    assert providers["openai"]["requests"] == 3 and providers["openai"]["error_rate"] == 0.3333
    assert providers["openai"]["credits"] == "3.000000" and providers["groq"]["tokens_in"] == 10
    assert [t["email"] for t in u["top_users"]] == [traffic["alice"].email, traffic["bob"].email]
    assert u["modes"]["member"]["requests"] == 4 and u["modes"]["member"]["credits"] == "3.500000"
    assert u["modes"]["byok"]["requests"] == 1 and u["modes"]["byok"]["member_equivalent_credits"] == "0.006000"
    assert u["error_codes"] == [{"code": "upstream_error", "requests": 1}]


def test_api_usage_range_validation(client: FlaskClient, admin: Any) -> None:
    resp = client.get("/api/admin/usage?from=2020-01-01&to=2022-01-01", headers=admin.headers)
    assert resp.status_code == 422 and "from" in resp.get_json()["error"]["fields"]


def test_analytics_page_draws_inline_svg_without_scripts(client: FlaskClient, admin: Any,
                                                         traffic: dict[str, Any]) -> None:
    web_sign_in(client, admin)
    resp = client.get("/admin/analytics", query_string=_q(traffic["day"]), headers=HX)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and html.lstrip().startswith('<div id="analytics">')
    assert html.count("<svg") >= 3 and "<script" not in html and "cdn" not in html.lower()
    assert 'id="stat-requests">5<' in html and 'id="stat-error-rate">20.0%<' in html
    assert len(re.findall(r'<rect [^>]*class="bar"><title>', html)) == 3 * 2, "a bar per day per chart"
    assert traffic["alice"].email in html and "≈ 0.006000 if served by admin keys" in html


def test_analytics_bad_range_is_422_with_error_beside_field(client: FlaskClient, admin: Any) -> None:
    web_sign_in(client, admin)
    resp = client.get("/admin/analytics?from=2030-01-02&to=2030-01-01", headers=HX)
    assert resp.status_code == 422 and 'id="a-from-error"' in resp.get_data(as_text=True)


# -- audit --------------------------------------------------------------------------------------------------------

def test_audit_lists_who_what_before_after_when(client: FlaskClient, admin: Any, make_user: Any) -> None:
    member = make_user()
    client.post(f"/api/admin/users/{member.id}/credits", json={"amount": 2, "reason": "audit me"},
                headers=admin.headers)
    api = client.get("/api/admin/audit?action=credits", headers=admin.headers).get_json()
    entry = next(e for e in api["entries"] if e["target"] == f"user:{member.email}")
    assert (entry["actor"], entry["action"], entry["before"], entry["after"]["reason"]) == (
        admin.email, "credits.grant", {"balance": "0.000000"}, "audit me")
    assert all(e["action"].startswith("credits") for e in api["entries"])
    web_sign_in(client, admin)
    html = client.get("/admin/audit", headers=HX).get_data(as_text=True)
    assert html.lstrip().startswith('<div id="audit">') and f"user:{member.email}" in html and admin.email in html


def test_audit_bad_page_is_422(client: FlaskClient, admin: Any) -> None:
    assert client.get("/api/admin/audit?page=-1", headers=admin.headers).status_code == 422


def test_audit_records_nothing_for_a_provider_change_that_changes_nothing(
        client: FlaskClient, admin: Any, database_urls: tuple[str, str], admin_conn: psycopg.Connection) -> None:
    with temp_providers(database_urls[0], ("adm-a", "http://127.0.0.1:9/v1")) as [(slug, pid)]:
        assert client.put(f"/api/admin/llm/providers/{pid}", json={"enabled": True},
                          headers=admin.headers).status_code == 200
        count = admin_conn.execute("select count(*) from public.admin_audit_log where target = %s",
                                   [f"provider:{slug}"]).fetchone()
        assert count == (0,)

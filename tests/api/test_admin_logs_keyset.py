"""Admin request logs paged by cursor (created_at, id): every row once, in order, forwards and back, whatever the
depth; hostile cursors are a 422; counts are exact up to the cap and say "10,000+" beyond it."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.support.admin import HX, insert_log, web_sign_in
from webapp.repos import admin as admin_repo


@pytest.fixture()
def admin(make_user: Any) -> Any:
    return make_user(admin=True)


@pytest.fixture()
def seven(admin_conn: psycopg.Connection, make_user: Any) -> tuple[date, list[str]]:
    """Seven receipts on a day of their own, two of them at the same instant (the id breaks the tie); newest first."""
    day = date(1990, 1, 1) + timedelta(days=secrets.randbelow(3000))
    user = make_user()
    hours = [9, 10, 11, 11, 12, 13, 14]
    ids = [insert_log(admin_conn, user.id, "openai", created_at=datetime(day.year, day.month, day.day, h,
                                                                          tzinfo=UTC)) for h in hours]
    order = admin_conn.execute("select request_id::text from public.llm_request_logs where request_id = any(%s::uuid[])"
                               " order by created_at desc, id desc", [ids]).fetchall()
    return day, [r[0] for r in order]


def _page(client: FlaskClient, admin: Any, day: date, **extra: str) -> dict[str, Any]:
    resp = client.get("/api/admin/logs", headers=admin.headers,
                      query_string={"from": day.isoformat(), "to": day.isoformat(), "per_page": "3", **extra})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def test_cursor_pages_cover_every_row_once_in_order_and_lead_back(client: FlaskClient, admin: Any,
                                                                  seven: tuple[date, list[str]]) -> None:
    day, order = seven
    pages = [_page(client, admin, day)]
    while pages[-1]["next_cursor"]:
        pages.append(_page(client, admin, day, before=pages[-1]["next_cursor"]))
    assert [len(p["logs"]) for p in pages] == [3, 3, 1]
    assert [r["request_id"] for p in pages for r in p["logs"]] == order
    assert pages[0]["prev_cursor"] is None and pages[-1]["next_cursor"] is None
    assert all(p["total"] == 7 and p["total_exact"] for p in pages)
    # Back from the last page: the same pages, newest first within each.
    back = _page(client, admin, day, after=pages[-1]["prev_cursor"])
    assert [r["request_id"] for r in back["logs"]] == order[3:6]
    first = _page(client, admin, day, after=back["prev_cursor"])
    assert [r["request_id"] for r in first["logs"]] == order[:3] and first["prev_cursor"] is None


@pytest.mark.parametrize("cursor", ["nonsense!", "a" * 121, "Zm9vfGJhcg", "MjAyNi0wMS0wMXxub3QtYS11dWlk",
                                    "bm90LWEtZGF0ZXwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA"])
@pytest.mark.parametrize("param", ["before", "after"])
def test_a_cursor_that_is_not_ours_is_422(client: FlaskClient, admin: Any, cursor: str, param: str) -> None:
    resp = client.get("/api/admin/logs", headers=admin.headers, query_string={param: cursor})
    assert resp.status_code == 422 and param in resp.get_json()["error"]["fields"]


def test_page_numbers_stop_at_the_count_cap(client: FlaskClient, admin: Any) -> None:
    resp = client.get("/api/admin/logs", headers=admin.headers, query_string={"page": "500", "per_page": "50"})
    assert resp.status_code == 422 and "page" in resp.get_json()["error"]["fields"]


def test_counts_beyond_the_cap_say_so(client: FlaskClient, admin: Any, seven: tuple[date, list[str]],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    day, _order = seven
    monkeypatch.setattr(admin_repo, "COUNT_CAP", 5)
    data = _page(client, admin, day)
    assert data["total"] == 5 and data["total_exact"] is False and data["next_cursor"]
    web_sign_in(client, admin)
    html = client.get("/admin/logs", query_string={"from": day.isoformat(), "to": day.isoformat(), "per_page": "3"},
                      headers=HX).get_data(as_text=True)
    assert ">5+ requests<" in html and "Page 1<" in html and 'rel="next"' in html and "before=" in html

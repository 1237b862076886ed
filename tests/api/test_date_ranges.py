"""Date ranges (webapp/services/date_ranges.py) on the user's usage, the Requests page and the admin analytics:
presets, custom from/to, hostile input (a 422 with a stable code on JSON, the message beside the field on pages),
and keyset paging through all of a user's requests."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jsonschema_rs
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from tests.api.test_settings_page import html, sign_in
from tests.support.admin import HX, insert_log, web_sign_in
from webapp.errors import ValidationError
from webapp.services import date_ranges, openapi_doc, user_requests

TODAY = date(2026, 3, 15)


def parse(**args: str) -> date_ranges.DateRange:
    return date_ranges.parse(args, today=TODAY)


# -- the parser ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("preset", "start", "end"), [
    ("7d", date(2026, 3, 9), TODAY), ("30d", date(2026, 2, 14), TODAY),
    ("this_month", date(2026, 3, 1), TODAY), ("last_month", date(2026, 2, 1), date(2026, 2, 28)),
    ("year", date(2025, 3, 15), TODAY),
])
def test_presets_are_whole_utc_days_ending_today(preset: str, start: date, end: date) -> None:
    r = parse(range=preset)
    assert (r.start, r.end, r.preset) == (start, end, preset)
    assert r.days <= date_ranges.MAX_DAYS
    assert r.since == datetime(start.year, start.month, start.day, tzinfo=UTC)
    assert r.until - r.since == timedelta(days=r.days)


def test_last_month_in_january_is_december_and_defaults() -> None:
    r = date_ranges.parse({"range": "last_month"}, today=date(2026, 1, 1))
    assert (r.start, r.end) == (date(2025, 12, 1), date(2025, 12, 31))
    assert parse().preset == "30d" and date_ranges.parse({}, default="7d", today=TODAY).days == 7


def test_custom_range_and_the_old_from_to_parameters() -> None:
    r = parse(range="custom", **{"from": "2026-01-01", "to": "2026-01-31"})
    assert (r.start, r.end, r.preset, r.days) == (date(2026, 1, 1), date(2026, 1, 31), "custom", 31)
    assert parse(**{"from": "2026-03-01"}).end == TODAY  # `from` alone: through today
    assert parse(to="2026-03-10").start == date(2026, 2, 9)  # `to` alone: the 30 days up to it
    year = parse(**{"from": "2025-03-15", "to": "2026-03-15"})
    assert year.days == 366
    assert r.as_args() == {"range": "custom", "from": "2026-01-01", "to": "2026-01-31"}
    assert parse(range="7d").as_args() == {"range": "7d"}


def test_the_forms_custom_button_wins_over_the_preset_select() -> None:
    args = MultiDict([("range", "30d"), ("from", "2026-01-01"), ("to", "2026-01-02"), ("range", "custom")])
    r = date_ranges.parse(args, today=TODAY)
    assert (r.preset, r.start, r.end) == ("custom", date(2026, 1, 1), date(2026, 1, 2))


@pytest.mark.parametrize(("args", "field"), [
    ({"range": "fortnight"}, "range"), ({"range": "=1+1"}, "range"), ({"range": "custom"}, "from"),
    ({"from": "yesterday"}, "from"), ({"from": "2026-13-01"}, "from"), ({"to": "2026-02-30"}, "to"),
    ({"from": "20260101"}, "from"), ({"from": "\uff12\uff10\uff12\uff16-01-01"}, "from"),
    ({"from": "2026-01-01\x00"}, "from"),
    ({"from": "0001-01-01"}, "from"), ({"to": "9999-12-31"}, "to"), ({"from": "x" * 10_000}, "from"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "from"), ({"from": "2025-03-14", "to": "2026-03-15"}, "from"),
    ({"range": "custom", "from": "1970-01-01", "to": "9998-12-31"}, "from"),
])
def test_hostile_ranges_are_refused_on_their_field(args: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        date_ranges.parse(args, today=TODAY)
    assert field in err.value.errors and err.value.code == "validation_error"
    lenient = date_ranges.parse(args, today=TODAY, strict=False)
    assert lenient.preset == "30d" and field in lenient.errors  # pages: the default, with the error to show
    assert date_ranges.form_values(args, lenient)["range"] in (args.get("range") or "custom", "custom")


def test_non_text_values_are_treated_as_absent() -> None:
    assert date_ranges.parse({"range": ["7d"], "from": 3}, today=TODAY).preset == "30d"  # type: ignore[dict-item]


# -- JSON routes --------------------------------------------------------------------------------------------------

def _schema(name: str) -> dict[str, Any]:
    doc = openapi_doc.document()
    return {**doc["components"]["schemas"][name], "components": doc["components"]}


def _at(d: date, hour: int = 12) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def test_user_usage_takes_presets_and_custom_ranges(client: FlaskClient, make_user: Any,
                                                    admin_conn: psycopg.Connection) -> None:
    user = make_user()
    today = date_ranges.today_utc()
    insert_log(admin_conn, user.id, "openai", created_at=_at(today - timedelta(days=3)))
    insert_log(admin_conn, user.id, "openai", created_at=_at(today - timedelta(days=20)))
    week = client.get("/api/user/llm/usage?range=7d&group_by=provider", headers=user.headers).get_json()
    jsonschema_rs.validate(_schema("UsageSummary"), week)
    assert week["range"] == "7d" and week["from"] == (today - timedelta(days=6)).isoformat()
    assert [b["requests"] for b in week["buckets"]] == [1]
    month = client.get("/api/user/llm/usage?range=30d&group_by=provider", headers=user.headers).get_json()
    assert [b["requests"] for b in month["buckets"]] == [2]
    old_day = (today - timedelta(days=20)).isoformat()
    custom = client.get(f"/api/user/llm/usage?range=custom&from={old_day}&to={old_day}&group_by=provider",
                        headers=user.headers).get_json()
    assert custom["range"] == "custom" and [b["requests"] for b in custom["buckets"]] == [1]


@pytest.mark.parametrize("query", ["range=decade", "range=custom&from=2026-02-01&to=2026-01-01",
                                   "from=2024-01-01&to=2026-01-01", "from=%00", "range=custom", "format=xml"])
def test_user_usage_refuses_bad_ranges_with_a_stable_code(client: FlaskClient, make_user: Any, query: str) -> None:
    resp = client.get(f"/api/user/llm/usage?{query}", headers=make_user().headers)
    body = resp.get_json()
    assert resp.status_code == 422 and body["error"]["code"] == "validation_error"
    assert set(body["error"]["fields"]) & {"range", "from", "to", "format"}


def test_admin_analytics_takes_presets(client: FlaskClient, make_user: Any) -> None:
    admin = make_user(admin=True)
    body = client.get("/api/admin/usage?range=7d", headers=admin.headers).get_json()
    jsonschema_rs.validate(_schema("Analytics"), body)
    assert body["range"] == "7d" and len(body["days"]) == 7
    body = client.get("/api/admin/usage?range=year", headers=admin.headers).get_json()
    assert len(body["days"]) == 366
    resp = client.get("/api/admin/usage?range=forever", headers=admin.headers)
    assert resp.status_code == 422 and "range" in resp.get_json()["error"]["fields"]


# -- pages --------------------------------------------------------------------------------------------------------

def test_settings_usage_preset_redraws_the_section(app: Flask, make_user: Any,
                                                   admin_conn: psycopg.Connection) -> None:
    me = sign_in(app, make_user())
    insert_log(admin_conn, me.user.id, "openai", created_at=_at(date_ranges.today_utc() - timedelta(days=20)))
    week = html(me.get("/settings/usage?range=7d", hx=True))
    assert week.lstrip().startswith('<section class="card" id="usage"') and "Usage, last 7 days" in week
    assert 'id="usage-empty"' in week and '<option value="7d" selected>' in week
    month = html(me.get("/settings/usage?range=30d", hx=True))
    assert "Usage, last 30 days" in month and 'id="usage-empty"' not in month
    assert 'href="/settings/usage.csv?range=30d"' in month and 'id="usage-requests-link"' in month
    page = html(me.get("/settings?range=this_month"))  # without htmx: the whole page, the same section
    assert "Usage, this month" in page
    # Without JavaScript the form still works: a Show button submits the preset as a plain GET to /settings.
    assert '<noscript><button type="submit" class="secondary" id="usage-show">Show</button></noscript>' in page
    assert 'method="get" action="/settings#usage"' in page


def test_settings_usage_custom_range_error_beside_the_field(app: Flask, make_user: Any) -> None:
    me = sign_in(app, make_user())
    resp = me.get("/settings/usage?range=custom&from=2026-02-01&to=2026-01-01", hx=True)
    text = html(resp)
    assert resp.status_code == 422 and 'id="usage-from-error"' in text
    assert 'aria-describedby="usage-from-error"' in text and 'value="2026-02-01"' in text
    resp = me.get("/settings/usage?range=%3Cscript%3E", hx=True)
    assert resp.status_code == 422 and 'id="usage-range-error"' in html(resp) and "<script>" not in html(resp)


def test_admin_analytics_page_presets_and_errors(client: FlaskClient, make_user: Any) -> None:
    web_sign_in(client, make_user(admin=True))
    resp = client.get("/admin/analytics?range=7d", headers=HX)
    text = html(resp)
    assert resp.status_code == 200 and '<option value="7d" selected>' in text
    assert len(re.findall(r'<rect [^>]*class="bar"><title>', text)) == 3 * 7
    assert 'id="analytics-csv"' in text and "range=7d" in text
    resp = client.get("/admin/analytics?range=custom&from=2026-01-01&to=2027-06-01", headers=HX)
    assert resp.status_code == 422 and 'id="a-from-error"' in html(resp)


# -- the Requests page and its keyset pages -----------------------------------------------------------------------

def test_requests_api_pages_newer_and_older_through_every_row(client: FlaskClient, make_user: Any,
                                                              admin_conn: psycopg.Connection) -> None:
    user, other = make_user(), make_user()
    day = date_ranges.today_utc() - timedelta(days=2)
    ids = [insert_log(admin_conn, user.id, "openai", created_at=_at(day, 10) + timedelta(minutes=i))
           for i in range(7)]
    insert_log(admin_conn, other.id, "openai", created_at=_at(day, 10))
    newest_first = ids[::-1]
    seen, cursor = [], ""
    page_schema = _schema("UserRequestPage")
    while True:
        body = client.get(f"/api/user/llm/requests?range=7d&limit=3{cursor}", headers=user.headers).get_json()
        jsonschema_rs.validate(page_schema, body)  # the answer is what the OpenAPI document says
        seen += [r["request_id"] for r in body["requests"]]
        if not body["older"]:
            break
        cursor = f"&before={body['older']}"
    assert seen == newest_first
    last = body
    assert last["newer"] and len(last["requests"]) == 1
    back = client.get(f"/api/user/llm/requests?range=7d&limit=3&after={last['newer']}",
                      headers=user.headers).get_json()
    assert [r["request_id"] for r in back["requests"]] == newest_first[3:6]
    assert back["newer"] and back["older"]
    first = client.get(f"/api/user/llm/requests?range=7d&limit=3&after={back['newer']}",
                       headers=user.headers).get_json()
    assert [r["request_id"] for r in first["requests"]] == newest_first[:3] and first["newer"] is None
    # Another user's cursor shows them nothing of mine, and mine nothing of theirs.
    theirs = client.get(f"/api/user/llm/requests?range=7d&before={last['newer']}", headers=other.headers)
    assert all(r["request_id"] not in ids for r in theirs.get_json()["requests"])


@pytest.mark.parametrize("query", ["before=abc", "after=%00", "before=" + "A" * 500, "limit=0", "limit=201",
                                   "limit=1e3", "before=MjAyNi0wMS0wMXxub3QtYS11dWlk",
                                   "before=eA&after=eA", "api_key=nope"])
def test_requests_api_refuses_hostile_cursors_and_limits(client: FlaskClient, make_user: Any, query: str) -> None:
    resp = client.get(f"/api/user/llm/requests?{query}", headers=make_user().headers)
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "validation_error"


def test_requests_page_links_each_row_to_its_receipt_and_pages(app: Flask, make_user: Any,
                                                               admin_conn: psycopg.Connection) -> None:
    me = sign_in(app, make_user())
    day = date_ranges.today_utc() - timedelta(days=1)
    ids = [insert_log(admin_conn, me.user.id, "openai", created_at=_at(day, 9) + timedelta(minutes=i))
           for i in range(3)]
    text = html(me.get("/settings/requests?range=7d&limit=2"))
    assert 'id="requests-table"' in text and f'href="/settings/receipts/{ids[2]}"' in text
    assert ids[0] not in text and 'id="requests-older"' in text and 'id="requests-newer"' not in text
    older = re.search(r'id="requests-older"|href="([^"]+)"[^>]*rel="next"', text)
    link = re.search(r'<a href="([^"]+)" hx-get="[^"]+" hx-target="#requests" hx-swap="outerHTML" '
                     r'hx-push-url="true" rel="next"', text)
    assert older and link
    nxt = html(me.get(link.group(1).replace("&amp;", "&"), hx=True))
    assert nxt.lstrip().startswith('<section class="card" id="requests"') and ids[0] in nxt
    assert me.get(f"/settings/receipts/{ids[0]}").status_code == 200
    bad = me.get("/settings/requests?before=garbage")
    assert bad.status_code == 422 and 'id="requests-before-error"' in html(bad)
    bad = me.get("/settings/requests?range=custom&from=2026-05-02&to=2026-05-01", hx=True)
    assert bad.status_code == 422 and 'id="requests-from-error"' in html(bad)


def test_cursor_round_trip() -> None:
    from webapp.repos.request_pages import UserRequest

    row = UserRequest("00000000-0000-0000-0000-000000000001", "r", datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
                      "member", None, None, None, 0, 0, 0, 0, 0, None, 0, 200, None, 0, None, None)
    assert user_requests.decode_cursor(user_requests.encode_cursor(row), "before") == (row.created_at, row.id)


def test_a_years_chart_labels_a_day_every_few_weeks(app: Flask, make_user: Any,
                                                    admin_conn: psycopg.Connection) -> None:
    me = sign_in(app, make_user())
    insert_log(admin_conn, me.user.id, "openai", created_at=_at(date_ranges.today_utc() - timedelta(days=300)))
    text = html(me.get("/settings/usage?range=year", hx=True))
    assert "Usage, last 366 days" in text
    chart = text[text.index('id="chart-requests"'):text.index('id="chart-tokens"')]
    labels = re.findall(r'<text class="day"[^>]*>([^<]+)</text>', chart)
    assert 6 <= len(labels) <= 10, labels  # not 52 overlapping ones
    assert labels[-1] == f"{date_ranges.today_utc():%b %d}"

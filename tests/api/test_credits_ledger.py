"""Credits a user can follow: the balance to the micro-credit, the ledger paged by id (JSON and the settings page),
requests in flight, this month's spending against the cap, the 0-credit explanation, and the user's own receipts
(another user's request id is a 404, never a 403)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg
import pytest
from flask import Flask

from tests.api.test_settings_page import sign_in
from tests.support.admin import insert_log
from webapp.db import Database
from webapp.repos import credits as credits_repo
from webapp.services import credits as credits_service


def grant(db: Database, user_id: str, micro: int, reason: str = "test grant") -> None:
    with db.as_service() as conn:
        credits_repo.adjust(conn, user_id, micro, reason, None)


def balance_and_sum(admin_conn: psycopg.Connection, user_id: str) -> tuple[int, int]:
    row = admin_conn.execute("select (select balance from public.credit_accounts where user_id = %(u)s),"
                             " (select coalesce(sum(delta), 0) from public.credit_ledger where user_id = %(u)s)",
                             {"u": user_id}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def charge(db: Database, user: Any, actual: int, reserve: int = 5_000) -> str:
    """A member request as the gateway bills it: reserve, then settle with its receipt in one transaction."""
    rid = str(uuid.uuid4())
    credits_service.reserve_flex(db, user.id, rid, 1, reserve, None)
    credits_service.settle_logged(db, rid, actual, {
        "request_id": rid, "user_id": user.id, "mode": "member", "status": 200, "provider": "openai",
        "model": "gpt-4o-mini", "key_source": "admin_db", "tokens_in": 3, "tokens_out": 1, "usage_source": "measured",
        "multiplier": "1.0", "fallback_path": ["openai"], "stream": False, "latency_ms": 5})
    return rid


def text(resp: Any) -> str:
    return str(resp.get_data(as_text=True))


# -- the ledger as JSON -------------------------------------------------------------------------------------------

def test_ledger_pages_by_id_and_sums_to_the_balance(client: Any, make_user: Any, db: Database,
                                                   admin_conn: psycopg.Connection) -> None:
    user = make_user()
    for i in range(23):
        grant(db, user.id, 1_000_000 + i, f"grant {i}")
    charge(db, user, 1)
    charge(db, user, 7_000)  # above the reservation: settled up to the balance, the extra charged
    seen: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        query = "limit=7" + (f"&before={before}" if before else "")
        resp = client.get(f"/api/user/credits/ledger?{query}", headers=user.headers)
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        assert len(body["entries"]) <= 7
        seen += body["entries"]
        before = body["next_before"]
        if before is None:
            break
        assert before == body["entries"][-1]["id"]
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids), "newest first, no entry twice"
    balance, total = balance_and_sum(admin_conn, user.id)
    assert sum(e["delta_micro"] for e in seen) == total == balance
    assert seen[0]["balance_after_micro"] == balance
    kinds = {e["kind"] for e in seen}
    assert {"grant", "reserve", "settle"} <= kinds
    assert all(e["request_id"] for e in seen if e["kind"] in ("reserve", "settle"))


def test_ledger_never_shows_another_users_entries(client: Any, make_user: Any, db: Database) -> None:
    a, b = make_user(), make_user()
    grant(db, b.id, 5_000_000, "B's grant")
    admin = make_user(admin=True)
    assert client.get("/api/user/credits/ledger", headers=a.headers).get_json() == {"entries": [],
                                                                                    "next_before": None}
    # Admins may read every ledger under RLS; their own page still shows only their own.
    assert client.get("/api/user/credits/ledger", headers=admin.headers).get_json()["entries"] == []


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=-1", "limit=abc", "limit=%C2%B2", "limit=1e3",
                                   "limit=7.0", "before=0", "before=-5", f"before={2**63}", "before=x",
                                   "before=%00", "limit=" + "9" * 40, "before=1%20"])
def test_hostile_paging_values_are_422(client: Any, make_user: Any, query: str) -> None:
    user = make_user()
    resp = client.get(f"/api/user/credits/ledger?{query}", headers=user.headers)
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["error"]["code"] == "validation_error" and body["error"]["fields"]


def test_ledger_needs_a_token(client: Any) -> None:
    assert client.get("/api/user/credits/ledger").status_code == 401


# -- receipts -----------------------------------------------------------------------------------------------------

def test_a_receipt_is_the_owners_alone(client: Any, make_user: Any, db: Database) -> None:
    a, b = make_user(), make_user()
    grant(db, a.id, 1_000_000)
    rid = charge(db, a, 1_234)
    resp = client.get(f"/api/user/llm/receipts/{rid}", headers=a.headers)
    assert resp.status_code == 200
    r = resp.get_json()["receipt"]
    assert (r["request_id"], r["state"], r["mode"], r["provider"], r["model"]) == (
        rid, "settled", "member", "openai", "gpt-4o-mini")
    assert (r["tokens_in"], r["tokens_out"], r["usage"], r["credits_micro"], r["credits"]) == (
        3, 1, "measured", 1_234, "0.001234")
    assert r["fallback_path"] == ["openai"] and r["reserved_micro"] == 5_000 and r["api_key"] is None
    for other in (b, make_user(admin=True)):
        resp = client.get(f"/api/user/llm/receipts/{rid}", headers=other.headers)
        assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "request_not_found"


@pytest.mark.parametrize("bad", ["not-a-uuid", "1", "%00", "' or 1=1 --", str(uuid.uuid4()), "x" * 300])
def test_unknown_or_malformed_receipt_ids_are_404(client: Any, make_user: Any, bad: str) -> None:
    resp = client.get(f"/api/user/llm/receipts/{bad}", headers=make_user().headers)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "request_not_found"


def test_a_request_in_flight_has_a_receipt_with_its_hold(client: Any, make_user: Any, db: Database) -> None:
    user = make_user()
    grant(db, user.id, 1_000_000)
    rid = str(uuid.uuid4())
    credits_service.reserve_flex(db, user.id, rid, 1, 40_000, None)
    r = client.get(f"/api/user/llm/receipts/{rid}", headers=user.headers).get_json()["receipt"]
    assert (r["state"], r["reserved_micro"], r["credits"], r["status"]) == ("reserved", 40_000, None, None)
    credits_service.refund(db, rid)


def test_a_byok_receipt_has_no_reservation(client: Any, make_user: Any, admin_conn: psycopg.Connection) -> None:
    user = make_user()
    rid = insert_log(admin_conn, user.id, "openai", mode="byok", credits=0)
    r = client.get(f"/api/user/llm/receipts/{rid}", headers=user.headers).get_json()["receipt"]
    assert (r["state"], r["mode"], r["credits_micro"], r["reserved"]) == ("logged", "byok", 0, None)


def test_a_receipt_names_the_personal_api_key(client: Any, make_user: Any, db: Database,
                                              admin_conn: psycopg.Connection) -> None:
    user = make_user()
    key_id = admin_conn.execute("insert into public.api_keys (user_id, name, prefix, hash) values (%s, 'nightly',"
                                " %s, %s) returning id::text",
                                [user.id, uuid.uuid4().hex[:12], uuid.uuid4().hex * 2]).fetchone()[0]
    rid = insert_log(admin_conn, user.id, "openai")
    admin_conn.execute("update public.llm_request_logs set api_key_id = %s where request_id = %s", [key_id, rid])
    r = client.get(f"/api/user/llm/receipts/{rid}", headers=user.headers).get_json()["receipt"]
    assert r["api_key"]["id"] == key_id and r["api_key"]["name"] == "nightly"
    assert "hash" not in r["api_key"]


# -- the settings page --------------------------------------------------------------------------------------------

def test_balance_shows_every_micro_credit(app: Flask, make_user: Any, db: Database, client: Any) -> None:
    me = sign_in(app, make_user())
    grant(db, me.user.id, 20_000_000)
    charge(db, me.user, 1)
    page = text(me.get("/settings"))
    assert re.search(r'id="balance">19\.999999</strong>', page), "the mode section shows the micro-credit"
    assert re.search(r'id="credits-balance">19\.999999</strong>', page)
    assert "≈ $20.00" in page and "1 credit = $1.00" in page
    assert client.get("/api/user/credits", headers=me.user.headers).get_json()["balance"] == "19.999999"


def test_a_new_member_with_no_credits_is_told_why_and_what_to_do(app: Flask, make_user: Any, db: Database) -> None:
    me = sign_in(app, make_user())
    page = text(me.get("/settings"))
    assert 'id="zero-credits"' in page and "insufficient_credits" in page and "ask an admin" in page
    assert "Switch to bring-your-own-key" in page, "the mode switch is right there"
    mode = text(me.get("/settings/mode", hx=True))
    assert 'id="zero-credits"' in mode, "the mode fragment carries it too"
    switched = text(me.post("/settings/mode", {"llm_mode": "byok"}))
    assert 'id="zero-credits"' not in switched, "in BYOK mode credits are not needed"
    me.post("/settings/mode", {"llm_mode": "member"})
    grant(db, me.user.id, 3_000_000)
    assert 'id="zero-credits"' not in text(me.get("/settings"))


def test_low_balance_warning_under_the_threshold(app: Flask, make_user: Any, db: Database) -> None:
    me = sign_in(app, make_user())
    grant(db, me.user.id, 999_999)  # the default threshold is 1 credit
    frag = text(me.get("/settings/credits", hx=True))
    assert frag.lstrip().startswith('<section class="card" id="credits"')
    assert 'id="low-balance"' in frag and "0.999999" in frag
    grant(db, me.user.id, 1)
    assert 'id="low-balance"' not in text(me.get("/settings/credits", hx=True))


def test_month_spending_next_to_the_cap_and_holds_in_flight(app: Flask, make_user: Any, db: Database) -> None:
    me = sign_in(app, make_user())
    grant(db, me.user.id, 10_000_000)
    me.post("/settings/routing", {"fallbacks_enabled": "true", "monthly_credit_cap": "5"})
    charge(db, me.user, 250_000, reserve=300_000)
    rid = str(uuid.uuid4())
    credits_service.reserve_flex(db, me.user.id, rid, 1, 100_000, None)
    try:
        frag = text(me.get("/settings/credits", hx=True))
        month = re.search(r'id="credits-month">(.*?)</dd>', frag, re.S)
        assert month and "0.350000 credits" in month.group(1) and "5.000000 cap" in month.group(1)
        assert "4.650000 left" in month.group(1)
        assert 'id="inflight"' in frag and f"/settings/receipts/{rid}" in frag
        assert re.search(r'id="credits-held">0\.100000', frag)
    finally:
        credits_service.refund(db, rid)


def test_ledger_rows_page_with_htmx_and_link_charges_to_receipts(app: Flask, make_user: Any, db: Database,
                                                                admin_conn: psycopg.Connection) -> None:
    me = sign_in(app, make_user())
    for i in range(30):
        grant(db, me.user.id, 1_000, f"g{i}")
    rid = charge(db, me.user, 10)
    page = text(me.get("/settings"))
    first = [int(x) for x in re.findall(r'data-id="(\d+)"', page)]
    assert len(first) == 25 and f"/settings/receipts/{rid}" in page
    cursor = re.search(r'hx-get="/settings/credits/ledger\?before=(\d+)"', page)
    assert cursor and int(cursor.group(1)) == first[-1]
    more = text(me.get(f"/settings/credits/ledger?before={cursor.group(1)}", hx=True))
    rest = [int(x) for x in re.findall(r'data-id="(\d+)"', more)]
    assert rest and max(rest) < min(first) and 'id="ledger-more"' not in more
    deltas = [int(x) for x in re.findall(r'data-delta="(-?\d+)"', page + more)]
    balance, total = balance_and_sum(admin_conn, me.user.id)
    assert sum(deltas) == total == balance
    full = me.get(f"/settings/credits/ledger?before={cursor.group(1)}")
    assert "<html" in text(full), "without htmx the link shows the whole page from there"
    hostile = me.get("/settings/credits/ledger?before=%C2%B2", hx=True)
    assert hostile.status_code == 200


def test_user_receipt_page_and_isolation(app: Flask, make_user: Any, db: Database) -> None:
    me, other = sign_in(app, make_user()), sign_in(app, make_user())
    grant(db, me.user.id, 1_000_000)
    rid = charge(db, me.user, 1)
    own = me.get(f"/settings/receipts/{rid}")
    assert own.status_code == 200 and 'id="receipt-credits">0.000001' in text(own)
    assert other.get(f"/settings/receipts/{rid}").status_code == 404
    assert me.get("/settings/receipts/not-a-uuid").status_code == 404


def test_receipt_of_a_session_user_needs_a_session(client: Any) -> None:
    resp = client.get(f"/settings/receipts/{uuid.uuid4()}")
    assert resp.status_code == 302 and "/auth/sign-in" in resp.headers["Location"]




def test_the_user_guide_curl_snippet_runs_as_written(app: Flask, make_user: Any, db: Database) -> None:
    """The Credits section's curl lines, read from docs/user-guide.md and run by bash against the app on loopback."""
    import json
    import os
    import subprocess
    from pathlib import Path

    from tests.support.live import serve

    guide = (Path(__file__).resolve().parents[2] / "docs" / "user-guide.md").read_text()
    section = guide.split("## Credits", 1)[1].split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    user = make_user()
    grant(db, user.id, 1_000_000)
    rid = charge(db, user, 42)
    with serve(app) as url:
        env = {**os.environ, "SWITCHBOARD_URL": url, "SWITCHBOARD_API_KEY": user.token, "REQUEST_ID": rid}
        done = subprocess.run(["bash", "-euc", snippet], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    ledger, receipt = (json.loads(line) for line in done.stdout.splitlines() if line.strip())
    assert len(ledger["entries"]) == 3 and ledger["next_before"] is None
    assert receipt["receipt"]["credits_micro"] == 42


def test_a_personal_api_key_reads_its_owners_ledger_and_receipts(client: Any, make_user: Any, db: Database) -> None:
    owner, other = make_user(), make_user()
    grant(db, owner.id, 2_000_000)
    rid = charge(db, owner, 5)
    made = client.post("/api/user/api-keys", json={"name": "reader"}, headers=owner.headers)
    assert made.status_code == 201, made.get_json()
    key = {"Authorization": f"Bearer {made.get_json()['secret']}"}
    entries = client.get("/api/user/credits/ledger", headers=key).get_json()["entries"]
    assert [e["kind"] for e in entries] == ["settle", "reserve", "grant"]
    assert client.get(f"/api/user/llm/receipts/{rid}", headers=key).status_code == 200
    grant(db, other.id, 1_000_000)
    other_rid = charge(db, other, 5)
    assert client.get(f"/api/user/llm/receipts/{other_rid}", headers=key).status_code == 404

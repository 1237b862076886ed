"""The settings page's playground, over real HTTP against the live app: the form (CSRF-protected, errors in place),
then the server-sent events relayed from `Gateway.chat` -- against a fake upstream (fast, every outcome) and the
real local model (llama-cpp-python with SmolLM2, registered the way `make run` registers it)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests

from tests.e2e.conftest import Gateway, balance, ledger_sum, log_row
from tests.support.live import serve
from tests.support.llama_server import llama_server, require_llama
from webapp import create_app, local_engine
from webapp.config import Settings


def sign_in(base: str, user: Any) -> requests.Session:
    s = requests.Session()
    page = s.get(base + "/auth/sign-in", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    resp = s.post(base + "/auth/sign-in", data={"email": user.email, "password": user.password,
                                                 "csrf_token": token.group(1)}, allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    return s


def csrf(s: requests.Session, base: str) -> str:
    page = s.get(base + "/settings", timeout=30)
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def events(s: requests.Session, url: str, timeout: float = 60) -> list[tuple[str, str]]:
    """The SSE events of one stream: (event name, data joined by newlines). Every event carries the id."""
    resp = s.get(url, stream=True, timeout=timeout)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    out, name, data = [], "message", []
    for line in resp.iter_lines(decode_unicode=True):
        if line == "":
            if data or name != "message":
                out.append((name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        else:
            assert line == "id: playground", line
    return out


def ask(s: requests.Session, base: str, model: str, prompt: str) -> requests.Response:
    return s.post(base + "/settings/playground", data={"model": model, "prompt": prompt,
                                                       "csrf_token": csrf(s, base)},
                  headers={"HX-Request": "true"}, timeout=30)


def stream_url(resp: requests.Response) -> str:
    match = re.search(r'sse-connect="([^"]+)"', resp.text)
    assert match, resp.text[:2000]
    return html.unescape(match.group(1))


def answer_text(evs: list[tuple[str, str]]) -> str:
    return "".join(html.unescape(re.sub(r"</?span>", "", d)) for n, d in evs if n == "token")


def test_playground_streams_through_the_gateway_with_its_receipt(gw: Gateway, member: Any, db: Any) -> None:
    s = sign_in(gw.url, member)
    page = s.get(gw.url + "/settings", timeout=30).text
    assert 'id="playground"' in page and '<option value="e2e-oa/echo-1"' in page
    before = balance(db, member.id)
    resp = ask(s, gw.url, "e2e-oa/echo-1", "Say <b>hi</b>")
    assert resp.status_code == 200
    evs = events(s, gw.url + stream_url(resp))
    assert [n for n, _ in evs][-2:] == ["receipt", "done"]
    assert answer_text(evs) == "The quick brown fox jumps over the lazy dog."
    receipt = dict(evs)["receipt"]
    assert "e2e-oa" in receipt and "measured" in receipt and "Member (credits)" in receipt
    rid = re.search(r"/settings/receipts/([0-9a-f-]{36})", receipt)
    assert rid
    gw.flush_logs()
    row = log_row(db, rid.group(1))
    charged = before - balance(db, member.id)
    assert row["stream"] is True and row["credits"] == charged > 0
    assert f"{charged / 1e6:.6f}" in receipt
    assert balance(db, member.id) == ledger_sum(db, member.id)
    # the upstream got the same body /v1 would send, through the gateway
    assert gw.oa1.last_request.body["messages"] == [{"role": "user", "content": "Say <b>hi</b>"}]


def test_playground_refuses_in_place(gw: Gateway, member: Any, make_user: Any, db: Any) -> None:
    s = sign_in(gw.url, member)
    resp = ask(s, gw.url, "openai/gpt-4o", "hello")  # not offered to this member: no admin key
    assert resp.status_code == 422 and 'id="play-model-error"' in resp.text
    resp = ask(s, gw.url, "e2e-oa/echo-1", "   ")
    assert resp.status_code == 422 and 'id="play-prompt-error"' in resp.text
    # without the CSRF token: refused, nothing asked
    resp = s.post(gw.url + "/settings/playground", data={"model": "e2e-oa/echo-1", "prompt": "hi"}, timeout=10)
    assert resp.status_code in (400, 403)
    # a stream URL is bound to its user, authenticated, and carries the prompt encrypted, never readable
    url = stream_url(ask(s, gw.url, "e2e-oa/echo-1", "hi zebra-canary-42"))
    token = parse_qs(urlsplit(url).query)["t"][0]
    decoded = [base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in (token, *token.split("."))
               if re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", p)]
    assert all(b"zebra-canary" not in d for d in decoded) and "zebra-canary" not in url
    other = make_user()
    evs = events(sign_in(gw.url, other), gw.url + url)
    assert [n for n, _ in evs] == ["failure", "done"] and "not yours" in evs[0][1]
    # a browser reconnecting after a dropped connection (Last-Event-ID) is not answered a second time
    before = len(gw.oa1.chat_requests())
    resp = s.get(gw.url + url, headers={"Last-Event-ID": "playground"}, timeout=10)
    assert "interrupted" in resp.text and "event: done" in resp.text and len(gw.oa1.chat_requests()) == before
    evs = events(s, gw.url + url.replace("t=", "t=x"))
    assert [n for n, _ in evs] == ["failure", "done"] and "expired" in evs[0][1]
    # the gateway's own refusal (no credits) arrives as a failure event, not a reconnecting error status
    poor = make_user()
    sp = sign_in(gw.url, poor)
    evs = events(sp, gw.url + stream_url(ask(sp, gw.url, "e2e-oa/echo-1", "hi")))
    assert [n for n, _ in evs] == ["failure", "done"] and "credits" in evs[0][1].lower()
    # the upstream failing mid-stream: the answer so far, the failure, a receipt of 0 credits
    gw.oa1.behaviour = "error_event:2"
    evs = events(s, gw.url + stream_url(ask(s, gw.url, "e2e-oa/echo-1", "hi")))
    names = [n for n, _ in evs]
    assert "failure" in names and names[-1] == "done"


@pytest.fixture()
def local_model(database_urls: tuple[str, str]) -> Iterator[str]:
    require_llama()
    with llama_server() as base_url, psycopg.connect(database_urls[0], autocommit=True) as conn:
        local_engine.register(conn, base_url + "/v1")
        conn.execute("update public.llm_providers set enabled = true where slug = %s", [local_engine.SLUG])
        try:
            yield f"{local_engine.SLUG}/{local_engine.MODEL}"
        finally:  # off again: later tests in the session list what member mode offers
            conn.execute("update public.llm_providers set enabled = false, base_url = 'http://127.0.0.1:9/v1'"
                         " where slug = %s", [local_engine.SLUG])


@pytest.fixture()
def patient_url(settings: Settings) -> Iterator[str]:
    """The app with the default upstream timeouts: a real model on a busy 2-core machine may think for seconds
    (the session's `gateway` fixture waits only 2 s, for its fake upstreams)."""
    app = create_app(settings)
    with serve(app) as url:
        yield url
    app.extensions["switchboard"].db.close()


@pytest.mark.llama
def test_playground_streams_the_real_local_model(patient_url: str, member: Any, db: Any, local_model: str) -> None:
    base = patient_url
    s = sign_in(base, member)
    page = s.get(base + "/settings", timeout=30).text
    assert f'<option value="{local_model}"' in page and 'id="play-local-note"' in page
    for _ in range(3):  # a 135M model sampled at temperature 1 may end its answer at once: ask again then
        before = balance(db, member.id)
        evs = events(s, base + stream_url(ask(s, base, local_model, "Name one colour of the rainbow.")), 120)
        if answer_text(evs).strip():
            break
    assert answer_text(evs).strip(), evs
    assert [n for n, _ in evs][-2:] == ["receipt", "done"]
    receipt = dict(evs)["receipt"]
    assert "local" in receipt and "estimated" in receipt and "\u00d70.1" in receipt
    charged = before - balance(db, member.id)
    assert charged > 0 and f"{charged / 1e6:.6f}" in receipt

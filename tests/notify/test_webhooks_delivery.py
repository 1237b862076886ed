"""Webhook delivery on real parts: a real HTTP receiver on loopback (allowed by WEBHOOK_ALLOW_PRIVATE_URLS), real
Postgres, the signatures checked by an independent implementation (the `standardwebhooks` package), retries with
the same webhook-id, the response kept only as a short excerpt, and an endpoint disabled after a day of failures."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks import Webhook

from webapp import create_app
from webapp.config import Settings
from webapp.crypto import KeyRing
from webapp.db import Database
from webapp.notify import webhooks as notify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers with the next planned status (then 200)."""

    plan: list[int] = field(default_factory=list)
    answer: bytes = b'{"ok": true}'
    got: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.got.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = outer.plan.pop(0) if outer.plan else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", self.headers.get("X-Redirect-To", "http://127.0.0.1:9/"))
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(outer.answer)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(outer.answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


@pytest.fixture(scope="module")
def hook_settings(settings: Settings) -> Settings:
    return settings.with_overrides(webhook_allow_private_urls=True, webhook_retry_scale=0.01, webhook_timeout=3.0)


@pytest.fixture()
def hook_app(hook_settings: Settings) -> Iterator[Flask]:
    app = create_app(hook_settings)
    yield app
    app.extensions["switchboard"].db.close()


@pytest.fixture()
def hook_client(hook_app: Flask) -> FlaskClient:
    return hook_app.test_client()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def add_endpoint(client: FlaskClient, user: Any, url: str, events: list[str] | None = None,
                 base: str = "/api/user/webhooks") -> tuple[dict[str, Any], str]:
    r = client.post(base, json={"url": url, "event_types": events or ["api_key.created"]}, headers=user.headers)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    return body["webhook"], body["secret"]


def run_due(db: Database, settings: Settings, endpoint_id: str, *, until: str = "succeeded",
            timeout: float = 20.0) -> list[str]:
    """Attempt this endpoint's due deliveries (as the worker's job does) until none is pending; the outcomes."""
    keyring = KeyRing(settings.encryption_keys)
    outcomes: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.as_service() as conn:
            rows = conn.execute("select id::text, status from public.webhook_deliveries where endpoint_id = %s",
                                [endpoint_id]).fetchall()
        pending = [r[0] for r in rows if r[1] == "pending"]
        if rows and not pending:
            return outcomes
        for delivery_id in pending:
            result = notify.attempt(db, settings, keyring, delivery_id)
            if result != "skipped":
                outcomes.append(result)
        time.sleep(0.02)
    raise AssertionError(f"deliveries still pending after {timeout}s: {outcomes}")


def verify(received: Received, secret: str) -> Any:
    """The independent check: the `standardwebhooks` package (not our signing code)."""
    return Webhook(secret).verify(received.body, received.headers)


def test_test_event_arrives_signed_and_verifies_independently(hook_client: FlaskClient, hook_app: Flask,
                                                               hook_settings: Settings, make_user: Any,
                                                               receiver: Receiver) -> None:
    user = make_user()
    endpoint, secret = add_endpoint(hook_client, user, receiver.url)
    r = hook_client.post(f"/api/user/webhooks/{endpoint['id']}/test", headers=user.headers)
    assert r.status_code == 202, r.get_json()
    queued = r.get_json()["delivery"]
    assert queued["status"] == "pending" and queued["event_type"] == "webhook.test"
    assert run_due(hook_app.extensions["switchboard"].db, hook_settings, endpoint["id"]) == ["succeeded"]
    (got,) = receiver.got
    payload = verify(got, secret)
    assert payload["type"] == "webhook.test" and set(payload) == {"type", "timestamp", "data"}
    assert got.headers["webhook-id"] == queued["webhook_id"] and got.headers["content-type"] == "application/json"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    # A wrong secret does not verify: the check is real.
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "QUJD" * 8).verify(got.body, got.headers)
    log = hook_client.get(f"/api/user/webhooks/{endpoint['id']}/deliveries", headers=user.headers).get_json()
    (d,) = log["deliveries"]
    assert d["status"] == "succeeded" and d["attempts"] == 1 and d["last_status"] == 200
    assert d["last_response_excerpt"] == '{"ok": true}' and d["next_attempt_at"] is None


def test_fails_three_times_then_one_successful_delivery_with_one_webhook_id(
        hook_client: FlaskClient, hook_app: Flask, hook_settings: Settings, make_user: Any,
        receiver: Receiver) -> None:
    user = make_user()
    receiver.plan = [500, 503, 429]
    endpoint, secret = add_endpoint(hook_client, user, receiver.url)
    hook_client.post(f"/api/user/webhooks/{endpoint['id']}/test", headers=user.headers)
    outcomes = run_due(hook_app.extensions["switchboard"].db, hook_settings, endpoint["id"])
    assert outcomes == ["retry", "retry", "retry", "succeeded"]
    assert len(receiver.got) == 4
    assert len({g.headers["webhook-id"] for g in receiver.got}) == 1  # the idempotency key of every retry
    assert len({g.body for g in receiver.got}) == 1  # the same bytes each time
    for got in receiver.got:
        verify(got, secret)  # each attempt signed afresh (its own timestamp), each valid
    (d,) = hook_client.get(f"/api/user/webhooks/{endpoint['id']}/deliveries",
                           headers=user.headers).get_json()["deliveries"]
    assert d["status"] == "succeeded" and d["attempts"] == 4
    listed = hook_client.get(f"/api/user/webhooks/{endpoint['id']}", headers=user.headers).get_json()["webhook"]
    assert listed["status"] == "active" and listed["failing_since"] is None


def test_retry_delays_grow_and_give_up_after_about_a_day(settings: Settings) -> None:
    delays = [notify.retry_delay(n, settings) for n in range(1, len(notify.RETRY_DELAYS) + 2)]
    assert delays[-1] is None and all(d is not None for d in delays[:-1])
    numbers = [d for d in delays if d is not None]
    assert numbers == sorted(numbers) and numbers[0] <= 10
    assert 20 * 3600 <= sum(numbers) <= 30 * 3600


def test_response_kept_only_as_a_short_excerpt_without_the_secret(hook_client: FlaskClient, hook_app: Flask,
                                                                   hook_settings: Settings, make_user: Any,
                                                                   receiver: Receiver) -> None:
    user = make_user()
    endpoint, secret = add_endpoint(hook_client, user, receiver.url)
    receiver.plan = [400]
    receiver.answer = (b"bad " + secret.encode() + b" " + b"x" * 5000)
    hook_client.post(f"/api/user/webhooks/{endpoint['id']}/test", headers=user.headers)
    db = hook_app.extensions["switchboard"].db
    keyring = KeyRing(hook_settings.encryption_keys)
    with db.as_service() as conn:
        (delivery_id,) = conn.execute("select id::text from public.webhook_deliveries where endpoint_id = %s",
                                      [endpoint["id"]]).fetchone() or ()
    assert notify.attempt(db, hook_settings, keyring, delivery_id) == "retry"
    (d,) = hook_client.get(f"/api/user/webhooks/{endpoint['id']}/deliveries",
                           headers=user.headers).get_json()["deliveries"]
    assert d["status"] == "pending" and d["last_status"] == 400 and d["last_error"] == "HTTP 400"
    assert len(d["last_response_excerpt"]) <= 200 and secret not in d["last_response_excerpt"]
    assert secret[6:20] not in json.dumps(d) and d["next_attempt_at"]


def test_endpoint_disabled_after_a_day_of_failures(hook_client: FlaskClient, hook_app: Flask,
                                                   hook_settings: Settings, make_user: Any, receiver: Receiver,
                                                   admin_conn: psycopg.Connection) -> None:
    user = make_user()
    endpoint, _ = add_endpoint(hook_client, user, receiver.url)
    receiver.plan = [500] * 5
    hook_client.post(f"/api/user/webhooks/{endpoint['id']}/test", headers=user.headers)
    admin_conn.execute("update public.webhook_endpoints set failing_since = now() - interval '25 hours'"
                       " where id = %s", [endpoint["id"]])
    assert run_due(hook_app.extensions["switchboard"].db, hook_settings, endpoint["id"]) == ["failed"]
    got = hook_client.get(f"/api/user/webhooks/{endpoint['id']}", headers=user.headers).get_json()["webhook"]
    assert got["status"] == "disabled" and got["enabled"] is False and "a day" in got["disabled_reason"]
    # Nothing more is sent to it, and a test event says why.
    r = hook_client.post(f"/api/user/webhooks/{endpoint['id']}/test", headers=user.headers)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "webhook_disabled"
    # Enabling it again clears the failure state.
    r = hook_client.patch(f"/api/user/webhooks/{endpoint['id']}", json={"enabled": True}, headers=user.headers)
    assert r.get_json()["webhook"]["status"] == "active"


def test_a_lease_left_by_a_killed_worker_is_attempted_again_with_the_same_id(
        hook_client: FlaskClient, hook_app: Flask, hook_settings: Settings, make_user: Any, receiver: Receiver,
        admin_conn: psycopg.Connection) -> None:
    from webapp.repos import webhooks as repo

    user = make_user()
    endpoint, secret = add_endpoint(hook_client, user, receiver.url)
    delivery = hook_client.post(f"/api/user/webhooks/{endpoint['id']}/test",
                                headers=user.headers).get_json()["delivery"]
    db = hook_app.extensions["switchboard"].db
    with db.as_service() as conn:  # a worker takes it ... and dies before recording anything
        assert repo.claim(conn, delivery["id"], 60) is not None
    keyring = KeyRing(hook_settings.encryption_keys)
    assert notify.attempt(db, hook_settings, keyring, delivery["id"]) == "skipped"  # leased: not twice at once
    admin_conn.execute("update public.webhook_deliveries set locked_until = now() - interval '1 second'"
                       " where id = %s", [delivery["id"]])
    assert notify.sweep(db) >= 1  # the sweep queues what the crash left behind
    assert run_due(db, hook_settings, endpoint["id"]) == ["succeeded"]
    (got,) = receiver.got
    assert got.headers["webhook-id"] == delivery["webhook_id"]
    verify(got, secret)

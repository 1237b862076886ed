"""Webhook delivery on real parts: a real HTTP receiver on loopback (allowed by WEBHOOK_ALLOW_PRIVATE_URLS), real
Postgres, the signatures checked by an independent implementation (the `standardwebhooks` package), retries with
the same webhook-id, the response kept only as a short excerpt, and an endpoint disabled after a day of failures.
End to end through the real worker: an action through the JSON API writes its event (the outbox), the procrastinate
worker dispatches it and delivers it to the endpoints that should get it, retries scheduled by the worker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks import Webhook

from tests.notify.conftest import run_in_thread
from webapp import create_app
from webapp.config import Settings
from webapp.crypto import KeyRing
from webapp.db import Database
from webapp.notify import retention, runtime, worker
from webapp.notify import webhooks as notify
from webapp.notify.runtime import Runtime


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
    location: str = "http://127.0.0.1:9/"  # where a planned 3xx points
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
                    self.send_header("Location", outer.location)
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


def test_after_a_rotation_both_secrets_verify_for_a_day(hook_client: FlaskClient, hook_app: Flask,
                                                        hook_settings: Settings, make_user: Any, receiver: Receiver,
                                                        admin_conn: psycopg.Connection) -> None:
    user = make_user()
    endpoint, old = add_endpoint(hook_client, user, receiver.url)
    r = hook_client.post(f"/api/user/webhooks/{endpoint['id']}/rotate-secret", headers=user.headers)
    new = r.get_json()["secret"]
    db = hook_app.extensions["switchboard"].db
    hook_client.post(f"/api/user/webhooks/{endpoint['id']}/test", headers=user.headers)
    assert run_due(db, hook_settings, endpoint["id"]) == ["succeeded"]
    got = receiver.got[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    verify(got, new)
    verify(got, old)  # a receiver not switched yet still verifies
    # A day later only the new secret signs.
    admin_conn.execute("update public.webhook_endpoints set previous_secret_expires_at = now() - interval '1 second'"
                       " where id = %s", [endpoint["id"]])
    hook_client.post(f"/api/user/webhooks/{endpoint['id']}/test", headers=user.headers)
    assert run_due(db, hook_settings, endpoint["id"]) == ["succeeded"]
    later = receiver.got[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    verify(later, new)
    with pytest.raises(Exception, match="signature"):
        verify(later, old)


def test_finished_deliveries_are_forgotten_after_thirty_days(hook_client: FlaskClient, hook_app: Flask,
                                                            make_user: Any, receiver: Receiver,
                                                            admin_conn: psycopg.Connection) -> None:
    user = make_user()
    endpoint, _ = add_endpoint(hook_client, user, receiver.url)
    for _ in range(2):
        hook_client.post(f"/api/user/webhooks/{endpoint['id']}/test", headers=user.headers)
    admin_conn.execute("update public.webhook_deliveries set status = 'succeeded', created_at = now() - interval"
                       " '31 days' where id = (select id from public.webhook_deliveries where endpoint_id = %s"
                       " limit 1)", [endpoint["id"]])
    retention.prune(hook_app.extensions["switchboard"].db.as_service, 30)  # the worker's hourly notify.prune
    left = admin_conn.execute("select status from public.webhook_deliveries where endpoint_id = %s",
                              [endpoint["id"]]).fetchall()
    assert left == [("pending",)]


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


def _only_delivery(db: Database, endpoint_id: str) -> str:
    with db.as_service() as conn:
        row = conn.execute("select id::text from public.webhook_deliveries where endpoint_id = %s",
                           [endpoint_id]).fetchone()
    assert row is not None
    return str(row[0])


def test_redirects_are_not_followed(hook_client: FlaskClient, hook_app: Flask, hook_settings: Settings,
                                    make_user: Any, receiver: Receiver) -> None:
    user = make_user()
    with Receiver() as target:
        receiver.plan, receiver.location = [302], target.url
        endpoint, _ = add_endpoint(hook_client, user, receiver.url)
        hook_client.post(f"/api/user/webhooks/{endpoint['id']}/test", headers=user.headers)
        db = hook_app.extensions["switchboard"].db
        outcome = notify.attempt(db, hook_settings, KeyRing(hook_settings.encryption_keys),
                                 _only_delivery(db, endpoint["id"]))
        assert outcome == "retry" and len(receiver.got) == 1 and target.got == []
    (d,) = hook_client.get(f"/api/user/webhooks/{endpoint['id']}/deliveries",
                           headers=user.headers).get_json()["deliveries"]
    assert d["last_status"] == 302 and "redirects are not followed" in d["last_error"]


def test_a_name_rebound_to_loopback_after_saving_is_refused_at_connect(
        client: FlaskClient, app: Flask, settings: Settings, make_user: Any, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name resolved to a public address when saved, to 127.0.0.1 when sent. The guarded
    transport resolves once, checks the address it connects to, and sends nothing."""
    from webapp.providers import transport

    answers = {"rebind.example.test": ["93.184.216.34"]}
    monkeypatch.setattr(transport, "_resolve", lambda host, port: answers.get(host, ["93.184.216.34"]))
    assert settings.webhook_allow_private_urls is False
    user = make_user()
    port = int(receiver.url.split(":")[2].split("/")[0])
    endpoint, _ = add_endpoint(client, user, f"http://rebind.example.test:{port}/hooks")
    client.post(f"/api/user/webhooks/{endpoint['id']}/test", headers=user.headers)
    answers["rebind.example.test"] = ["127.0.0.1"]
    db = app.extensions["switchboard"].db
    delivery_id = _only_delivery(db, endpoint["id"])
    assert notify.attempt(db, settings, KeyRing(settings.encryption_keys), delivery_id) == "retry"
    assert receiver.got == []
    (d,) = client.get(f"/api/user/webhooks/{endpoint['id']}/deliveries", headers=user.headers).get_json()["deliveries"]
    assert d["last_status"] is None and d["last_error"] == "refused: the address is not public"


# -- through the real worker ------------------------------------------------------------------------------------------

@pytest.fixture()
def work(hook_settings: Settings, db: Database, admin_conn: psycopg.Connection,
         notify_backlog: None) -> Iterator[Callable[..., None]]:
    """Run the real worker (in this process) over the notify and webhooks queues until `done()` holds. Each pass
    runs in its own thread with its own event loop: in a full suite the test's thread already runs Playwright's."""
    runtime.use(Runtime(hook_settings, db))
    app = worker.build_app(hook_settings)

    def one_pass() -> None:
        app.run_worker(queues=["notify", "webhooks"], wait=False, install_signal_handlers=False,
                       delete_jobs="successful", concurrency=2)

    def run(done: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the worker did not finish in time"
            run_in_thread(one_pass)
            time.sleep(0.05)

    yield run
    runtime.use(None)


def _pending(admin_conn: psycopg.Connection, endpoint_id: str) -> int:
    row = admin_conn.execute("select count(*) filter (where status = 'pending'), count(*)"
                             " from public.webhook_deliveries where endpoint_id = %s", [endpoint_id]).fetchone()
    assert row is not None
    return int(row[0]) if row[1] else -1


def test_creating_an_api_key_sends_a_signed_webhook(hook_client: FlaskClient, make_user: Any,
                                                    work: Callable[..., None], receiver: Receiver,
                                                    admin_conn: psycopg.Connection) -> None:
    user, other = make_user(), make_user()
    endpoint, secret = add_endpoint(hook_client, user, receiver.url, ["api_key.created", "api_key.revoked"])
    with Receiver() as elsewhere:
        add_endpoint(hook_client, other, elsewhere.url, ["api_key.created"])  # another user's: gets nothing
        r = hook_client.post("/api/user/api-keys", json={"name": "nightly"}, headers=user.headers)
        assert r.status_code == 201
        key = r.get_json()["api_key"]
        work(lambda: len(receiver.got) >= 1 and _pending(admin_conn, endpoint["id"]) == 0)
        assert elsewhere.got == []
    (got,) = receiver.got
    payload = verify(got, secret)
    assert payload["type"] == "api_key.created"
    assert payload["data"]["api_key_id"] == key["id"] and payload["data"]["name"] == "nightly"
    assert payload["data"]["user_id"] == user.id and payload["data"]["team_id"] is None
    assert payload["data"]["event_id"]
    assert r.get_json()["secret"] not in got.body.decode()  # the event names the key, never its secret
    hook_client.delete(f"/api/user/api-keys/{key['id']}", headers=user.headers)
    work(lambda: len(receiver.got) >= 2 and _pending(admin_conn, endpoint["id"]) == 0)
    assert verify(receiver.got[1], secret)["type"] == "api_key.revoked"
    assert receiver.got[0].headers["webhook-id"] != receiver.got[1].headers["webhook-id"]


def test_receiver_failing_three_times_gets_exactly_one_successful_delivery(
        hook_client: FlaskClient, make_user: Any, work: Callable[..., None], receiver: Receiver,
        admin_conn: psycopg.Connection) -> None:
    user = make_user()
    receiver.plan = [500, 502, 503]
    endpoint, secret = add_endpoint(hook_client, user, receiver.url, ["api_key.created"])
    hook_client.post("/api/user/api-keys", json={"name": "flaky"}, headers=user.headers)
    work(lambda: _pending(admin_conn, endpoint["id"]) == 0)
    assert len(receiver.got) == 4 and len({g.headers["webhook-id"] for g in receiver.got}) == 1
    for got in receiver.got:
        assert verify(got, secret)["type"] == "api_key.created"
    attempts = admin_conn.execute("select status_code from public.webhook_attempts where endpoint_id = %s"
                                  " order by id", [endpoint["id"]]).fetchall()
    assert [a[0] for a in attempts] == [500, 502, 503, 200]
    (status,) = admin_conn.execute("select status from public.webhook_deliveries where endpoint_id = %s",
                                   [endpoint["id"]]).fetchone() or ()
    assert status == "succeeded"


def test_team_and_site_endpoints_get_their_events(hook_client: FlaskClient, make_user: Any,
                                                  work: Callable[..., None], admin_conn: psycopg.Connection) -> None:
    owner, site_admin, outsider = make_user(), make_user(admin=True), make_user()
    slug = f"wh-{owner.id[:8]}"
    assert hook_client.post("/api/teams", json={"name": "WH", "slug": slug}, headers=owner.headers).status_code == 201
    with Receiver() as team_rx, Receiver() as site_rx, Receiver() as outsider_rx:
        _, team_secret = add_endpoint(hook_client, owner, team_rx.url, ["team.invitation.created"],
                                            base=f"/api/teams/{slug}/webhooks")
        _, site_secret = add_endpoint(hook_client, site_admin, site_rx.url, ["team.invitation.created"],
                                      base="/api/admin/webhooks")
        add_endpoint(hook_client, outsider, outsider_rx.url, ["team.invitation.created"])
        r = hook_client.post(f"/api/teams/{slug}/invitations", json={"role": "member"}, headers=owner.headers)
        assert r.status_code == 201
        work(lambda: len(team_rx.got) >= 1 and len(site_rx.got) >= 1)
        assert verify(team_rx.got[0], team_secret)["type"] == "team.invitation.created"
        assert verify(site_rx.got[0], site_secret)["type"] == "team.invitation.created"
        assert r.get_json()["token"] not in team_rx.got[0].body.decode()
        assert outsider_rx.got == []

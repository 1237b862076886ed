"""kill -9 of the worker while a webhook request is in flight (the receiver has it and has not answered) loses
nothing: the delivery stays pending, leased; a restarted worker re-queues the dead one's job, waits for the lease to
end and sends it again with the same webhook-id (the idempotency key a receiver deduplicates on), once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.notify.conftest import worker_processes
from tests.notify.test_webhooks_delivery import Received, verify
from tests.notify.test_worker_kill import wait_for
from webapp import create_app
from webapp.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = "5"  # the worker's per-attempt timeout; its lease is 3 * 5 + 5 = 20 s


class HoldingReceiver:
    """A real HTTP server on loopback whose first request is held unanswered until `release`; later ones get 200."""

    def __init__(self) -> None:
        self.got: list[Received] = []
        self.held, self.release = threading.Event(), threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.got.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if len(outer.got) == 1:
                    outer.held.set()
                    outer.release.wait(60)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the worker that sent it is dead

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def holding() -> Iterator[HoldingReceiver]:
    receiver = HoldingReceiver()
    yield receiver
    receiver.close()


@pytest.fixture()
def start_worker(test_env: dict[str, str], tmp_path: Path, notify_backlog: None) -> Iterator[Any]:
    env = {**test_env, "WEBHOOK_ALLOW_PRIVATE_URLS": "true", "WEBHOOK_TIMEOUT_SECONDS": TIMEOUT,
           "WEBHOOK_RETRY_SCALE": "0.01", "WORKER_HEARTBEAT_SECONDS": "0.5", "WORKER_STALLED_SECONDS": "2",
           "WORKER_CONCURRENCY": "2"}
    with worker_processes(env, tmp_path) as start:
        yield start


@pytest.fixture()
def private_client(settings: Settings) -> Iterator[FlaskClient]:
    app = create_app(settings.with_overrides(webhook_allow_private_urls=True))
    yield app.test_client()
    app.extensions["switchboard"].db.close()


def test_kill_9_mid_request_then_restart_sends_it_again_with_the_same_webhook_id(
        private_client: FlaskClient, make_user: Any, holding: HoldingReceiver, start_worker: Any, tmp_path: Path,
        admin_conn: psycopg.Connection) -> None:
    user = make_user()
    r = private_client.post("/api/user/webhooks", json={"url": holding.url, "event_types": ["api_key.created"]},
                            headers=user.headers)
    assert r.status_code == 201, r.get_json()
    endpoint, secret = r.get_json()["webhook"], r.get_json()["secret"]
    assert private_client.post("/api/user/api-keys", json={"name": "crash"}, headers=user.headers).status_code == 201

    first = start_worker()
    wait_for(holding.held.is_set, 60, "the first worker's request to reach the receiver")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    holding.release.set()  # the receiver answers a dead client
    row = admin_conn.execute("select status, attempts, locked_until > now() from public.webhook_deliveries"
                             " where endpoint_id = %s", [endpoint["id"]]).fetchone()
    assert row == ("pending", 1, True)  # nothing recorded: the attempt died with the worker, the lease holds

    second = start_worker()
    wait_for(lambda: admin_conn.execute("select status from public.webhook_deliveries where endpoint_id = %s",
                                        [endpoint["id"]]).fetchone() == ("succeeded",),
             90, "the second worker to deliver it")
    log = (tmp_path / "worker-1.log").read_text()
    assert len(holding.got) == 2, log
    assert holding.got[0].headers["webhook-id"] == holding.got[1].headers["webhook-id"]
    assert holding.got[0].body == holding.got[1].body
    assert verify(holding.got[1], secret)["type"] == "api_key.created"
    assert admin_conn.execute("select count(*) from public.webhook_attempts where endpoint_id = %s",
                              [endpoint["id"]]).fetchone() == (1,)  # one recorded attempt: the one that finished
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0, log

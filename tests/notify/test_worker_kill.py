"""kill -9 of the worker in the middle of an email delivery (the SMTP server has the message but has not accepted
it) loses nothing and duplicates nothing: another worker notices the dead one's heartbeat stopped, re-queues its
job, and the delivery row — still pending, its transaction rolled back with the dead connection — is sent once."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.notify.conftest import SmtpRecorder, events_of, worker_processes
from webapp.db import Database
from webapp.repos import credits as credits_repo

ROOT = Path(__file__).resolve().parents[2]


def wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def start_worker(test_env: dict[str, str], smtp: SmtpRecorder, tmp_path: Path, notify_backlog: None) -> Iterator[Any]:
    env = {**test_env, "SMTP_URL": f"smtp://127.0.0.1:{smtp.port}?starttls=false",
           "MAIL_FROM": "Switchboard <notices@switchboard.test>", "PUBLIC_URL": "https://switchboard.test",
           "WORKER_HEARTBEAT_SECONDS": "0.5", "WORKER_STALLED_SECONDS": "2", "WORKER_CONCURRENCY": "2"}
    with worker_processes(env, tmp_path) as start:
        yield start


def test_kill_9_mid_delivery_then_restart_delivers_exactly_once(make_user: Any, db: Database, smtp: SmtpRecorder,
                                                                start_worker: Any, tmp_path: Path,
                                                                admin_conn: psycopg.Connection) -> None:
    me = make_user()
    smtp.hold, smtp.hold_for = threading.Event(), me.email
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.id, 4_000_000, "survives a crash", None)
    [event] = events_of(admin_conn, "credits.granted", user_id=me.id)

    first = start_worker()
    wait_for(smtp.held.is_set, 60, "the first worker to be inside the SMTP conversation")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    smtp.release.set()  # the server drops the half-delivered message (451 to a dead client)
    assert smtp.to(me.email) == []
    status = admin_conn.execute("select status from public.notification_deliveries where event_id = %s",
                                [event["id"]]).fetchone()
    assert status is not None and status[0] == "pending"  # committed by the dispatch; the send rolled back

    second = start_worker()
    wait_for(lambda: len(smtp.to(me.email)) >= 1, 60, "the second worker to deliver the email")
    time.sleep(3)  # longer than the stalled timeout: a duplicate would have arrived by now
    assert len(smtp.to(me.email)) == 1, (tmp_path / "worker-1.log").read_text()
    assert smtp.to(me.email)[0]["Subject"] == "4 credits added"
    assert admin_conn.execute("select status, attempts from public.notification_deliveries where event_id = %s",
                              [event["id"]]).fetchone() == ("sent", 1)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0, (tmp_path / "worker-1.log").read_text()

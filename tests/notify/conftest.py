"""Notification fixtures: a real SMTP server (aiosmtpd) started by the test, settings that point the worker at it,
and the real procrastinate worker run in-process until the queue is empty."""

from __future__ import annotations

import asyncio
import contextlib
import email
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from webapp.config import Settings, SmtpConfig
from webapp.crypto import KeyRing, admin_aad
from webapp.db import Database
from webapp.notify import runtime, worker
from webapp.notify.runtime import Runtime


@dataclass
class SmtpRecorder:
    """What the test's SMTP server accepted. `hold` (when set) makes the next DATA wait until `release` is set and
    then refuse it (451): the client died mid-delivery, the server never accepted that message."""

    messages: list[EmailMessage] = field(default_factory=list)
    hold: threading.Event | None = None
    hold_for: str = ""  # only a message to this address is held
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hold is not None and not self.hold.is_set() and self.hold_for in envelope.rcpt_tos:
            self.hold.set()
            self.held.set()
            await _wait(self.release)
            return "451 Requested action aborted: the client went away"
        msg = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


async def _wait(event: threading.Event) -> None:
    import asyncio

    while not event.is_set():
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def smtp() -> Iterator[SmtpRecorder]:
    recorder = SmtpRecorder(port=free_port())
    controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port)
    controller.start()
    yield recorder
    recorder.release.set()
    controller.stop()


@pytest.fixture()
def notify_settings(settings: Settings, smtp: SmtpRecorder) -> Settings:
    return settings.with_overrides(smtp=SmtpConfig("127.0.0.1", smtp.port, "none"),
                                   mail_from="Switchboard <notices@switchboard.test>",
                                   public_url="https://switchboard.test", worker_heartbeat_seconds=0.5,
                                   worker_stalled_seconds=2.0, worker_concurrency=2)


def _in_thread(coro: Any) -> None:
    run_in_thread(lambda: asyncio.run(coro()))


def run_in_thread(fn: Callable[[], Any]) -> None:
    """Run `fn` in a thread of its own (its own event loop: the test's thread may already run Playwright's) and
    raise what it raised."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="notify-drain")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def drain_notify_jobs(settings: Settings, db: Database) -> None:
    """Run the real worker (procrastinate, in this process) until no notify job is left to run now."""
    runtime.use(Runtime(settings, db))

    async def drain() -> None:
        app = worker.build_app(settings)
        async with app.open_async():
            await app.run_worker_async(queues=["notify"], wait=False, install_signal_handlers=False,
                                       delete_jobs="successful", concurrency=2, listen_notify=False)

    def due() -> int:
        with db.as_service() as conn:
            row = conn.execute("select count(*) from public.procrastinate_jobs where queue_name = 'notify'"
                               " and status = 'todo' and (scheduled_at is null or scheduled_at <= now())").fetchone()
            return int(row[0]) if row else 0

    try:
        for _ in range(10):  # a job's own follow-ups (dispatch -> send) may be queued as the worker stops
            _in_thread(drain)  # its own event loop: the test's thread may already run one (Playwright's)
            if not due():
                return
        raise AssertionError("notify jobs keep coming")
    finally:
        runtime.use(None)


@pytest.fixture(scope="session")
def notify_backlog(db: Database) -> None:
    """Once per session, before the first test here that runs a worker: drop the dispatch jobs that tests in other
    folders left queued (their events are never delivered by anyone, and a suite makes thousands), so each worker
    run here handles this folder's events, in seconds whatever ran before."""
    with db.as_service() as conn:
        conn.execute("delete from public.procrastinate_jobs where queue_name = 'notify' and status = 'todo'")


@pytest.fixture()
def run_jobs(notify_settings: Settings, db: Database, notify_backlog: None) -> Any:
    """Run the real worker until no notify job is left to run now (call it after the action)."""
    return lambda: drain_notify_jobs(notify_settings, db)


def events_of(admin_conn: psycopg.Connection, type_: str, **where: str) -> list[dict[str, Any]]:
    clauses = "".join(f" and {k} = %({k})s" for k in where)
    rows = admin_conn.execute(
        f"select row_to_json(e) from public.notification_events e where type = %(t)s{clauses} order by created_at",
        {"t": type_, **where}).fetchall()
    return [dict(r[0]) for r in rows]


def upstream_provider(conn: psycopg.Connection, keyring: KeyRing, base_url: str, secret: str,
                      rate_in: int = 1_000_000, rate_out: int = 2_000_000) -> str:
    """A provider on a loopback fake upstream with a stored admin key (and open to users' own keys at its address,
    as a remote vendor would be); returns its slug."""
    slug = f"ntf-{uuid.uuid4().hex[:8]}"
    row = conn.execute(
        """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
               credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order, free_for_byok)
           values (%s, %s, 'openai', %s, 'echo-1', true, 1.0, true, true, 90, true) returning id::text""",
        [slug, "Notify " + slug, base_url]).fetchone()
    assert row is not None
    conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate, context_window)
                    values (%s, 'echo-1', %s, %s, 8192)""", [row[0], rate_in, rate_out])
    ciphertext, kid = keyring.encrypt(secret, admin_aad(row[0]))
    conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label)
                    values (%s, %s, %s, %s, 'notify')""", [row[0], ciphertext, kid, secret[-4:]])
    return slug


@contextlib.contextmanager
def worker_processes(env: dict[str, str], logs: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """`start()` launches one real worker process (`python -m webapp.notify.worker`) with `env`, its output in
    `logs`; every one still running is stopped with SIGTERM (then killed) at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    root = Path(__file__).resolve().parents[2]

    def start() -> subprocess.Popen[bytes]:
        log = (logs / f"worker-{len(procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "webapp.notify.worker"], cwd=root, env={**os.environ, **env},
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

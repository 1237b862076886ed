"""Webhook delivery in the worker: fan-out of an outbox event to the endpoints that asked for it, one attempt per job,
retries with exponential backoff for about a day, and the endpoint disabled after a day of failures.

The delivery row is the truth; a procrastinate job is only the nudge to attempt it. Every state change and the job
for the next attempt are written in one transaction (webapp.notify.queue.defer runs in the caller's transaction), so
a delivery is never lost. A worker killed mid-attempt leaves the row leased until `locked_until`; the job's
stalled-job recovery or the periodic sweep then attempts it again with the same `webhook-id`, so a receiver that
already got it can tell (at-least-once, as the Standard Webhooks specification expects)."""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

import psycopg

from webapp.config import Settings
from webapp.crypto import DecryptError, KeyRing
from webapp.db import Database
from webapp.notify import webhook_delivery as wire
from webapp.repos import webhooks as repo

log = logging.getLogger(__name__)

TASK = "webhooks.deliver"
SWEEP_TASK = "webhooks.sweep"
QUEUE = "webhooks"
# Seconds after each failed attempt (before WEBHOOK_RETRY_SCALE): 11 attempts over ~23.7 hours, then failed.
RETRY_DELAYS = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800)
SWEEP_LIMIT = 500
DISABLED_REASON = "Disabled after failing for a day: no delivery succeeded. Fix the receiver, then enable it again."


def secret_aad(endpoint_id: str) -> str:
    return f"webhook:{endpoint_id}"


def payload(event_type: str, occurred_at: datetime, data: Any) -> str:
    """The body every attempt of one delivery sends: `{"type", "timestamp", "data"}`."""
    when = occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": when, "data": data}, separators=(",", ":"),
                      ensure_ascii=False, default=str)


def retry_delay(attempts: int, settings: Settings) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones, or None when it is time to give up."""
    if attempts > len(RETRY_DELAYS):
        return None
    return RETRY_DELAYS[attempts - 1] * settings.webhook_retry_scale


def _defer(conn: psycopg.Connection, delivery_id: str, scheduled_at: datetime | None = None) -> None:
    """Queue an attempt of this delivery in the caller's transaction. A job already waiting for it (the same
    queueing lock) is enough: the refusal is taken inside a savepoint so the transaction goes on."""
    from webapp.notify import queue

    try:
        with conn.transaction():
            queue.defer(conn, TASK, {"delivery_id": delivery_id}, queue=QUEUE,
                        queueing_lock=f"webhook:{delivery_id}", scheduled_at=scheduled_at)
    except psycopg.errors.UniqueViolation:
        pass


# -- fan-out (called by the outbox dispatcher inside its service_role transaction) -------------------------------------

def fan_out(conn: psycopg.Connection, event: Any) -> int:
    """One delivery per enabled endpoint that asked for this event type (the user's own, the team's, the site's),
    each queued in this transaction. Idempotent: a second call for the same event adds nothing."""
    user_id = str(event.user_id) if event.user_id else None
    team_id = str(event.team_id) if event.team_id else None
    endpoints = repo.matching_endpoints(conn, str(event.type), user_id, team_id)
    if not endpoints:
        return 0
    # Whom it is about, for a team's or the site's receiver (the event's own fields win on a clash).
    data = {"event_id": str(event.id), "user_id": user_id, "team_id": team_id, **dict(event.data or {})}
    body = payload(str(event.type), event.created_at, data)
    made = 0
    for endpoint_id in endpoints:
        delivery_id = repo.insert_delivery(conn, endpoint_id, str(event.id), str(event.type), body)
        if delivery_id is not None:
            _defer(conn, delivery_id)
            made += 1
    return made


def queue_test(conn: psycopg.Connection, endpoint_id: str) -> str:
    """A `webhook.test` delivery to one endpoint, queued now (service_role, in the caller's transaction)."""
    body = payload("webhook.test", datetime.now(UTC),
                   {"message": "A test event from Switchboard: your endpoint receives signed webhooks."})
    delivery_id = repo.insert_delivery(conn, endpoint_id, None, "webhook.test", body, test=True)
    assert delivery_id is not None  # event_id null never conflicts
    _defer(conn, delivery_id)
    return delivery_id


# -- one attempt ------------------------------------------------------------------------------------------------------

def attempt(db: Database, settings: Settings, keyring: KeyRing, delivery_id: str) -> str:
    """Attempt one delivery if it is due. Returns what happened: succeeded, retry, failed, or skipped (not due,
    leased by another worker, finished, or its endpoint disabled)."""
    lease = settings.webhook_timeout * 3 + 5  # connect (<= 5 s), the answer, its excerpt: each within a timeout
    with db.as_service() as conn:
        claimed = repo.claim(conn, delivery_id, lease)
        if claimed is None:
            _requeue_if_waiting(conn, delivery_id)
            return "skipped"
    aad = secret_aad(claimed.endpoint_id)
    try:
        secret = keyring.decrypt(claimed.secret_ciphertext, aad)
    except DecryptError:
        outcome = wire.Outcome(False, None, None, "the signing secret cannot be decrypted", 0)
    else:
        previous = None
        if claimed.previous_secret_ciphertext:
            with contextlib.suppress(DecryptError):  # the old secret is a courtesy: without it, sign with the new
                previous = keyring.decrypt(claimed.previous_secret_ciphertext, aad)
        outcome = wire.send(claimed.url, secret, claimed.id, claimed.body, timeout=settings.webhook_timeout,
                            allow_private=settings.webhook_allow_private_urls, previous=previous)
    with db.as_service() as conn:
        return _record(conn, settings, claimed, outcome)


def _record(conn: psycopg.Connection, settings: Settings, claimed: repo.Claimed, outcome: wire.Outcome) -> str:
    common = {"code": outcome.status, "excerpt": outcome.excerpt, "error": outcome.error,
              "duration_ms": outcome.duration_ms}
    if outcome.ok:
        repo.record(conn, claimed.id, claimed.endpoint_id, status="succeeded", next_in=None, **common)
        repo.endpoint_succeeded(conn, claimed.endpoint_id)
        return "succeeded"
    disabled = repo.endpoint_failed(conn, claimed.endpoint_id, settings.webhook_disable_after_seconds,
                                    DISABLED_REASON)
    delay = None if disabled else retry_delay(claimed.attempts, settings)
    if delay is None:
        repo.record(conn, claimed.id, claimed.endpoint_id, status="failed", next_in=None, **common)
        if disabled:
            log.warning("webhook endpoint %s disabled after a day of failures", claimed.endpoint_id)
        return "failed"
    next_at = repo.record(conn, claimed.id, claimed.endpoint_id, status="pending", next_in=delay, **common)
    _defer(conn, claimed.id, next_at)
    return "retry"


def _requeue_if_waiting(conn: psycopg.Connection, delivery_id: str) -> None:
    """A job that found its delivery leased (a worker died mid-attempt, or a duplicate job) leaves a job for when
    the lease ends, so the delivery is never stranded."""
    row = conn.execute("select greatest(next_attempt_at, locked_until) from public.webhook_deliveries"
                       " where id = %s and status = 'pending'", [delivery_id]).fetchone()
    if row is not None and row[0] is not None and row[0] > datetime.now(UTC):
        _defer(conn, delivery_id, row[0])


def sweep(db: Database) -> int:
    """Queue an attempt for every due delivery without a waiting job (a safety net: jobs are queued with every
    state change, so this finds only what a crash left behind). Finished deliveries are forgotten after
    NOTIFY_RETENTION_DAYS by the hourly `notify.prune` (webapp/notify/retention.py)."""
    with db.as_service() as conn:
        due = repo.due_deliveries(conn, SWEEP_LIMIT)
        for delivery_id, _ in due:
            _defer(conn, delivery_id)
    return len(due)


# -- procrastinate ----------------------------------------------------------------------------------------------------

def register_tasks(app: Any) -> None:
    """Add the webhook tasks to the worker's procrastinate App (webapp.notify.worker.build_app calls this)."""
    from webapp.notify import runtime

    @app.task(name=TASK, queue=QUEUE, pass_context=False)
    def deliver(delivery_id: str) -> str:
        ctx = runtime.current()
        return attempt(ctx.db, ctx.settings, KeyRing(ctx.settings.encryption_keys), delivery_id)

    @app.periodic(cron="* * * * *", periodic_id="webhooks-sweep")
    @app.task(name=SWEEP_TASK, queue=QUEUE)
    def sweep_task(timestamp: int) -> int:
        return sweep(runtime.current().db)

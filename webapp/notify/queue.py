"""Deferring procrastinate jobs inside the caller's transaction: the job exists exactly when the rows that need it
commit (an outbox; procrastinate's own defer uses a connection of its own, outside that transaction)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

QUEUE = "notify"


def defer(conn: psycopg.Connection, task_name: str, args: dict[str, Any], *, queue: str = QUEUE,
          lock: str | None = None, queueing_lock: str | None = None,
          scheduled_at: datetime | None = None, priority: int = 0) -> int:
    """Queue `task_name(**args)` in `conn`'s transaction (service_role); returns the job id. With `queueing_lock`,
    a second job while one with the same lock still waits is refused by procrastinate's unique index."""
    row = conn.execute(
        "select (public.procrastinate_defer_jobs_v1(array[row(%s, %s, %s, %s, %s, %s, %s)"
        "::public.procrastinate_job_to_defer_v1]))[1]",
        [queue, task_name, priority, lock, queueing_lock, Jsonb(args), scheduled_at]).fetchone()
    assert row is not None
    return int(row[0])

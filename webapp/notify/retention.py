"""Notification retention: finished outbox events, webhook deliveries (with their attempts) and finished
procrastinate jobs older than NOTIFY_RETENTION_DAYS are deleted in batches by public.notify_prune (migration
20261202200000), never anything pending or retrying. Run by `flask notify prune` and hourly by the worker
(`notify.prune`, a procrastinate periodic task)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

PRUNE_TASK = "notify.prune"
DEFAULT_BATCH = 5000


@dataclass
class Pruned:
    events: int = 0
    emails: int = 0
    webhook_deliveries: int = 0
    jobs: int = 0

    def add(self, row: tuple[Any, ...]) -> tuple[int, ...]:
        counts = tuple(int(n) for n in row)
        self.events += counts[0]
        self.emails += counts[1]
        self.webhook_deliveries += counts[2]
        self.jobs += counts[3]
        return counts

    def __str__(self) -> str:
        return (f"{self.events} event(s) (with {self.emails} email delivery row(s)), {self.webhook_deliveries} webhook"
                f" delivery(ies) with their attempts, {self.jobs} finished job(s)")


def prune(transaction: Callable[[], AbstractContextManager[Any]], days: int, batch: int = DEFAULT_BATCH,
          max_rounds: int | None = None) -> Pruned:
    """Call notify_prune(days, batch), one transaction per batch (`transaction()` yields a connection inside
    one), until every count comes back short of `batch` (or after `max_rounds`). days == 0 keeps everything."""
    pruned = Pruned()
    if days <= 0:
        return pruned
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        rounds += 1
        with transaction() as conn:
            row = conn.execute("select * from public.notify_prune(%s, %s)", [days, batch]).fetchone()
        counts = pruned.add(tuple(row) if row else (0, 0, 0, 0))
        if max(counts[0], counts[2], counts[3]) < batch:
            break
    return pruned

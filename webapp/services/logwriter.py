"""Request-log rows written by a background thread in batches, so the request path never waits on that insert."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import psycopg

from webapp.db import Database
from webapp.repos import request_logs
from webapp.repos import user_keys as keys_repo

log = logging.getLogger("switchboard.logwriter")
RETRIES = 16


class LogWriter:
    def __init__(self, db: Database, batch: int = 200) -> None:
        self.db = db
        self.batch = batch
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=100_000)
        self._thread = threading.Thread(target=self._run, name="switchboard-logwriter", daemon=True)
        self._thread.start()

    def submit(self, row: request_logs.RequestLog, used_key_id: str | None = None) -> None:
        try:
            self._queue.put_nowait((row, used_key_id))
        except queue.Full:
            log.error("request log queue full; dropping log row %s", row.request_id)

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything submitted so far is written (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < self.batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [i for i in items if isinstance(i, tuple)]
            if rows:
                self._write(rows)
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()

    def _write(self, rows: list[tuple[request_logs.RequestLog, str | None]]) -> None:
        # Retried with backoff for about a minute (a database restart, a failover); inserts are idempotent by
        # request id, so a retry after an unclear failure never doubles a row.
        for attempt in range(RETRIES):
            try:
                with self.db.as_service() as conn:
                    request_logs.insert_many(conn, [r for r, _ in rows])
                    for key_id in {k for _, k in rows if k}:
                        keys_repo.touch_last_used(conn, key_id)
                return
            except Exception as exc:
                if isinstance(exc, psycopg.Error) and not isinstance(exc, psycopg.OperationalError):
                    # The database refused a row (its user deleted meanwhile, a value out of range): one bad row
                    # must not take its batch with it, so write them one by one and keep the refused one aside.
                    if len(rows) > 1:
                        for row in rows:
                            self._write([row])
                    else:
                        self._reject(rows[0][0], exc)
                    return
                # The database is away (restart, failover): the gateway keeps serving; retry the batch.
                log.warning("writing %d request log rows failed (attempt %d): %s", len(rows), attempt + 1,
                            type(exc).__name__)
                time.sleep(min(0.2 * 2 ** attempt, 5.0))
        log.error("dropping %d request log rows after %d attempts", len(rows), RETRIES)

    def _reject(self, row: request_logs.RequestLog, exc: psycopg.Error) -> None:
        reason = f"{type(exc).__name__} {getattr(exc, 'sqlstate', '') or ''}".strip()
        log.error("request log row %s refused by the database (%s); kept in request_log_rejects", row.request_id,
                  reason)
        try:
            with self.db.as_service() as conn:
                request_logs.insert_reject(conn, row, reason)
        except psycopg.Error as err:
            log.error("keeping refused request log row %s failed: %s", row.request_id, type(err).__name__)

"""The notification worker: a procrastinate App on the project's Postgres (jobs in public.procrastinate_*, the
schema applied by migration 20261201500000), running `notify.dispatch` and `notify.send_email`, hourly
`notify.prune` (retention, webapp/notify/retention.py) plus whatever webapp.notify.webhooks registers. Start it
with `flask worker` or `python -m webapp.notify.worker`.

It connects with DATABASE_URL and switches to service_role (the jobs tables are the service role's alone). A worker
killed with kill -9 stops its heartbeat; any running worker re-queues that worker's jobs once the heartbeat is
WORKER_STALLED_SECONDS old, and the jobs' own rows make the re-run harmless."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

import procrastinate
import psycopg

from webapp import logging_setup
from webapp.config import Settings, load_settings
from webapp.notify import dispatcher, retention, runtime
from webapp.notify.queue import QUEUE

log = logging.getLogger("switchboard.notify")


async def _as_service_role(conn: psycopg.AsyncConnection[Any]) -> None:
    # DATABASE_URL logs in as `authenticator` (noinherit): the jobs tables are service_role's. Session-level, so
    # committed at once (the pool wants the connection idle; on the autocommit listener connection it is a no-op).
    await conn.execute("set role service_role")
    await conn.commit()


def build_app(settings: Settings) -> procrastinate.App:
    """The App with every notification task registered (webhooks' too, when that module exists)."""
    connector = procrastinate.PsycopgConnector(
        conninfo=settings.database_url, min_size=1, max_size=max(2, settings.worker_concurrency + 2),
        kwargs={"prepare_threshold": None}, configure=_as_service_role)
    app = procrastinate.App(connector=connector)
    retry = procrastinate.RetryStrategy(max_attempts=dispatcher.MAX_EMAIL_ATTEMPTS, exponential_wait=2)

    @app.task(name=dispatcher.DISPATCH, queue=QUEUE, retry=procrastinate.RetryStrategy(max_attempts=20,
                                                                                        exponential_wait=2))
    def dispatch(event_id: str) -> int:
        return dispatcher.dispatch(runtime.current(), event_id)

    @app.task(name=dispatcher.SEND_EMAIL, queue=QUEUE, retry=retry)
    def send_email(delivery_id: str) -> str:
        return dispatcher.send_email(runtime.current(), delivery_id)

    @app.periodic(cron="23 * * * *", periodic_id="notify-prune")
    @app.task(name=retention.PRUNE_TASK, queue=QUEUE)
    def prune(timestamp: int) -> int:
        rt = runtime.current()  # batches well inside the 15 s statement timeout, at most 100,000 rows of each
        pruned = retention.prune(rt.db.as_service, rt.settings.notify_retention_days, 1000, max_rounds=100)
        log.info("notification retention: deleted %s", pruned)
        return pruned.events + pruned.webhook_deliveries + pruned.jobs

    hooks = dispatcher.webhooks_module()
    if hooks is not None:
        hooks.register_tasks(app)
    return app


async def recover_stalled(app: procrastinate.App, stalled_seconds: float) -> int:
    """Re-queue the jobs of workers whose heartbeat is older than `stalled_seconds` (killed, not stopped)."""
    jobs = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_seconds)
    for job in jobs:
        log.warning("re-queueing job %s (%s) of a stalled worker", job.id, job.task_name)
        await app.job_manager.retry_job(job)
    return len(jobs)


async def _recovery_loop(app: procrastinate.App, stalled_seconds: float) -> None:
    while True:
        try:
            await recover_stalled(app, stalled_seconds)
        except Exception as exc:  # the database may be briefly away; try again next round
            log.error("stalled-job recovery failed: %s", type(exc).__name__)
        await asyncio.sleep(max(0.5, stalled_seconds / 3))


async def _exit_with_parent() -> None:
    """`make run` starts the worker beside gunicorn: when that parent is gone, stop as if sent SIGTERM."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


async def run(settings: Settings, exit_with_parent: bool = False) -> None:
    """Run until SIGINT/SIGTERM (procrastinate then lets running jobs finish, up to its graceful timeout)."""
    app = build_app(settings)
    async with app.open_async():
        recovery = asyncio.create_task(_recovery_loop(app, settings.worker_stalled_seconds))
        watch = asyncio.create_task(_exit_with_parent()) if exit_with_parent else None
        try:
            await app.run_worker_async(
                queues=None, concurrency=settings.worker_concurrency, delete_jobs="successful",
                update_heartbeat_interval=settings.worker_heartbeat_seconds,
                stalled_worker_timeout=settings.worker_stalled_seconds, shutdown_graceful_timeout=30,
                install_signal_handlers=True)
        finally:
            for task in (recovery, watch):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


def main(settings: Settings | None = None, exit_with_parent: bool = False) -> None:
    settings = settings or load_settings()
    logging_setup.configure(settings.log_level)
    rt = runtime.start(settings)
    where = repr(settings.smtp) if settings.smtp else "off (SMTP_URL not set)"
    log.info("notification worker started; email: %s", where)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # until procrastinate installs its own
    try:
        asyncio.run(run(settings, exit_with_parent))
    except KeyboardInterrupt:
        pass
    finally:
        rt.db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Switchboard's notification worker (email and webhooks).")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started it exits (make run: gunicorn)")
    from webapp.notify import worker as module  # the App then belongs to webapp.notify.worker, not __main__

    module.main(exit_with_parent=parser.parse_args().exit_with_parent)

"""What the worker's tasks run with: the settings and a Database (psycopg pool), set once when the worker starts
(tests set it for in-process runs)."""

from __future__ import annotations

from dataclasses import dataclass

from webapp.config import Settings
from webapp.db import Database


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database


_current: Runtime | None = None


def start(settings: Settings) -> Runtime:
    """Open the worker's Database and make it current."""
    global _current
    db = Database(settings.database_url, settings.db_pool_min, max(settings.db_pool_max, settings.worker_concurrency))
    db.open()
    _current = Runtime(settings, db)
    return _current


def use(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("the notification runtime is not started (webapp.notify.runtime.start)")
    return _current

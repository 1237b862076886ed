"""Whether the keyless local engines (LM Studio, Ollama on a loopback or private address, no key) are answering.

A keyless preset costs nothing to list, so /v1/models would offer it even with nothing listening. Instead each
engine is probed (GET <base_url>/models, a short timeout) at most once per `ttl` seconds per worker, on demand when
a caller asks after the last result went stale: a /v1/models call never waits for more than one probe per engine,
and most calls wait for none. Any HTTP answer counts as up (a 401 or 404 still says a server is there); a refused
connection, a timeout or a 5xx counts as down. Health is a hint for listing, not a security decision, so a
per-worker cache is fine."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from webapp.providers.transport import build_session, join_url

PROBE_TIMEOUT = (1.0, 1.5)  # connect, read: a local engine answers in milliseconds or not at all


@dataclass(frozen=True)
class EngineState:
    up: bool
    checked_at: float  # time.time() of the probe
    detail: str  # "HTTP 200", "connection refused", ...


def probe(base_url: str, session: requests.Session | None = None) -> EngineState:
    """One GET of the engine's model list."""
    session = session or build_session(guarded=False)
    try:
        resp = session.get(join_url(base_url, "models"), timeout=PROBE_TIMEOUT, allow_redirects=False)
        resp.close()
    except requests.Timeout:
        return EngineState(False, time.time(), "no answer in time")
    except requests.ConnectionError:
        return EngineState(False, time.time(), "connection refused")
    except requests.RequestException as exc:
        return EngineState(False, time.time(), type(exc).__name__)
    return EngineState(resp.status_code < 500, time.time(), f"HTTP {resp.status_code}")


class EngineHealth:
    """Cached probe results per engine base URL."""

    def __init__(self, ttl: float, prober: Callable[[str], EngineState] | None = None) -> None:
        self.ttl = ttl
        self._session = build_session(guarded=False)
        self._prober = prober or (lambda url: probe(url, self._session))
        self._states: dict[str, EngineState] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def state(self, base_url: str) -> EngineState:
        """The engine's state, probing first when the last result is older than the TTL. While another thread
        probes the same engine, its last known state is answered (the first call of all waits for the probe)."""
        known = self._states.get(base_url)
        if known is not None and time.time() - known.checked_at < self.ttl:
            return known
        with self._guard:
            lock = self._locks.setdefault(base_url, threading.Lock())
        if not lock.acquire(blocking=known is None):
            return known  # type: ignore[return-value]  # blocking=False only when known is set
        try:
            current = self._states.get(base_url)
            if current is not None and time.time() - current.checked_at < self.ttl:
                return current  # another thread probed while this one waited
            fresh = self._prober(base_url)
            self._states[base_url] = fresh
            return fresh
        finally:
            lock.release()

    def is_up(self, base_url: str) -> bool:
        return self.state(base_url).up

    def known(self, base_url: str) -> EngineState | None:
        """The last result without probing (for pages that must not wait)."""
        return self._states.get(base_url)

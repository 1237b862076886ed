"""proxy_bench's in-process measurements (Flask test client, this process, the benchmark's database and upstream):
the Postgres statements per member request, and --profile's stage-by-stage breakdown of one request."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import psycopg


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else float("nan")


# ---------------------------------------------------------------------------------------------------------------
# Profiling (optional): where one request's wall time goes, measured in this process (Flask test client, one
# thread, same database and upstream), by wrapping the gateway's stages with timers.

STAGES = [  # (module, attribute path, label); a missing attribute (another version of the app) is skipped
    ("webapp.auth.jwt", "TokenVerifier.verify", "JWT verify (python-jose HS256)"),
    ("webapp.services.chat_request", "parse", "body validation"),
    ("webapp.services.gateway", "Gateway._guess", "plan + price from the held context (tiktoken, router)"),
    ("webapp.services.gateway", "Gateway._begin", "begin: principal + context + admission + reserve (1 statement)"),
    ("webapp.services.router", "plan", "route plan (only when the held context was stale)"),
    ("webapp.services.credits", "reserve_flex", "credits reserve (only when the held context was stale)"),
    ("webapp.services.gateway", "Gateway._try_routes", "upstream request (json: whole answer; stream: open)"),
    ("webapp.services.credits", "close_logged", "close: settle + receipt row + stream slot (1 statement)"),
    ("webapp.services.gateway", "Gateway._release_stream", "stream slot release (separate: BYOK or failure)"),
    ("webapp.services.logwriter", "LogWriter.submit", "log row hand-off (queue)"),
]


def stage_profile(fx: Any, target: Any, n: int) -> str:
    import importlib

    from webapp import create_app

    main_thread = threading.get_ident()
    spent: dict[str, list[float]] = {}  # label -> [wall s, CPU s of the request thread]
    patches: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: str) -> None:
        orig = owner.__dict__[name]

        def timed(*a: Any, **k: Any) -> Any:
            if threading.get_ident() != main_thread:
                return orig(*a, **k)
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return orig(*a, **k)
            finally:
                acc = spent.setdefault(label, [0.0, 0.0])
                acc[0] += time.perf_counter() - w0
                acc[1] += time.thread_time() - c0

        patches.append((owner, name, orig))
        setattr(owner, name, timed)

    for module, path, label in STAGES:
        owner: Any = importlib.import_module(module)
        *parents, name = path.split(".")
        for p in parents:
            owner = getattr(owner, p, None)
        if owner is not None and name in getattr(owner, "__dict__", {}):
            wrap(owner, name, label)
    round_trips = [0]
    orig_wait = psycopg.Connection.wait

    def counting_wait(self: Any, *a: Any, **k: Any) -> Any:
        if threading.get_ident() == main_thread:
            round_trips[0] += 1
        return orig_wait(self, *a, **k)

    psycopg.Connection.wait = counting_wait  # type: ignore[method-assign]
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", fx.env.get("TIKTOKEN_CACHE_DIR", ""))
    app = create_app(fx.env)
    client = app.test_client()
    lines = []
    try:
        for stream in (False, True):
            body = json.loads(target.body(stream))
            headers = {"Authorization": f"Bearer {target.auth}"}

            def one(body: dict[str, Any] = body, headers: dict[str, str] = headers) -> None:
                r = client.post("/v1/chat/completions", json=body, headers=headers)
                data = r.get_data()
                if r.status_code != 200:
                    raise RuntimeError(f"in-process request failed: {r.status_code} {data[:300]!r}")

            for _ in range(30):
                one()
            spent.clear()
            round_trips[0] = 0
            w0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(n):
                one()
            wall, cpu = (time.perf_counter() - w0) * 1000 / n, (time.thread_time() - c0) * 1000 / n
            mode = "stream" if stream else "json"
            lines.append(f"  {mode}: {wall:.2f} ms wall and {cpu:.2f} ms CPU (request thread) per request; "
                         f"{round_trips[0] / n:.1f} psycopg waits per request (one per statement sent, + 1 per unit)")
            lines.append(f"    {'wall ms':>8} {'CPU ms':>7}  stage")
            known_w = known_c = 0.0
            for _, _, label in STAGES:
                if label in spent:
                    w, c = (x * 1000 / n for x in spent[label])
                    known_w, known_c = known_w + w, known_c + c
                    lines.append(f"    {w:8.2f} {c:7.2f}  {label}")
            lines.append(f"    {wall - known_w:8.2f} {cpu - known_c:7.2f}  rest: Flask/werkzeug + after-request "
                         f"hooks, JSON{', SSE relay incl. reading the upstream stream' if stream else ''}")
        rtt = db_round_trip_ms(fx)
        lines.append(f"  one trivial round trip to Postgres (select 1) from this process: {rtt:.3f} ms")
        app.extensions["switchboard"].logs.flush()
    finally:
        psycopg.Connection.wait = orig_wait  # type: ignore[method-assign]
        for owner, name, orig in patches:
            setattr(owner, name, orig)
        app.extensions["switchboard"].db.close()
    return "\n".join(lines)


def db_round_trip_ms(fx: Any, n: int = 300) -> float:
    with psycopg.connect(fx.env["DATABASE_URL"], autocommit=True) as conn:
        for _ in range(20):
            conn.execute("select 1").fetchone()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute("select 1").fetchone()
            times.append((time.perf_counter() - t0) * 1000)
    return percentile(times, 0.5)


def round_trips(fx: Any, targets: dict[str, Any], n: int = 50) -> dict[tuple[str, str], float]:
    """Statements sent to Postgres per member request (each is one network round trip), counted in this process
    (Flask test client, same database and upstream) once the caller's context is held (after a warm-up)."""
    import psycopg.client_cursor
    import psycopg.cursor

    from webapp import create_app

    main_thread = threading.get_ident()
    count = [0]
    patched = []
    for cls in (psycopg.cursor.Cursor, psycopg.client_cursor.ClientCursor):
        orig = cls._execute_send

        def counted(self: Any, *a: Any, _orig: Any = orig, **k: Any) -> Any:
            if threading.get_ident() == main_thread:
                count[0] += 1
            return _orig(self, *a, **k)

        patched.append((cls, orig))
        cls._execute_send = counted  # type: ignore[method-assign]
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", fx.env.get("TIKTOKEN_CACHE_DIR", ""))
    app = create_app(fx.env)
    client = app.test_client()
    out = {}
    try:
        for stream in (False, True):
            for name in ("switchboard", "sb-apikey"):
                body = json.loads(targets[name].body(stream))
                headers = {"Authorization": f"Bearer {targets[name].auth}"}
                for i in range(10 + n):
                    if i == 10:
                        count[0] = 0
                    r = client.post("/v1/chat/completions", json=body, headers=headers)
                    r.get_data()
                    if r.status_code != 200:
                        raise RuntimeError(f"in-process request failed: {r.status_code}")
                out[("stream" if stream else "json", name)] = count[0] / n
    finally:
        for cls, orig in patched:
            cls._execute_send = orig  # type: ignore[method-assign]
        app.extensions["switchboard"].logs.flush()
        app.extensions["switchboard"].db.close()
    return out

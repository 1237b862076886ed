"""Pieces of the fault-under-load test: Switchboard under real gunicorn, fake upstream providers, users, the
request kinds with the outcomes each may have, a bounded load driver, and the classification of what came back."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import psycopg
import requests

from tests.support.upstreams import REPLY, FakeUpstream
from webapp.config import Settings
from webapp.crypto import KeyRing, admin_aad

ROOT = Path(__file__).resolve().parents[2]

CANARY = {
    "flaky": "sk-canary-load-flaky-3b7e1d9c0a44",
    "ok": "sk-canary-load-ok-91c4a7e2f05b",
    "an": "sk-ant-canary-load-an-6d2f8a1b3c9e",
    "byok": "sk-canary-load-byok-user-5e8d7c6b4a3f",
    "bflaky": "sk-canary-load-bflaky-user-0f1e2d3c4b5a",
}
RATE_IN, RATE_OUT = 1_000_000, 2_000_000  # micro-credits per 1K tokens
FAULT_MODELS = ("echo-1@cut:3", "echo-1@stall:2", "echo-1@error_event:2", "echo-1@hang", "echo-1@500",
                "echo-1@drip:0.2", "echo-1@drip:0.1")
PROMPT = [{"role": "user", "content": "Please say the pangram about the fox"}]
MAX_TOKENS = 50


# ---------------------------------------------------------------------------------------------------------------
# gunicorn

class GunicornServer:
    """`gunicorn -c gunicorn.conf.py wsgi:app` on a free loopback port, output to a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int, workers: int = 2, threads: int = 16) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("GUNICORN_", "WEB_CONCURRENCY", "DATABASE_", "SWITCHBOARD_"))}
        self.env = {**base, **env, "WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": str(threads),
                    "GUNICORN_TIMEOUT": "30", "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    def start(self, timeout: float = 60.0) -> None:
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self._log = self.log_path.open("wb")
        config = Path(__file__).with_name("gunicorn_load.conf.py")
        self.proc = subprocess.Popen(
            [str(gunicorn), "-c", str(config), "--bind", f"127.0.0.1:{self.port}", "wsgi:app"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            with contextlib.suppress(requests.RequestException):
                r = requests.get(self.url + "/readyz", timeout=2)
                r.close()
                if r.status_code == 200 and len(self.worker_pids()) >= int(self.env["WEB_CONCURRENCY"]):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not become ready:\n" + self.log_text()[-4000:])
            time.sleep(0.2)

    def worker_pids(self) -> set[int]:
        if self.proc is None:
            return set()
        out = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                out.add(int(stat.parent.name))
        return out

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        workers = self.worker_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # quick shutdown: nothing of ours is in flight any more
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pid in workers:  # orphaned workers, should the master have died first
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
        self.proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# ---------------------------------------------------------------------------------------------------------------
# providers and users

def add_provider(conn: psycopg.Connection, keyring: KeyRing, slug: str, style: str, base: str, mult: str, order: int,
                 admin_secret: str | None, models: tuple[str, ...]) -> str:
    row = conn.execute(
        """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
               credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order)
           values (%s, %s, %s, %s, 'echo-1', true, %s, true, true, %s) returning id::text""",
        [slug, slug.upper(), style, base, mult, order]).fetchone()
    assert row is not None
    pid = row[0]
    for model in models:
        conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate,
                        context_window) values (%s, %s, %s, %s, 8192)""", [pid, model, RATE_IN, RATE_OUT])
    if admin_secret:
        ciphertext, kid = keyring.encrypt(admin_secret, admin_aad(pid))
        conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label)
                        values (%s, %s, %s, %s, 'load')""", [pid, ciphertext, kid, admin_secret[-4:]])
    return pid


@dataclass
class User:
    name: str
    group: str  # member, poor, byok_header, byok_stored
    id: str
    token: str
    granted: int

    @property
    def mode(self) -> str:
        return "member" if self.group in ("member", "poor") else "byok"


def make_user(conn: psycopg.Connection, settings: Settings, name: str, group: str, grant: int) -> User:
    import uuid

    from webapp.auth.tokens import mint_access_token
    from webapp.repos import credits as credits_repo
    from webapp.repos import users as users_repo

    user = users_repo.create(conn, f"{name}-{uuid.uuid4().hex[:8]}@load.test", "correct horse battery")
    credits_repo.adjust(conn, user.id, grant, "load test grant", None)
    token = mint_access_token(settings, user_id=user.id, email=user.email, app_metadata=user.app_metadata,
                              user_metadata=user.user_metadata, session_id=users_repo.create_session(conn, user.id),
                              ttl=3600)
    return User(name, group, user.id, token, grant)


# ---------------------------------------------------------------------------------------------------------------
# request kinds and outcomes

OK = "ok"
FLAKY_OUTCOMES = frozenset({OK, "429:upstream_rate_limited", "502:upstream_error", "504:upstream_timeout",
                            "502:upstream_unreachable", "stream:upstream_stream_interrupted"})


@dataclass(frozen=True)
class Kind:
    name: str
    group: str
    model: str
    stream: bool | None  # None: either, chosen at random
    weight: int
    expect: frozenset[str]
    byok_target: str | None = None  # upstream name for X-BYOK-* headers
    abort_after: int | None = None  # client hangs up after this many content deltas


def kinds() -> list[Kind]:
    s = "stream:upstream_stream_interrupted"
    return [
        Kind("member_json_fallback", "member", "echo-1", False, 12, frozenset({OK})),
        Kind("member_stream_fallback", "member", "echo-1", True, 12, frozenset({OK, s})),
        Kind("member_anthropic", "member", "lt-an/echo-1", None, 8, frozenset({OK})),
        Kind("member_cut", "member", "lt-ok/echo-1@cut:3", True, 5, frozenset({s})),
        Kind("member_stall", "member", "lt-ok/echo-1@stall:2", True, 3, frozenset({s})),
        Kind("member_error_event", "member", "lt-ok/echo-1@error_event:2", True, 3, frozenset({s})),
        Kind("member_hang", "member", "lt-ok/echo-1@hang", None, 4, frozenset({"504:upstream_timeout"})),
        Kind("member_500", "member", "lt-ok/echo-1@500", False, 2, frozenset({"502:upstream_error"})),
        Kind("member_drip", "member", "lt-ok/echo-1@drip:0.2", True, 5, frozenset({OK})),
        Kind("member_abort", "member", "lt-ok/echo-1@drip:0.2", True, 4, frozenset({"aborted"}), abort_after=3),
        Kind("poor_member", "poor", "lt-ok/echo-1", None, 6, frozenset({OK, "402:insufficient_credits"})),
        Kind("byok_header", "byok_header", "echo-1", None, 10, frozenset({OK}), byok_target="byok"),
        Kind("byok_header_cut", "byok_header", "echo-1@cut:3", True, 2, frozenset({s}), byok_target="byok"),
        Kind("byok_header_flaky", "byok_header", "echo-1", None, 6, FLAKY_OUTCOMES, byok_target="bflaky"),
        Kind("byok_stored", "byok_stored", "lt-byok/echo-1", None, 10, frozenset({OK})),
        Kind("byok_stored_flaky", "byok_stored", "lt-bflaky/echo-1", None, 4, FLAKY_OUTCOMES),
        # weight 0: never drawn at random; sent on purpose while Postgres restarts (see the test)
        Kind("restart_probe_admission", "member", "lt-ok/echo-1", False, 0, frozenset({OK})),
        Kind("restart_probe_reserve", "member", "lt-ok/echo-1", False, 0, frozenset({OK})),
        Kind("restart_probe_stream_end", "member", "lt-ok/echo-1@drip:0.1", True, 0, frozenset({OK})),
    ]


@dataclass
class Outcome:
    kind: str
    user: str
    group: str
    stream: bool
    started: float
    ended: float
    outcome: str  # "ok", "<status>:<code>", "stream:<code>", "aborted", or a failure: "broken:...", ...
    request_id: str | None = None
    detail: str = ""
    credits_header: str | None = None

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def _error_code(body: Any) -> tuple[str | None, bool]:
    """The code of an OpenAI-shaped error body and whether the shape is right (message, type, code strings)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None, False
    shaped = all(isinstance(err.get(k), str) and err.get(k) for k in ("message", "type", "code"))
    return (err.get("code") if isinstance(err.get("code"), str) else None), shaped


def _request_body(model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": PROMPT, "max_tokens": MAX_TOKENS}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def do_stream(session: requests.Session, url: str, headers: dict[str, str], model: str,
              abort_after: int | None, first_byte: threading.Event | None = None
              ) -> tuple[str, str | None, str, str | None]:
    """(outcome, request id, detail, credits) for one streamed request sent with requests, SSE read by hand."""
    with session.post(url + "/v1/chat/completions", json=_request_body(model, True), headers=headers, stream=True,
                      timeout=(5, 20)) as resp:
        rid = resp.headers.get("X-Request-Id")
        if resp.status_code != 200:
            try:
                body = resp.json()
            except ValueError:
                return f"unshaped:{resp.status_code}", rid, resp.text[:200], None
            code, shaped = _error_code(body)
            return (f"{resp.status_code}:{code}" if shaped else f"unshaped:{resp.status_code}"), rid, \
                json.dumps(body)[:300], None
        if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
            return "broken:not_sse", rid, resp.text[:200], None
        content: list[str] = []
        deltas = 0
        error: str | None = None
        done = False
        receipt: dict[str, Any] | None = None
        try:
            for line in resp.iter_lines():
                if not line or line.startswith(b":"):  # an SSE comment (the usage-less stream's receipt) is no event
                    continue
                if not line.startswith(b"data: "):
                    return "broken:not_data", rid, line[:200].decode(errors="replace"), None
                data = line[6:]
                if data == b"[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    code, shaped = _error_code(chunk)
                    error = code if shaped else "unshaped"
                    continue
                if first_byte is not None:
                    first_byte.set()
                if chunk.get("switchboard"):
                    receipt = chunk["switchboard"]
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        content.append(piece)
                        deltas += 1
                if abort_after is not None and deltas >= abort_after:
                    return "aborted", rid, "", None  # leaving the with-block closes the connection mid-stream
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                requests.exceptions.Timeout) as exc:
            if "timed out" in str(exc).lower():  # requests reports a read timeout mid-body as ConnectionError
                return "hung:read_timeout", rid, f"after {deltas} deltas", None
            return "broken:truncated", rid, f"{type(exc).__name__} after {deltas} deltas, error={error}", None
        credits = receipt.get("credits") if receipt else None
        if error is not None:
            return (f"stream:{error}" if done else f"broken:error_without_done:{error}"), rid, "", None
        if not done:
            return "broken:no_done", rid, f"{deltas} deltas", None
        if "".join(content) != REPLY:
            return "bad_content", rid, "".join(content)[:200], None
        if receipt is None:
            return "bad_content:no_receipt", rid, "", None
        return OK, rid, "", credits


def do_json(client: openai.OpenAI, headers: dict[str, str], model: str) -> tuple[str, str | None, str, str | None]:
    """One non-streamed request through the official openai SDK."""
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=PROMPT, max_tokens=MAX_TOKENS, extra_headers=headers or None)  # type: ignore
    except openai.APIStatusError as exc:
        code, shaped = _error_code({"error": exc.body})
        outcome = f"{exc.status_code}:{code}" if shaped else f"unshaped:{exc.status_code}"
        return outcome, exc.request_id, json.dumps(exc.body)[:300], None
    except openai.APITimeoutError:
        return "hung:read_timeout", None, "", None
    except openai.APIConnectionError as exc:
        return "broken:connection", None, repr(exc.__cause__)[:200], None
    rid = raw.headers.get("x-request-id")
    completion = raw.parse()
    text = completion.choices[0].message.content if completion.choices else None
    if text != REPLY:
        return "bad_content", rid, str(text)[:200], None
    return OK, rid, "", raw.headers.get("x-switchboard-credits")


# ---------------------------------------------------------------------------------------------------------------
# the load

@dataclass
class Timeline:
    t0: float = field(default_factory=time.monotonic)
    phases: list[tuple[float, str]] = field(default_factory=list)
    restart: tuple[float, float] | None = None
    restart_error: str | None = None

    def at(self) -> float:
        return time.monotonic() - self.t0


PHASES = (None, "500", "hang", "429", "refuse", "drip:0.15", "cut:4", None, "stall:2", "503", "hang", None)


def probe(url: str, user: User, kind: str, timeline: Timeline, first_byte: threading.Event | None = None
          ) -> Outcome:
    """One request of a restart_probe_* kind, sent by the restart itself; `first_byte` is set when a streamed
    probe's first chunk arrived (its stream slot row exists by then)."""
    k = next(k for k in kinds() if k.name == kind)
    started = timeline.at()
    try:
        if k.stream:
            with requests.Session() as session:
                result = do_stream(session, url, {"Authorization": f"Bearer {user.token}"}, k.model, None,
                                   first_byte)
        else:
            with openai.OpenAI(base_url=url + "/v1", api_key=user.token, max_retries=0, timeout=20) as client:
                result = do_json(client, {}, k.model)
    except Exception as exc:
        result = (f"client_error:{type(exc).__name__}", None, str(exc)[:200], None)
    return Outcome(kind, user.name, user.group, bool(k.stream), started, timeline.at(), *result)


def run_load(url: str, users: dict[str, list[User]], upstreams: dict[str, FakeUpstream],
             restart_db: Callable[[Timeline], list[Outcome]],
             *, threads: int = 16, max_requests: int = 400, max_seconds: float = 40.0, phase_seconds: float = 1.2,
             restart_after: float = 12.0, restart_at_count: int = 160, seed: int = 6) -> tuple[list[Outcome],
                                                                                               Timeline, list[str]]:
    """The mixed load: `threads` clients until `max_requests` were sent or `max_seconds` passed. Meanwhile the
    flaky upstreams change behaviour every `phase_seconds` and Postgres restarts once. Returns the outcomes, the
    timeline and the names of client threads that did not finish (hung)."""
    all_kinds = kinds()
    weights = [k.weight for k in all_kinds]
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    sent = [0]
    stop = threading.Event()
    timeline = Timeline()
    flaky = [upstreams["flaky"], upstreams["bflaky"]]

    def take() -> bool:
        with lock:
            if sent[0] >= max_requests or timeline.at() >= max_seconds or stop.is_set():
                return False
            sent[0] += 1
            return True

    def conductor() -> None:
        n = 0
        next_phase = 0.0
        while not stop.is_set():
            now = timeline.at()
            if now >= next_phase:
                spec = PHASES[n % len(PHASES)]
                for up in flaky:
                    up.behaviour = spec
                timeline.phases.append((now, spec or "ok"))
                n += 1
                next_phase += phase_seconds
            if timeline.restart is None and (now >= restart_after or sent[0] >= restart_at_count):
                start = timeline.at()
                try:
                    probes = restart_db(timeline)
                except Exception as exc:  # reported by the test
                    timeline.restart_error = repr(exc)
                    probes = []
                timeline.restart = (start, timeline.at())
                with lock:
                    outcomes.extend(probes)
            stop.wait(0.05)
        for up in flaky:
            up.behaviour = None

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)  # noqa: S311 - a reproducible request mix
        session = requests.Session()
        sdk: dict[str, openai.OpenAI] = {}
        try:
            while take():
                kind = rng.choices(all_kinds, weights)[0]
                user = rng.choice(users[kind.group])
                stream = kind.stream if kind.stream is not None else rng.random() < 0.5
                headers: dict[str, str] = {}
                if kind.byok_target:
                    target = upstreams[kind.byok_target]
                    headers = {"X-BYOK-API-Key": CANARY[kind.byok_target],
                               "X-BYOK-Provider": "lt-byok" if kind.byok_target == "byok" else "lt-bflaky",
                               "X-BYOK-Base-URL": target.base_url}
                started = timeline.at()
                try:
                    if stream:
                        result = do_stream(session, url, {"Authorization": f"Bearer {user.token}", **headers},
                                           kind.model, kind.abort_after)
                    else:
                        if user.name not in sdk:
                            sdk[user.name] = openai.OpenAI(base_url=url + "/v1", api_key=user.token, max_retries=0,
                                                           timeout=20)
                        result = do_json(sdk[user.name], headers, kind.model)
                except requests.exceptions.Timeout:
                    result = ("hung:timeout", None, "", None)
                except Exception as exc:  # any client-side surprise is an outcome to report, not a crash
                    result = (f"client_error:{type(exc).__name__}", None, str(exc)[:200], None)
                outcome, rid, detail, credits = result
                with lock:
                    outcomes.append(Outcome(kind.name, user.name, user.group, stream, started, timeline.at(),
                                            outcome, rid, detail, credits))
        finally:
            session.close()
            for c in sdk.values():
                c.close()

    conductor_thread = threading.Thread(target=conductor, name="load-conductor", daemon=True)
    conductor_thread.start()
    workers = [threading.Thread(target=client, args=(i,), name=f"load-client-{i}", daemon=True)
               for i in range(threads)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + max_seconds + 45  # the longest request is bounded well below this
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
    hung = [w.name for w in workers if w.is_alive()]
    stop.set()
    conductor_thread.join(30)
    return outcomes, timeline, hung


def in_window(o: Outcome, timeline: Timeline, margin: float = 3.0) -> bool:
    """Did this request overlap the database restart (plus `margin` seconds for the pools to reconnect)?"""
    if timeline.restart is None:
        return False
    start, end = timeline.restart
    return o.started <= end + margin and o.ended >= start

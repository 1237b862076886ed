"""Schemathesis against /api/openapi.json on a real server: the app on a loopback port, a real signed-in user and a
real admin (bearer tokens minted the way sign-in mints them). In order:

- every documented operation, one test each: valid and invalid cases generated from the document;
- scripted requests with real ids and models (routing, credit reservation, BYOK headers, stored keys, key rotation
  and revocation, credit grants, reports over real rows, and a JSON and a streamed success from a fake provider);
- stateful runs along the document's links (list providers -> change one, add a key -> revoke it, find a user ->
  grant credits, list logs -> read one);
- the bugs the fuzzer found, pinned as plain requests.

Every response must: not be a 5xx (the chat route's documented 502/504 for an unreachable or slow provider aside);
conform to its documented status, content type, headers and schema (each streamed event too); reject invalid input
with a 4xx and a missing or wrong token with 401; and hold no stack trace and no secret (either token, SECRET_KEY,
SUPABASE_JWT_SECRET, the ENCRYPTION_KEYS material, the database passwords, or any API key stored during the run).

No request may reach the internet: every seeded provider's base URL points at a closed loopback port for the run, and
the process never resolves a name other than localhost and never connects anywhere but loopback (the live server
runs in this process, so BYOK headers, key tests and admin-edited base URLs all stay on this machine). Rate limits
are off for the fuzz app. The presets are restored afterwards.

Budget: FUZZ_EXAMPLES examples per operation (default 25: well under a minute on 2 cores) and FUZZ_STATEFUL_EXAMPLES
stateful scenarios (default max(20, FUZZ_EXAMPLES)); FUZZ_SEED replays a run. `make fuzz` runs a longer budget."""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import hypothesis
import hypothesis.errors
import jsonschema_rs
import psycopg
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from psycopg.types.json import Jsonb
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.admin import temp_providers
from tests.support.live import serve
from tests.support.upstreams import start_openai_upstream
from webapp import create_app
from webapp.config import Settings
from webapp.db import Database
from webapp.repos import credits as credits_repo
from webapp.services import openapi_doc
from webapp.services.credits import MICRO

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ_STATEFUL_EXAMPLES = int(os.environ.get("FUZZ_STATEFUL_EXAMPLES", str(max(20, FUZZ_EXAMPLES))))
FUZZ_SEED = os.environ.get("FUZZ_SEED")
UNREACHABLE_BASE_URL = "http://127.0.0.1:9/v1"  # discard port on loopback: nothing listens, refused at once
STACK_TRACE_MARKERS = ("Traceback", 'File "', "psycopg", '.py", line')
KEY_OPERATIONS = {"putUserKey", "adminAddKey"}

pytestmark = pytest.mark.timeout(max(300, 120 + FUZZ_EXAMPLES * 8 + FUZZ_STATEFUL_EXAMPLES * 4))


# -- no internet: loopback-only DNS and connections ----------------------------------------------------------------

def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _is_ip_literal(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(str(host).strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


@dataclass
class NetworkGuard:
    """Replaces socket.getaddrinfo and socket.socket.connect for the run: loopback only. What was refused is kept
    (and reported), never retried elsewhere."""

    refused: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> NetworkGuard:
        self._getaddrinfo, self._connect, self._connect_ex = (socket.getaddrinfo, socket.socket.connect,
                                                              socket.socket.connect_ex)
        guard = self

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            # IP literals "resolve" locally (no DNS query), so the app's own address policy still sees them and
            # answers as in production (a private address is refused with 400); names other than localhost are
            # never looked up.
            if host is not None and not _is_loopback(host) and not _is_ip_literal(host):
                guard._refuse(f"resolve {host!r}")
                raise socket.gaierror(socket.EAI_NONAME, "fuzz network guard: only loopback names resolve")
            return guard._getaddrinfo(host, *args, **kwargs)

        def checked(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
                guard._refuse(f"connect {address!r}")
                raise ConnectionRefusedError("fuzz network guard: only loopback connections")

        def connect(sock: socket.socket, address: Any) -> None:
            checked(sock, address)
            return guard._connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            checked(sock, address)
            return guard._connect_ex(sock, address)

        socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        socket.getaddrinfo = self._getaddrinfo  # type: ignore[assignment]
        socket.socket.connect = self._connect  # type: ignore[method-assign]
        socket.socket.connect_ex = self._connect_ex  # type: ignore[method-assign]

    def _refuse(self, what: str) -> None:
        with self._lock:
            self.refused.append(what)


def test_network_guard_refuses_anything_but_loopback() -> None:
    with NetworkGuard() as guard:
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("api.openai.com", 443)
        assert socket.getaddrinfo("8.8.8.8", 53)[0][4][0] == "8.8.8.8"  # a literal: no DNS query...
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("8.8.8.8", 53))  # ...and no connection
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock, pytest.raises(ConnectionRefusedError):
            sock.connect_ex(("2606:4700::1111", 443, 0, 0))
        assert socket.getaddrinfo("127.0.0.1", 80) and socket.getaddrinfo("localhost", 80)
    assert len(guard.refused) == 3
    assert socket.getaddrinfo.__module__ == "socket"  # restored


# -- the fuzz environment -------------------------------------------------------------------------------------------

@dataclass
class FuzzEnv:
    base_url: str
    user_token: str
    admin_token: str
    secrets: dict[str, str]
    guard: NetworkGuard
    auth: dict[tuple[str, str], str]  # (METHOD, path) -> "user" | "admin" | "none"
    user_id: str
    app: Any
    admin_url: str
    reset: Any = None  # () -> None: presets, the user's settings, credits and stored key as at the start
    stored_keys: set[str] = field(default_factory=set)  # API keys saved by fuzzed requests (see observe)
    seen_inputs: set[str] = field(default_factory=set)  # every other string a request carried
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)

    def headers_for(self, case: Case) -> dict[str, str]:
        kind = self.auth[(case.operation.method.upper(), case.operation.path)]
        if kind == "none":
            return {}
        return {"Authorization": f"Bearer {self.admin_token if kind == 'admin' else self.user_token}"}

    def observe(self, case: Case, response: Response) -> None:
        """Count statuses; remember the API keys successful key saves stored, and every other string sent (a
        string the fuzzer also sent elsewhere may be echoed legitimately, so it cannot serve as a leak canary)."""
        op_id = case.operation.definition.raw.get("operationId", case.operation.label)
        body = case.body if isinstance(case.body, dict) else {}
        strings: list[str] = []
        _collect_strings(case.path_parameters, strings)
        _collect_strings(case.query, strings)
        _collect_strings(case.headers, strings)
        _collect_strings({k: v for k, v in body.items() if not (op_id in KEY_OPERATIONS and k == "api_key")}
                         if isinstance(case.body, dict) else case.body, strings)
        with self.lock:
            by_status = self.statuses.setdefault(case.operation.label, {})
            by_status[response.status_code] = by_status.get(response.status_code, 0) + 1
            self.seen_inputs.update(s for s in strings if len(s) >= 8)
            key = body.get("api_key")
            if op_id in KEY_OPERATIONS and response.status_code in (200, 201) and isinstance(key, str):
                key = key.strip()
                if len(key) >= 16 and len(set(key)) >= 8:
                    self.stored_keys.add(key)

    def leaked(self, text: str) -> list[str]:
        with self.lock:
            found = [name for name, value in self.secrets.items() if value and value in text]
            found += [f"stored API key {k[:4]}..." for k in self.stored_keys
                      if k not in self.seen_inputs and k in text]
        return found


def _collect_strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _collect_strings(k, out)
            _collect_strings(v, out)
    elif isinstance(value, list | tuple):
        for v in value:
            _collect_strings(v, out)


_ENV: FuzzEnv | None = None


def _snapshot(conn: psycopg.Connection) -> dict[str, Any]:
    return {
        "providers": conn.execute("select * from public.llm_providers").fetchall(),
        "provider_cols": [d.name for d in conn.execute("select * from public.llm_providers limit 0").description
                          or []],
        "rates": conn.execute("select * from public.llm_model_rates").fetchall(),
        "rate_cols": [d.name for d in conn.execute("select * from public.llm_model_rates limit 0").description or []],
        "admin_keys": conn.execute("select id, active, revoked_at from public.llm_admin_keys").fetchall(),
        "admin_key_rows": conn.execute("select * from public.llm_admin_keys").fetchall(),
        "admin_key_cols": [d.name for d in conn.execute("select * from public.llm_admin_keys limit 0").description
                           or []],
        # A fuzzed PUT /api/admin/settings/credits would otherwise grant credits to every later test's new user.
        "site_settings": conn.execute("select signup_grant, currency_code, currency_symbol, credit_value,"
                                      " low_balance_threshold from public.site_settings where id").fetchone(),
    }


def _restore(conn: psycopg.Connection, snap: dict[str, Any]) -> None:
    """Put the presets back as they were: fuzzed admin calls rename, disable, re-price and re-key them."""
    with conn.transaction():
        # Providers first (a fuzzed DELETE may have retired one, a fuzzed POST created others): the ones created
        # go with their keys and rates, the snapshot's are put back whole (jsonb columns as jsonb).
        pcols = snap["provider_cols"]
        snap_ids = [dict(zip(pcols, row, strict=True))["id"] for row in snap["providers"]]
        conn.execute("delete from public.llm_providers where not (id = any(%s))", [snap_ids])
        for row in snap["providers"]:
            values = [Jsonb(v) if isinstance(v, list | dict) else v for v in row]
            conn.execute(f"insert into public.llm_providers ({', '.join(pcols)}) values "
                         f"({', '.join(['%s'] * len(pcols))}) on conflict (id) do update set "
                         + ", ".join(f"{c} = excluded.{c}" for c in pcols if c != "id"), values)
        kcols = snap["admin_key_cols"]
        for row in snap["admin_key_rows"]:  # keys a retirement deleted come back (then their states below)
            conn.execute(f"insert into public.llm_admin_keys ({', '.join(kcols)}) values "
                         f"({', '.join(['%s'] * len(kcols))}) on conflict (id) do nothing", list(row))
        conn.execute("delete from public.llm_admin_keys where not (id = any(%s))", [[k[0] for k in snap["admin_keys"]]])
        for key_id, active, revoked_at in snap["admin_keys"]:
            conn.execute("update public.llm_admin_keys set active = %s, revoked_at = %s where id = %s",
                         [active, revoked_at, key_id])
        conn.execute("update public.site_settings set (signup_grant, currency_code, currency_symbol, credit_value,"
                     " low_balance_threshold) = (%s, %s, %s, %s, %s) where id", list(snap["site_settings"]))
        conn.execute("delete from public.llm_model_rates")
        cols = snap["rate_cols"]
        for row in snap["rates"]:
            conn.execute(f"insert into public.llm_model_rates ({', '.join(cols)}) values "
                         f"({', '.join(['%s'] * len(cols))})", list(row))


@pytest.fixture(scope="module")
def fuzz_env(settings: Settings, database_urls: tuple[str, str], db: Database, make_user: Any) -> Iterator[FuzzEnv]:
    global _ENV
    admin_url = database_urls[0]
    user, admin = make_user(), make_user(admin=True)
    with db.as_service() as conn:  # enough credits for member-mode reservations to pass and reach the router
        credits_repo.adjust(conn, user.id, 1000 * MICRO, "fuzz run", None)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        snap = _snapshot(conn)
        conn.execute("update public.llm_providers set base_url = %s", [UNREACHABLE_BASE_URL])
    fuzz_settings = settings.with_overrides(rate_limit_per_minute=0, upstream_connect_timeout=2.0,
                                            upstream_read_timeout=5.0)
    app = create_app(fuzz_settings)
    canary_user_key = "sk-fuzz-canary-user-" + uuid.uuid4().hex
    canary_admin_key = "sk-fuzz-canary-admin-" + uuid.uuid4().hex
    auth = {(m, p): op["x-auth"] for m, p, op in openapi_doc.operations()}
    secrets = {
        "the user's bearer token": user.token, "the admin's bearer token": admin.token,
        "SECRET_KEY": settings.secret_key, "SUPABASE_JWT_SECRET": settings.jwt_secret,
        "the stored user key (canary)": canary_user_key, "the stored admin key (canary)": canary_admin_key,
    }
    for kid, material in settings.encryption_keys.items():
        for name, form in (("base64url", base64.urlsafe_b64encode), ("base64", base64.b64encode)):
            secrets[f"ENCRYPTION_KEYS material ({kid}, {name})"] = form(material).decode().rstrip("=")
        secrets[f"ENCRYPTION_KEYS material ({kid}, hex)"] = material.hex()
    for label, url in (("database password", settings.database_url), ("database admin password", admin_url)):
        password = unquote(urlsplit(url).password or "")
        if len(password) >= 8:
            secrets[label] = password
    werkzeug_log = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)  # one access-log line per fuzzed request would drown any failure
    try:
        with NetworkGuard() as guard, serve(app) as base_url:
            env = FuzzEnv(base_url, user.token, admin.token, secrets, guard, auth, user.id, app, admin_url)
            s = requests.Session()
            s.trust_env = False
            resp = s.put(f"{base_url}/api/user/llm/keys/openai", json={"api_key": canary_user_key},
                         headers={"Authorization": f"Bearer {user.token}"}, timeout=30)
            assert resp.status_code == 200, resp.text
            providers = s.get(f"{base_url}/api/admin/llm/providers", timeout=30,
                              headers={"Authorization": f"Bearer {admin.token}"}).json()["providers"]
            openai_id = next(p["id"] for p in providers if p["slug"] == "openai")
            resp = s.post(f"{base_url}/api/admin/llm/providers/{openai_id}/keys", json={"api_key": canary_admin_key},
                          headers={"Authorization": f"Bearer {admin.token}"}, timeout=30)
            assert resp.status_code == 201, resp.text
            with psycopg.connect(admin_url, autocommit=True) as conn:
                snap_run = _snapshot(conn)

            def reset() -> None:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    _restore(conn, snap_run)
                    conn.execute("delete from public.user_preferences where user_id = %s", [user.id])
                with db.as_service() as conn:
                    credits_repo.adjust(conn, user.id, 1000 * MICRO, "fuzz run top-up", None)
                resp = s.put(f"{base_url}/api/user/llm/keys/openai", json={"api_key": canary_user_key},
                             headers={"Authorization": f"Bearer {user.token}"}, timeout=30)
                assert resp.status_code == 200, resp.text

            env.reset = reset
            _ENV = env
            yield env
    finally:
        _ENV = None
        werkzeug_log.setLevel(werkzeug_level)
        app.extensions["switchboard"].db.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            _restore(conn, snap)
            conn.execute("delete from public.user_provider_keys where user_id = any(%s::uuid[])",
                         [[user.id, admin.id]])


def _config() -> schemathesis.Config:
    data: dict[str, Any] = {
        "suppress-health-check": ["all"],
        "generation": {"max-examples": FUZZ_EXAMPLES, "database": "none", "with-security-parameters": False},
        "request-timeout": 30,
        # The provider being unreachable (every preset points at a closed port here) or too slow is a documented
        # 502/504 of the chat route, not a server error; any other 5xx anywhere still fails.
        # An oversized invalid body (a 400,000-character prompt of escaped surrogate pairs is 4.8 MB) is rejected
        # by the body limit before it is read: 413 is a rejection too.
        "checks": {"negative_data_rejection": {"expected-statuses": [
            400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]}},
        "operations": [*({"include-path": path,
                          "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", 502, 504]}}}
                         for path in sorted(UPSTREAM_ROUTES)),
                       # Fetching a provider's model list: the (unreachable) upstream's failure is a documented 502.
                       {"include-path": FETCH_MODELS,
                        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", 502]}}}],
    }
    if FUZZ_SEED:
        data["seed"] = int(FUZZ_SEED)
    return schemathesis.Config.from_dict(data)


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_env: FuzzEnv) -> Any:
    schema = schemathesis.openapi.from_url(f"{fuzz_env.base_url}/api/openapi.json", config=_config())
    schema.config.update(base_url=fuzz_env.base_url)
    return schema


# -- our checks, on every response ----------------------------------------------------------------------------------

# The only 5xx any operation may answer: the chat route saying the provider behind it failed (every preset points
# at a closed loopback port for the run, and a BYOK base URL the guard will not resolve is unreachable too).
UPSTREAM_FAILURES = {502: {"upstream_unreachable", "upstream_error", "upstream_auth_failed"}, 504: {"upstream_timeout"}}
# The routes that forward to a provider (Anthropic's Messages API says the same in its own error shape, code included).
UPSTREAM_ROUTES = {"/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings",
                   "/v1/responses/{response_id}"}
FETCH_MODELS = "/api/admin/llm/providers/{provider_id}/models/fetch"


def _error_code(response: Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


def no_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Zero 5xx on every operation (admin ones with the admin's token, /v1 included). On the chat route a 502 or
    504 is the provider's failure, not ours, and must say so with its upstream code; a 500 is never allowed."""
    if response.status_code < 500:
        return None
    upstream = case.operation.path in UPSTREAM_ROUTES and \
        _error_code(response) in UPSTREAM_FAILURES.get(response.status_code, set())
    upstream = upstream or (case.operation.path == FETCH_MODELS and response.status_code == 502
                            and _error_code(response) == "model_list_failed")
    assert upstream, f"server error {response.status_code}: {response.content[:300]!r}"
    return None


def no_stack_trace(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    if case.operation.path in ("/api/openapi.json", "/api/docs"):
        return None  # the document and its page describe the API, they echo nothing
    text = response.content.decode("utf-8", "replace")
    found = [m for m in STACK_TRACE_MARKERS if m in text]
    assert not found, f"stack-trace material {found} in the body: {text[:300]!r}"
    return None


def no_secret(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    assert _ENV is not None
    text = response.content.decode("utf-8", "replace")
    text += "\n" + "\n".join(f"{k}: {v}" for k, values in response.headers.items() for v in values)
    leaked = _ENV.leaked(text)
    assert not leaked, f"secret in the response: {leaked}"
    return None


OUR_CHECKS = [no_server_error, no_stack_trace, no_secret]
# Built-in checks left out, each with its reason. Every other built-in check runs (status code, content type, header
# and schema conformance, server errors, negative data rejection, ignored auth, missing required header, ...).
#   positive_data_acceptance: it expects every schema-valid request to succeed, but validity here also depends on
#   the database and on rules between fields that JSON Schema cannot express (an *enabled* provider's slug, a
#   taken username, from <= to within 366 days, at most 4 decimals within MULTIPLIER_MIN..MAX, an X-BYOK-API-Key
#   with a provider named elsewhere, ...): those answer 400/422 by design, and the document says so.
EXCLUDED_CHECKS = [positive_data_acceptance]


# -- what the fuzzer found, pinned: each was a 500 (or worse) before its fix ----------------------------------------
# Plain requests on their own app, run before the fuzzing changes any preset.

NUL, LONE_SURROGATE = "\u0000", "\\ud800"  # the second is JSON text: a \ud800 escape with no low surrogate
FINDINGS = [
    # (method, path template, as admin, raw JSON body or None, expected status)
    ("GET", "/api/admin/audit?page=200000000000000000", True, None, 422),  # OFFSET past bigint
    ("GET", "/api/admin/logs?page=%C2%B2", True, None, 422),  # '²'.isdigit() but int('²') fails
    ("GET", "/api/admin/logs?per_page=%C2%B9", True, None, 422),
    ("GET", "/api/admin/logs?to=9999-12-31", True, None, 422),  # to + 1 day overflows
    ("GET", "/api/admin/usage?to=0001-01-01", True, None, 422),  # to - 29 days overflows
    ("GET", "/api/user/llm/usage?to=0001-01-01", False, None, 422),
    ("GET", "/api/user/llm/usage?to=9999-12-31", False, None, 422),
    ("GET", "/api/admin/users?q=a%00", True, None, 422),  # Postgres text cannot hold NUL
    ("GET", "/api/admin/logs?user=a%00", True, None, 422),
    ("PUT", "/api/user/settings", False, {"first_name": "a" + NUL}, 422),
    ("PUT", "/api/user/settings", False, {"task_overrides": {"t": {"provider": "lmstudio", "model": "m" + NUL}}},
     422),
    ("PUT", "/api/user/llm/keys/lmstudio", False, {"api_key": "abcdefghij" + NUL}, 422),
    ("PUT", "/api/user/llm/keys/lmstudio", False, {"api_key": "sk-clé-non-ascii"}, 422),  # HTTP header: latin-1
    ("PUT", "/api/admin/llm/providers/{lm}", True, {"name": "n" + NUL}, 422),
    ("PUT", "/api/admin/llm/providers/{lm}", True, {"default_model": "m" + NUL}, 422),
    ("PUT", "/api/admin/llm/providers/{lm}", True, {"base_url": "http://127.0.0.1:1234/v1" + NUL}, 422),
    ("PUT", "/api/admin/llm/providers/{lm}", True, {"base_url": "http://[::1"}, 422),  # urlsplit's ValueError
    ("PUT", "/api/admin/llm/providers/{lm}", True, {"base_url": "http://127.0.0.1:99999/v1"}, 422),
    ("PUT", "/api/admin/llm/providers/{lm}", True, {"models": [{"model": "m", "input_rate": 1, "output_rate": 1,
                                                                 "context_window": 0}]}, 422),  # was stored as 8192
    ("PUT", "/api/admin/llm/providers/{lm}", True, {"models": [{"model": "m" + NUL, "input_rate": 1,
                                                                 "output_rate": 1}]}, 422),
    ("POST", "/api/admin/llm/providers/{lm}/keys", True, {"api_key": "abcdefghij", "label": "l" + NUL}, 422),
    ("POST", "/api/admin/llm/providers/{lm}/keys", True, {"api_key": "sk-\u4e2d\u6587-key-123"}, 422),
    ("POST", "/api/admin/users/{user}/credits", True, {"amount": 1, "reason": "r" + NUL}, 422),
    ("POST", "/api/admin/users/{user}/credits", True, {"amount": "NaN", "reason": "r", "direction": "grant"}, 422),
    ("POST", "/api/admin/users/{user}/credits", True, {"amount": "1E+999999999", "reason": "r"}, 422),
    ("POST", "/api/admin/users/{user}/credits", True, {"amount": "1E-999999999", "reason": "r"}, 422),
    ("PUT", "/api/user/settings", False, '{"first_name": "a' + LONE_SURROGATE + '"}', 422),
    ("POST", "/api/admin/users/{user}/credits", True, '{"amount": 1, "reason": "r' + LONE_SURROGATE + '"}', 422),
    ("POST", "/v1/chat/completions", False, '{"model": "lmstudio/local-model", "messages": [{"role": "user", '
                                            '"content": "a' + LONE_SURROGATE + '"}]}', 400),
    # A NUL in the model or task reached the request log, and that one row made the log writer's whole batch fail.
    ("POST", "/v1/chat/completions", False, {"model": "lmstudio/local-model" + NUL,
                                             "messages": [{"role": "user", "content": "x"}]}, 400),
    ("POST", "/v1/chat/completions", False, {"model": "lmstudio/local-model", "metadata": {"task": "t" + NUL},
                                             "messages": [{"role": "user", "content": "x"}]}, 400),
    # Over the documented maxLength but within it once stripped ("\x1f" is whitespace to str.strip()): accepted.
    ("POST", "/api/teams", False, {"name": "\x1f" + "n" * 100, "slug": "never-made"}, 422),
    ("POST", "/api/admin/users/{user}/credits", True, {"amount": 1, "reason": "\x1f" + "r" * 500}, 422),
    ("PUT", "/api/user/settings", False, {"first_name": "\x1f" + "f" * 80}, 422),
    ("PUT", "/api/user/settings", False, {"last_name": " " + "f" * 80}, 422),
    ("POST", "/api/user/api-keys", False, {"name": "\x1f" + "k" * 100}, 422),
]


@pytest.mark.parametrize(("method", "path", "as_admin", "body", "expected"), FINDINGS,
                         ids=[f"{m} {p} {str(b)[:40]!r}" for m, p, _, b, _ in FINDINGS])
def test_findings_stay_fixed(client: Any, make_user: Any, method: str, path: str, as_admin: bool, body: Any,
                             expected: int) -> None:
    user, admin = make_user(), make_user(admin=True)
    if "{lm}" in path:
        providers = client.get("/api/admin/llm/providers", headers=admin.headers).get_json()["providers"]
        path = path.replace("{lm}", next(p["id"] for p in providers if p["slug"] == "lmstudio"))
    path = path.replace("{user}", user.id)
    headers = {**(admin if as_admin else user).headers, "Content-Type": "application/json"}
    data = None if body is None else body if isinstance(body, str) else json.dumps(body)
    resp = client.open(path, method=method, headers=headers, data=data)
    assert resp.status_code == expected, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    name = "OpenAIError" if path.startswith("/v1/") else "ApiValidationError"
    doc = openapi_doc.document()
    jsonschema_rs.validate({**doc["components"]["schemas"][name], "components": doc["components"]},
                           resp.get_json())
    assert "internal_error" not in str(error)


# -- every operation --------------------------------------------------------------------------------------------------
# One pytest test per documented operation, each a Hypothesis test over schemathesis's positive (valid per the
# document) and negative (invalid) cases. (schemathesis.pytest's lazy `parametrize` relies on pytest's private
# Node._nodeid, which pytest 9.2 no longer has, so the operations are parametrized here with public APIs.)

OPERATIONS = [(method, path) for method, path, _ in openapi_doc.operations()]


def _strategy(operation: Any) -> Any:
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if operation.path_parameters or operation.query or operation.headers or operation.body:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return st.one_of(strategies)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation(method: str, path: str, fuzz_schema: Any, fuzz_env: FuzzEnv) -> None:
    operation = fuzz_schema[path][method]

    @hypothesis.settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[p for p in hypothesis.Phase if p is not hypothesis.Phase.explain])
    @hypothesis.given(case=_strategy(operation))
    def fuzz(case: Case) -> None:
        headers = fuzz_env.headers_for(case)
        response = case.call(headers=headers)
        fuzz_env.observe(case, response)
        case.validate_response(response, additional_checks=OUR_CHECKS, excluded_checks=EXCLUDED_CHECKS,
                               headers=headers)

    if FUZZ_SEED:  # otherwise a fresh random seed, which Hypothesis prints when it finds a failure
        fuzz = hypothesis.seed(int(FUZZ_SEED))(fuzz)
    fuzz()


# -- scripted: real ids and real models, so every run reaches the code behind the validation -----------------------

def test_scripted_requests_reach_deep_code(fuzz_schema: Any, fuzz_env: FuzzEnv) -> None:
    """Random ids mostly meet 404s and random models 404 model_not_found. These requests use the real ones, so each
    run also exercises routing, credit reservation, upstream failure and fallback, BYOK headers and stored keys,
    admin key rotation and revocation, credit grants, and logs with real rows, all under the same checks."""
    admin_headers = {"Authorization": f"Bearer {fuzz_env.admin_token}"}
    fuzz_env.reset()  # the fuzzed calls before this one may have disabled presets, capped credits, ...

    def send(method: str, path: str, expect: int, *, as_admin: bool = False, **parts: Any) -> Any:
        case = fuzz_schema[path][method].Case(**parts)
        headers = admin_headers if as_admin else fuzz_env.headers_for(case)
        response = case.call(headers=headers)
        fuzz_env.observe(case, response)
        case.validate_response(response, additional_checks=OUR_CHECKS, excluded_checks=EXCLUDED_CHECKS,
                               headers=headers)
        assert response.status_code == expect, f"{method} {path} {parts}: {response.status_code} {response.content!r}"
        return response.json() if response.content else None

    hello = [{"role": "user", "content": "Hello"}]
    chat = "/v1/chat/completions"
    providers = {p["slug"]: p for p in send("GET", "/api/admin/llm/providers", 200)["providers"]}
    lm = providers["lmstudio"]["id"]

    # Member mode: every preset points at a closed loopback port, so a served model ends in 502 after routing.
    body = {"model": "openai/gpt-4o-mini", "messages": hello, "max_tokens": 16}
    assert send("POST", chat, 502, body=body)["error"]["code"] == "upstream_unreachable"
    send("POST", chat, 502, body={**body, "stream": True, "stream_options": {"include_usage": True}})
    send("POST", chat, 502, body={**body, "metadata": {"task": "summaries"}},
         headers={"X-Switchboard-Task": "summaries"})
    assert send("POST", chat, 402, as_admin=True, body=body)["error"]["code"] == "insufficient_credits"
    assert send("POST", chat, 404, body={**body, "model": "nobody/serves-this"})["error"]["code"] == "model_not_found"
    # BYOK headers: a public name is never resolved (the guard refuses), a private address is refused by the app.
    byok = {"X-BYOK-API-Key": "sk-scripted-header-key-0001", "X-BYOK-Provider": "openai"}
    send("POST", chat, 502, body=body, headers=byok)
    refused = len(fuzz_env.guard.refused)
    send("POST", chat, 502, body=body, headers={**byok, "X-BYOK-Base-URL": "https://api.example.com/v1"})
    assert len(fuzz_env.guard.refused) > refused, "the BYOK base URL's host was looked up"
    assert send("POST", chat, 400, body=body, headers={**byok, "X-BYOK-Base-URL": "http://10.1.2.3/v1"}
                )["error"]["code"] == "base_url_not_allowed"
    send("POST", chat, 403, body={**body, "model": "github/openai/gpt-4o-mini"},
         headers={**byok, "X-BYOK-Provider": "github", "X-BYOK-Base-URL": "https://api.example.com/v1"})
    send("POST", chat, 400, body=body, headers={"X-BYOK-Provider": "openai"})
    # BYOK mode with the stored canary key, then back to member mode.
    send("PUT", "/api/user/settings", 200, body={"llm_mode": "byok"})
    send("POST", chat, 502, body=body)
    send("PUT", "/api/user/settings", 200, body={"llm_mode": "member", "task_overrides": {
        "summaries": {"provider": "groq", "model": "llama-3.1-8b-instant"}}, "monthly_credit_cap": "500"})

    # Stored user keys.
    saved = send("PUT", "/api/user/llm/keys/{provider}", 200, path_parameters={"provider": "mistral"},
                 body={"api_key": "sk-scripted-user-key-0001"})
    assert saved["check"]["status"] == "unreachable"
    send("PUT", "/api/user/llm/keys/{provider}", 422, path_parameters={"provider": "openai"},
         body={"api_key": "sk-scripted-user-key-0002", "base_url": "https://api.example.com/v1"})
    send("PUT", "/api/user/llm/keys/{provider}", 422, path_parameters={"provider": "github"},
         body={"api_key": "sk-scripted-user-key-0003", "base_url": "https://api.example.com/v1"})
    send("DELETE", "/api/user/llm/keys/{provider}", 204, path_parameters={"provider": "mistral"})
    send("DELETE", "/api/user/llm/keys/{provider}", 404, path_parameters={"provider": "mistral"})

    # Admin: presets, keys, credits.
    one = {"provider_id": lm}
    send("PUT", "/api/admin/llm/providers/{provider_id}", 200, path_parameters=one,
         body={"name": "LM Studio", "credit_multiplier": "10", "models": [
             {"model": "local-model", "input_rate": 1, "output_rate": "2", "context_window": 8192}]})
    send("PUT", "/api/admin/settings/providers/{provider_id}/enable", 200, path_parameters=one,
         body={"enabled": False})
    send("PUT", "/api/admin/settings/providers/{provider_id}/enable", 200, path_parameters=one,
         body={"enabled": "on"})
    send("PUT", "/api/admin/settings/providers/{provider_id}/multiplier", 200, path_parameters=one,
         body={"multiplier": 1.5})
    send("PUT", "/api/admin/settings/providers/{provider_id}/multiplier", 422, path_parameters=one,
         body={"multiplier": 0})
    added = send("POST", "/api/admin/llm/providers/{provider_id}/keys", 201, path_parameters=one,
                 body={"api_key": "sk-scripted-admin-key-0001", "label": "scripted", "rotate": True})
    key = {"provider_id": lm, "key_id": added["key"]["id"]}
    send("DELETE", "/api/admin/llm/providers/{provider_id}/keys/{key_id}", 200, path_parameters=key)
    send("DELETE", "/api/admin/llm/providers/{provider_id}/keys/{key_id}", 409, path_parameters=key)
    send("DELETE", "/api/admin/llm/providers/{provider_id}/keys/{key_id}", 404,
         path_parameters={**key, "key_id": str(uuid.uuid4())})
    user = {"user_id": fuzz_env.user_id}
    assert send("GET", "/api/admin/users", 200, query={"q": "example.test"})["users"]
    send("GET", "/api/admin/users/{user_id}", 200, path_parameters=user)
    send("POST", "/api/admin/users/{user_id}/credits", 200, path_parameters=user,
         body={"amount": "2.5", "reason": "scripted grant"})
    send("POST", "/api/admin/users/{user_id}/credits", 422, path_parameters=user,
         body={"amount": 1000000000, "reason": "more than the balance", "direction": "deduct"})

    # Reports over the rows written above.
    fuzz_env.app.extensions["switchboard"].logs.flush()
    logs = send("GET", "/api/admin/logs", 200, query={"user": fuzz_env.user_id, "status": "error"})["logs"]
    assert logs, "the failed chat requests were logged"
    send("GET", "/api/admin/logs/{request_id}", 200, path_parameters={"request_id": logs[0]["request_id"]})
    send("GET", "/api/admin/usage", 200)
    assert send("GET", "/api/admin/audit", 200, query={"action": "key"})["entries"]
    usage = send("GET", "/api/user/llm/usage", 200, query={"group_by": ["day", "provider", "model", "mode"]})
    assert usage["buckets"] and usage["recent"]
    assert send("GET", "/api/user/credits", 200)["ledger"]
    assert send("POST", "/api/user/llm/quote", 200, body={"prompt": "How much is this?", "max_tokens": 100})["routes"]
    assert send("GET", "/v1/models", 200)["data"]

    # Success, JSON and streamed, through a fake OpenAI-compatible provider on loopback: the 200 answers and their
    # receipt headers against the document.
    with start_openai_upstream(models=["adm-model"]) as upstream, \
            temp_providers(fuzz_env.admin_url, ("fuzz-ok", upstream.base_url)) as [(slug, _)]:
        ok = {"model": f"{slug}/adm-model", "messages": hello, "max_tokens": 16}
        assert send("POST", chat, 200, body=ok)["choices"]
        send("POST", chat, 200, body={**ok, "stream": True, "stream_options": {"include_usage": True}})


# -- stateful: along the document's links ----------------------------------------------------------------------------

def test_stateful_links(fuzz_schema: Any, fuzz_env: FuzzEnv) -> None:
    base = fuzz_schema.as_state_machine()
    failures: list[str] = []  # kept as they happen: a replay against the changed server may not reproduce them

    class Machine(base):  # type: ignore[valid-type, misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": fuzz_env.headers_for(case)}

        def after_call(self, response: Response, case: Case) -> None:
            super().after_call(response, case)
            fuzz_env.observe(case, response)

        def validate_response(self, response: Response, case: Case, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            try:
                case.validate_response(response, additional_checks=OUR_CHECKS, excluded_checks=EXCLUDED_CHECKS,
                                       transport_kwargs=kwargs or None, recorder=self.recorder)
            except FailureGroup as exc:
                failures.append(str(exc))
                raise

    settings = hypothesis.settings(
        max_examples=FUZZ_STATEFUL_EXAMPLES, stateful_step_count=6, deadline=None, database=None,
        suppress_health_check=list(hypothesis.HealthCheck), derandomize=FUZZ_SEED is not None,
        # No shrinking: it replays scenarios against a server whose state the first run changed. Each failure is
        # recorded as it happens, with a curl command that reproduces it.
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    for _ in range(3):
        try:
            Machine.run(settings=settings)
            return
        except hypothesis.errors.Flaky:
            # The links follow live responses, so Hypothesis may see a scenario draw differently the second time
            # (the server changed in between). Schemathesis's own runner treats that as noise, and so do we, unless
            # a check failed on the way.
            assert not failures, "\n\n".join(failures)


def test_zz_the_run_stayed_on_this_machine_and_reached_real_code(fuzz_env: FuzzEnv) -> None:
    """Runs last in this module: what the guard refused, and proof the fuzzing got past validation."""
    statuses = fuzz_env.statuses
    assert statuses, "nothing was fuzzed"
    ok = {label for label, counts in statuses.items() if any(200 <= s < 300 for s in counts)}
    # Every operation that needs no id or can be satisfied by generated data answered 2xx at least once.
    must_succeed = {"GET /api/user/settings", "PUT /api/user/settings", "GET /api/user/llm/keys",
                    "GET /api/user/llm/usage", "GET /api/user/credits", "POST /api/user/llm/quote",
                    "GET /v1/models", "GET /api/pricing/providers", "GET /api/admin/llm/providers",
                    "GET /api/admin/settings/providers", "GET /api/admin/users", "GET /api/admin/logs",
                    "GET /api/admin/usage", "GET /api/admin/audit", "GET /api/openapi.json", "GET /api/docs"}
    assert must_succeed <= ok, f"never answered 2xx: {sorted(must_succeed - ok)}"
    lines = [f"  {label}: " + ", ".join(f"{s}x{n}" for s, n in sorted(counts.items()))
             for label, counts in sorted(statuses.items())]
    print(f"\nfuzz: {sum(sum(c.values()) for c in statuses.values())} responses over {len(statuses)} operations; "
          f"network guard refused {len(fuzz_env.guard.refused)} non-loopback attempts\n" + "\n".join(lines))

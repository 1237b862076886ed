"""End-to-end fixtures: fake upstream providers on loopback, e2e provider presets pointing at them with
encrypted admin keys, Switchboard served on a loopback port, and the official openai SDK as the client."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import psycopg
import pytest
from flask import Flask

from tests.support.live import serve
from tests.support.llama_server import MODEL_ALIAS, llama_server, require_llama
from tests.support.upstreams import FakeUpstream, start_anthropic_upstream, start_openai_upstream
from webapp import create_app
from webapp.config import Settings
from webapp.crypto import KeyRing, admin_aad

# Canary secrets: after the run, none of these may appear in a log line, a log row or a response body.
CANARY = {
    "oa1": "sk-canary-admin-oa1-7f3e9a1c55d2",
    "oa2": "sk-canary-admin-oa2-18b2c9e4d7aa",
    "an": "sk-ant-canary-admin-an-5c1d2e3f4a",
    "byok": "sk-canary-byok-user-0a9b8c7d6e5f",
}
RATE_IN, RATE_OUT = 1_000_000, 2_000_000  # micro-credits per 1K tokens: cost = 1000*in + 2000*out (x multiplier)


@dataclass
class Gateway:
    url: str
    app: Flask
    oa1: FakeUpstream
    oa2: FakeUpstream
    an: FakeUpstream
    byok: FakeUpstream
    log_text: io.StringIO
    bodies: list[str]
    clients: list[openai.OpenAI] = field(default_factory=list)

    def flush_logs(self) -> None:
        self.app.extensions["switchboard"].logs.flush()

    def client(self, token: str, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("timeout", 30)
        made = openai.OpenAI(base_url=self.url + "/v1", api_key=token, max_retries=0, **kwargs)
        self.clients.append(made)
        return made

    def close_clients(self) -> None:
        """Close every SDK client the tests made: a pooled socket left to the garbage collector is a ResourceWarning
        (an error in this suite) in whatever test happens to run when it is collected."""
        while self.clients:
            self.clients.pop().close()

    def reset(self) -> None:
        for up in (self.oa1, self.oa2, self.an, self.byok):
            up.reset()


def _provider(conn: psycopg.Connection, slug: str, style: str, base: str, mult: str, order: int,
              keyring: KeyRing, secret: str) -> None:
    row = conn.execute(
        """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
               credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order)
           values (%s, %s, %s, %s, 'echo-1', true, %s, true, true, %s)
           on conflict (slug) do update set base_url = excluded.base_url,
               credit_multiplier = excluded.credit_multiplier,
               enabled = true
           returning id::text""",
        [slug, slug.upper(), style, base, mult, order]).fetchone()
    assert row is not None
    pid = row[0]
    conn.execute("delete from public.llm_admin_keys where provider_id = %s", [pid])
    for model in ("echo-1", "echo-2"):
        conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate, context_window)
                        values (%s, %s, %s, %s, 8192) on conflict (provider_id, model) do nothing""",
                     [pid, model, RATE_IN, RATE_OUT])
    ciphertext, kid = keyring.encrypt(secret, admin_aad(pid))
    conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label)
                    values (%s, %s, %s, %s, 'e2e')""", [pid, ciphertext, kid, secret[-4:]])


@pytest.fixture(scope="session")
def gateway(settings: Settings, database_urls: tuple[str, str]) -> Iterator[Gateway]:
    oa1 = start_openai_upstream(api_key=CANARY["oa1"])
    oa2 = start_openai_upstream(api_key=CANARY["oa2"])
    an = start_anthropic_upstream(api_key=CANARY["an"])
    byok = start_openai_upstream(api_key=CANARY["byok"])
    keyring = KeyRing(settings.encryption_keys)
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        _provider(conn, "e2e-oa", "openai", oa1.base_url, "1.0", 1, keyring, CANARY["oa1"])
        _provider(conn, "e2e-oa2", "openai", oa2.base_url, "1.5", 2, keyring, CANARY["oa2"])
        _provider(conn, "e2e-an", "anthropic", an.base_url, "1.0", 3, keyring, CANARY["an"])
    app = create_app(settings.with_overrides(upstream_read_timeout=2.0, upstream_connect_timeout=2.0))
    log_text = io.StringIO()
    handler = logging.StreamHandler(log_text)
    for name in ("switchboard", "werkzeug"):
        logging.getLogger(name).addHandler(handler)
    bodies: list[str] = []
    with serve(app) as url:
        made = Gateway(url, app, oa1, oa2, an, byok, log_text, bodies)
        yield made
        made.close_clients()
    for name in ("switchboard", "werkzeug"):
        logging.getLogger(name).removeHandler(handler)
    app.extensions["switchboard"].db.close()
    for up in (oa1, oa2, an, byok):
        up.stop()


@pytest.fixture()
def gw(gateway: Gateway) -> Iterator[Gateway]:
    gateway.reset()
    yield gateway
    gateway.close_clients()
    gateway.reset()


@pytest.fixture()
def member(make_user: Any, db: Any) -> Any:
    """A member-mode user with 100 credits."""
    from webapp.repos import credits as credits_repo

    user = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, 100_000_000, "e2e grant", None)
    return user


def balance(db: Any, user_id: str) -> int:
    with db.as_service() as conn:
        row = conn.execute("select balance from public.credit_accounts where user_id = %s", [user_id]).fetchone()
        return int(row[0])


def ledger_sum(db: Any, user_id: str) -> int:
    with db.as_service() as conn:
        row = conn.execute("select coalesce(sum(delta), 0) from public.credit_ledger where user_id = %s",
                           [user_id]).fetchone()
        return int(row[0])


def log_row(db: Any, request_id: str) -> dict[str, Any]:
    with db.as_service() as conn:
        row = conn.execute("select row_to_json(l) from public.llm_request_logs l where request_id = %s",
                           [request_id]).fetchone()
    assert row is not None, f"no log row for {request_id}"
    return dict(row[0])


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture()
def llama_ollama(database_urls: tuple[str, str]) -> Iterator[str]:
    """The real local model (llama-cpp-python's server with SmolLM2-135M) as the Ollama preset, priced; its model
    id. The preset's base URL is put back afterwards."""
    require_llama()
    with llama_server() as base_url, psycopg.connect(database_urls[0], autocommit=True) as conn:
        old = conn.execute("select base_url from public.llm_providers where slug = 'ollama'").fetchone()
        assert old is not None
        conn.execute("update public.llm_providers set base_url = %s, enabled = true where slug = 'ollama'",
                     [base_url + "/v1"])
        conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate,
                               context_window)
                        select id, %s, 1000, 1000, 2048 from public.llm_providers where slug = 'ollama'
                        on conflict (provider_id, model) do nothing""", [MODEL_ALIAS])
        try:
            yield f"ollama/{MODEL_ALIAS}"
        finally:
            conn.execute("update public.llm_providers set base_url = %s where slug = 'ollama'", [old[0]])


@pytest.fixture()
def patient(settings: Settings, gateway: Gateway) -> Iterator[Gateway]:
    """Switchboard with a read timeout a CPU-bound model on a busy machine can meet (the shared one waits 2 s)."""
    app = create_app(settings.with_overrides(upstream_read_timeout=90.0))
    try:
        with serve(app) as url:
            made = Gateway(url, app, gateway.oa1, gateway.oa2, gateway.an, gateway.byok, gateway.log_text,
                           gateway.bodies)
            yield made
            made.close_clients()
            app.extensions["switchboard"].logs.flush()
    finally:
        app.extensions["switchboard"].db.close()

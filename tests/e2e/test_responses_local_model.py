"""The real local model through /v1/responses: llama-cpp-python's server with SmolLM2-135M-Instruct, registered as
the local Ollama preset (it speaks chat completions only, so the request is translated), called with the official
openai SDK's `responses.create`, JSON and streamed; credits and the ledger agree."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import Gateway, balance, ledger_sum, log_row
from tests.support.llama_server import MODEL_ALIAS, llama_server, require_llama

pytestmark = pytest.mark.llama
PROMPT = "Name one colour of the rainbow."


@pytest.fixture()
def local_model(database_urls: tuple[str, str]) -> Iterator[str]:
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
def patient(settings: Any, gateway: Gateway) -> Iterator[Gateway]:
    """Switchboard with a read timeout a CPU-bound model on a busy machine can meet (the shared one waits 2 s)."""
    from tests.support.live import serve
    from webapp import create_app

    app = create_app(settings.with_overrides(upstream_read_timeout=90.0))
    try:
        with serve(app) as url:
            yield Gateway(url, app, gateway.oa1, gateway.oa2, gateway.an, gateway.byok, gateway.log_text,
                          gateway.bodies)
            app.extensions["switchboard"].logs.flush()
    finally:
        app.extensions["switchboard"].db.close()


def test_real_model_answers_the_responses_api(patient: Gateway, member: Any, db: Any, local_model: str) -> None:
    gateway = patient
    client = gateway.client(member.token, timeout=120)
    before = balance(db, member.id)
    raw = client.responses.with_raw_response.create(model=local_model, input=PROMPT, max_output_tokens=24,
                                                    temperature=0, instructions="Answer in one word.")
    response = raw.parse()
    assert response.output_text.strip() and response.status in ("completed", "incomplete")
    assert raw.headers["x-switchboard-provider"] == "ollama"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    charged = before - balance(db, member.id)
    assert charged > 0 and raw.headers["x-switchboard-credits"] == f"{charged / 1e6:.6f}"

    events = list(client.responses.create(model=local_model, input=PROMPT, max_output_tokens=24, temperature=0,
                                          stream=True))
    assert events[0].type == "response.created" and events[-1].type in ("response.completed",
                                                                        "response.incomplete")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.strip() and events[-1].response.output_text == text
    receipt = (events[-1].response.model_extra or {})["switchboard"]
    gateway.flush_logs()
    row = log_row(db, receipt["request_id"])
    assert row["tokens_out"] > 0 and row["credits"] > 0 and row["stream"] is True
    assert balance(db, member.id) == ledger_sum(db, member.id)

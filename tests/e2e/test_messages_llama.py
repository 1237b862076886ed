"""The real local model (llama-cpp-python's server with SmolLM2-135M-Instruct, as the Ollama preset) through
/v1/messages with the official anthropic SDK: JSON and streamed, charged and logged like a chat completion."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import psycopg
import pytest

from tests.e2e.conftest import Gateway, balance, ledger_sum, log_row
from tests.support.llama_server import MODEL_ALIAS, llama_server, require_llama

pytestmark = pytest.mark.llama
ASK = [{"role": "user", "content": "Name one colour of the rainbow."}]


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


def test_real_model_through_the_messages_api(patient: Gateway, member: Any, db: Any, local_model: str) -> None:
    gateway = patient
    before = balance(db, member.id)
    with anthropic.Anthropic(base_url=gateway.url, api_key=member.token, max_retries=0, timeout=120) as client:
        raw = client.messages.with_raw_response.create(model=local_model, max_tokens=24, extra_body={"temperature": 0},
                                                       system="Answer in one word.", messages=ASK)
        msg = raw.parse()
        assert msg.type == "message" and msg.content[0].type == "text" and msg.content[0].text.strip()
        assert msg.stop_reason in ("end_turn", "max_tokens")
        assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
        assert raw.headers["x-switchboard-provider"] == "ollama"
        charged = before - balance(db, member.id)
        assert charged > 0 and raw.headers["x-switchboard-credits"] == f"{charged / 1e6:.6f}"

        with client.messages.stream(model=local_model, max_tokens=24, extra_body={"temperature": 0}, messages=ASK) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
            request_id = s.response.headers["x-request-id"]
    assert text.strip() and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0
    gateway.flush_logs()
    row = log_row(db, request_id)
    assert row["status"] == 200 and row["tokens_out"] > 0 and row["credits"] > 0
    assert balance(db, member.id) == ledger_sum(db, member.id)

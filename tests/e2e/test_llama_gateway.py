"""A real model through Switchboard: llama-cpp-python's server with SmolLM2-135M-Instruct, registered as the
local Ollama preset, called with the official openai SDK, streamed and not. That server sends no usage chunk
when streaming, so the streamed answer is billed on a tiktoken estimate and says so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import Gateway, balance, ledger_sum, log_row
from tests.support.llama_server import MODEL_ALIAS, llama_server, require_llama

pytestmark = pytest.mark.llama
PROMPT = [{"role": "user", "content": "Name one colour of the rainbow."}]


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


def test_real_model_answers_through_switchboard(gateway: Gateway, member: Any, db: Any, local_model: str) -> None:
    client = gateway.client(member.token, timeout=120)
    before = balance(db, member.id)
    raw = client.chat.completions.with_raw_response.create(model=local_model, messages=PROMPT, max_tokens=24,
                                                           temperature=0)
    reply = raw.parse()
    assert reply.choices[0].message.content.strip()
    assert raw.headers["x-switchboard-provider"] == "ollama"
    assert raw.headers["x-switchboard-usage"] == "measured"
    assert raw.headers["x-switchboard-multiplier"] == "0.1"
    charged = before - balance(db, member.id)
    assert charged > 0 and raw.headers["x-switchboard-credits"] == f"{charged / 1e6:.6f}"

    stream = client.chat.completions.create(model=local_model, messages=PROMPT, max_tokens=24, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    pieces, receipt = [], None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage is not None:
            receipt = (chunk.model_extra or {}).get("switchboard")
    assert "".join(pieces).strip()
    assert receipt is not None and receipt["usage"] == "estimated"
    gateway.flush_logs()
    row = log_row(db, receipt["request_id"])
    assert row["usage_source"] == "estimated" and row["tokens_out"] > 0 and row["credits"] > 0
    assert balance(db, member.id) == ledger_sum(db, member.id)

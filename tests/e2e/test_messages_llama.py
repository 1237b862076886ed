"""The real local model (llama-cpp-python's server with SmolLM2-135M-Instruct, as the Ollama preset) through
/v1/messages with the official anthropic SDK: JSON and streamed, charged and logged like a chat completion."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.e2e.conftest import Gateway, balance, ledger_sum, log_row

pytestmark = pytest.mark.llama
ASK = [{"role": "user", "content": "Name one colour of the rainbow."}]


def test_real_model_through_the_messages_api(patient: Gateway, member: Any, db: Any, llama_ollama: str) -> None:
    gateway = patient
    before = balance(db, member.id)
    with anthropic.Anthropic(base_url=gateway.url, api_key=member.token, max_retries=0, timeout=120) as client:
        raw = client.messages.with_raw_response.create(model=llama_ollama, max_tokens=24, extra_body={"temperature": 0},
                                                       system="Answer in one word.", messages=ASK)
        msg = raw.parse()
        assert msg.type == "message" and msg.content[0].type == "text" and msg.content[0].text.strip()
        assert msg.stop_reason in ("end_turn", "max_tokens")
        assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
        assert raw.headers["x-switchboard-provider"] == "ollama"
        charged = before - balance(db, member.id)
        assert charged > 0 and raw.headers["x-switchboard-credits"] == f"{charged / 1e6:.6f}"

        with client.messages.stream(model=llama_ollama, max_tokens=24, extra_body={"temperature": 0},
                                    messages=ASK) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
            request_id = s.response.headers["x-request-id"]
    assert text.strip() and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0
    gateway.flush_logs()
    row = log_row(db, request_id)
    assert row["status"] == 200 and row["tokens_out"] > 0 and row["credits"] > 0
    assert balance(db, member.id) == ledger_sum(db, member.id)

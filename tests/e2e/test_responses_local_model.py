"""The real local model through /v1/responses: llama-cpp-python's server with SmolLM2-135M-Instruct, registered as
the local Ollama preset (it speaks chat completions only, so the request is translated), called with the official
openai SDK's `responses.create`, JSON and streamed; credits and the ledger agree."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Gateway, balance, ledger_sum, log_row

pytestmark = pytest.mark.llama
PROMPT = "Name one colour of the rainbow."


def test_real_model_answers_the_responses_api(patient: Gateway, member: Any, db: Any, llama_ollama: str) -> None:
    gateway = patient
    client = gateway.client(member.token, timeout=120)
    before = balance(db, member.id)
    raw = client.responses.with_raw_response.create(model=llama_ollama, input=PROMPT, max_output_tokens=24,
                                                    temperature=0, instructions="Answer in one word.")
    response = raw.parse()
    assert response.output_text.strip() and response.status in ("completed", "incomplete")
    assert raw.headers["x-switchboard-provider"] == "ollama"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    charged = before - balance(db, member.id)
    assert charged > 0 and raw.headers["x-switchboard-credits"] == f"{charged / 1e6:.6f}"

    events = list(client.responses.create(model=llama_ollama, input=PROMPT, max_output_tokens=24, temperature=0,
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

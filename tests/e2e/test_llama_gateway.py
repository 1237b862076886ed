"""A real model through Switchboard: llama-cpp-python's server with SmolLM2-135M-Instruct, registered as the
local Ollama preset, called with the official openai SDK, streamed and not. That server sends no usage chunk
when streaming, so the streamed answer is billed on a tiktoken estimate and says so."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Gateway, balance, ledger_sum, log_row

pytestmark = pytest.mark.llama
PROMPT = [{"role": "user", "content": "Name one colour of the rainbow."}]


def test_real_model_answers_through_switchboard(patient: Gateway, member: Any, db: Any, llama_ollama: str) -> None:
    gateway = patient  # its upstream read timeout suits a CPU-bound model on a busy machine
    client = gateway.client(member.token, timeout=120)
    before = balance(db, member.id)
    raw = client.chat.completions.with_raw_response.create(model=llama_ollama, messages=PROMPT, max_tokens=24,
                                                           temperature=0)
    reply = raw.parse()
    assert reply.choices[0].message.content.strip()
    assert raw.headers["x-switchboard-provider"] == "ollama"
    assert raw.headers["x-switchboard-usage"] == "measured"
    assert raw.headers["x-switchboard-multiplier"] == "0.1"
    charged = before - balance(db, member.id)
    assert charged > 0 and raw.headers["x-switchboard-credits"] == f"{charged / 1e6:.6f}"

    stream = client.chat.completions.create(model=llama_ollama, messages=PROMPT, max_tokens=24, temperature=0,
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

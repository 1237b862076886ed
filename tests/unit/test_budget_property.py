"""Property: for every adapter, the body Switchboard sends upstream cannot produce more output than the
reservation pays for, whatever limit fields, `n`, tools, images and system prompts a hostile client sends.

The chain exercised is the gateway's own: chat_request.parse → budget.prompt_tokens → route_limit →
reservation_bounds → (any amount the balance allows between the bounds) → output_limits → write_limit →
the adapter's translation (Anthropic) → what a provider could read as its limit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webapp.errors import AppError
from webapp.providers.anthropic import UpstreamFailure, to_anthropic_request
from webapp.repos.providers import ModelRate
from webapp.services import budget, chat_request
from webapp.services.credits import cost

CEILING = 262_144
ADAPTERS = [("openai", "https://api.openai.com/v1"), ("openai", "http://127.0.0.1:11434/v1"),
            ("openai", "https://api.groq.com/openai/v1"), ("anthropic", "https://api.anthropic.com/v1")]
LIMIT_NAMES = ["max_tokens", "max_completion_tokens", "max_output_tokens", "n_predict", "num_predict",
               "max_new_tokens", "min_tokens", "max_length", "best_of", "MAX_TOKENS"]

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)
image = st.builds(lambda u: {"type": "image_url", "image_url": {"url": u}},
                  st.sampled_from(["https://example.com/a.png", "data:image/png;base64,AAAA"]))
part = st.one_of(st.builds(lambda t: {"type": "text", "text": t}, text), image)
content = st.one_of(text, st.lists(part, min_size=1, max_size=4))
message = st.builds(lambda role, c: {"role": role, "content": c},
                    st.sampled_from(["system", "user", "assistant", "developer"]), content)
tool = st.builds(lambda name, props: {"type": "function", "function": {
    "name": name, "parameters": {"type": "object", "properties": {p: {"type": "string"} for p in props}}}},
    st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True),
                                                              max_size=5))
limit_value = st.one_of(st.integers(min_value=1, max_value=CEILING), st.integers(min_value=-10, max_value=10**9))


@st.composite
def bodies(draw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m-1", "messages": draw(st.lists(message, min_size=1, max_size=6))}
    for name in draw(st.lists(st.sampled_from(LIMIT_NAMES), unique=True, max_size=5)):
        body[name] = draw(limit_value)
    if draw(st.booleans()):
        body["options"] = {"num_predict": draw(limit_value)}
    if draw(st.booleans()):
        body["n"] = draw(st.integers(min_value=1, max_value=128))
    if draw(st.booleans()):
        body["tools"] = draw(st.lists(tool, min_size=1, max_size=3))
        body["tool_choice"] = draw(st.sampled_from(["auto", "required", "none"]))
    if draw(st.booleans()):
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"type": "string", "description": draw(text)}}}}}
    return body


rates = st.builds(lambda i, o, w, m: ModelRate("p", "m-1", i, o, w, m),
                  st.integers(0, 5_000_000), st.integers(0, 20_000_000), st.integers(1, 2_000_000),
                  st.integers(1, 200_000))
multipliers = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("100"), places=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies(), routes=st.lists(st.tuples(rates, multipliers), min_size=1, max_size=3),
       default=st.integers(1, 100_000), where=st.floats(0, 1), adapter=st.sampled_from(ADAPTERS))
def test_upstream_output_limit_never_exceeds_what_was_reserved(body: dict[str, Any], routes: list[Any],
                                                               default: int, where: float,
                                                               adapter: tuple[str, str]) -> None:
    try:
        req = chat_request.parse(body, None, max_tokens_ceiling=CEILING)
    except AppError:
        return  # refused before any money moves
    prompt = budget.reserved_prompt(budget.prompt_tokens(req.body, req.messages, req.model))
    priced = []
    for rate, mult in routes:
        lim = budget.route_limit(req.max_tokens, default, rate, prompt)
        if lim is not None:
            priced.append(budget.Priced(rate, mult, lim))
    if not priced:
        return  # the gateway answers 400 context_length_exceeded
    least, most = budget.reservation_bounds(priced, req.n, req.max_tokens is not None)
    assert 0 <= least <= most
    amount = least + int((most - least) * where)  # whatever the balance allowed
    style, base = adapter
    for p, limit in zip(priced, budget.output_limits(amount, priced, req.n), strict=True):
        upstream = budget.write_limit({**req.body, "model": "m-1"}, limit, style, base)
        if style == "anthropic":
            try:
                upstream = to_anthropic_request(upstream)
            except UpstreamFailure:
                continue  # not translatable: refused with a 400, nothing produced
        effective = budget.effective_limit(upstream)
        assert effective is not None, f"no output limit written: {sorted(upstream)}"
        assert 1 <= effective <= p.limit.cap
        if req.max_tokens is not None:
            assert effective <= req.max_tokens
        assert cost(p.limit.prompt, effective * req.n, p.rate.input_rate, p.rate.output_rate, p.multiplier) <= amount


@pytest.mark.parametrize("style,base,fields", [
    ("openai", "https://api.openai.com/v1", {"max_completion_tokens"}),
    ("openai", "http://127.0.0.1:1234/v1", {"max_tokens", "max_completion_tokens"}),
    ("anthropic", "https://api.anthropic.com/v1", {"max_tokens"}),
])
def test_limit_is_written_in_every_field_the_provider_reads_and_others_removed(style: str, base: str,
                                                                             fields: set[str]) -> None:
    body = {"model": "m", "messages": [], "max_tokens": 9000, "max_completion_tokens": 9000, "n_predict": -1,
            "num_predict": -1, "min_tokens": 5000, "max_new_tokens": 9000, "best_of": 5,
            "options": {"num_predict": -1, "temperature": 0.2}}
    out = budget.write_limit(body, 40, style, base)
    limitish = {k for k in out if k not in ("model", "messages", "options")}
    assert limitish == fields
    assert all(out[f] == 40 for f in fields)
    assert out["options"] == {"temperature": 0.2}


def test_affordable_output_is_the_exact_largest_fit() -> None:
    rate = ModelRate("p", "m", 1000, 3000, 8192, 4096)
    for amount in range(0, 20_000, 37):
        for mult in (Decimal("1"), Decimal("1.5"), Decimal("0.1"), Decimal("2.3333")):
            t = budget.affordable_output(amount, rate, mult, 3, 2)
            if t < 0:
                assert cost(3, 0, 1000, 3000, mult) > amount
                continue
            assert cost(3, 2 * t, 1000, 3000, mult) <= amount
            assert cost(3, 2 * (t + 1), 1000, 3000, mult) > amount


@pytest.mark.parametrize("usage,source", [
    ({"prompt_tokens": 5, "completion_tokens": -5}, "corrected"),
    ({"prompt_tokens": 5, "completion_tokens": 10**12}, "corrected"),
    ({"prompt_tokens": 5, "completion_tokens": "many"}, "corrected"),
    ({"prompt_tokens": 5, "completion_tokens": 2.5}, "corrected"),
    ({"prompt_tokens": 5, "completion_tokens": True}, "corrected"),
    ({"prompt_tokens": 5, "completion_tokens": 0}, "corrected"),  # nine words were visibly delivered
    ({"prompt_tokens": -1, "completion_tokens": 10}, "corrected"),
    ({"prompt_tokens": 5, "completion_tokens": 10}, "measured"),
    (None, "estimated"),
    ({}, "estimated"),
])
def test_upstream_usage_is_validated(usage: Any, source: str) -> None:
    delivered = "The quick brown fox jumps over the lazy dog."
    t_in, t_out, got = budget.settle_usage(usage, delivered, 7, "gpt-4o", 16, 1)
    assert got == source
    assert t_in >= 0 and t_out >= 0
    if source != "measured":
        assert t_out == 10  # tiktoken's count of what was delivered

"""Tokens priced right: the usage split of each wire format and the charge, each token exactly once, by hand."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from webapp.repos.providers import ModelRate
from webapp.services import budget
from webapp.services.pricing import TokenSplit, cache_write_rate, cached_rate, charge, token_split

# micro-credits per 1K tokens
RATE = ModelRate("p", "m", input_rate=3_000_000, output_rate=15_000_000, context_window=200_000,
                 max_output_tokens=8192, cached_input_rate=300_000, cache_write_rate=3_750_000)


def test_openai_chat_usage_cached_and_reasoning_are_parts() -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
             "prompt_tokens_details": {"cached_tokens": 800},
             "completion_tokens_details": {"reasoning_tokens": 300}}
    split = token_split(usage, 1000, 500)
    assert split == TokenSplit(cached=800, cache_write=0, reasoning=300)
    # 200 plain x 3.0 + 800 cached x 0.3 + 500 out (reasoning inside, not added) x 15, per token in micro-credits
    # = 600,000 + 240,000 + 7,500,000 = 8,340,000; x 1.5 = 12,510,000
    assert charge(1000, 500, split, RATE, Decimal("1.5")) == 12_510_000


def test_anthropic_usage_adds_cache_reads_and_writes_to_the_prompt() -> None:
    # What the adapter makes of Anthropic's input_tokens 100 + cache_read 700 + cache_creation 200.
    usage = {"prompt_tokens": 1000, "completion_tokens": 50, "prompt_tokens_details": {"cached_tokens": 700},
             "cache_creation_input_tokens": 200}
    split = token_split(usage, 1000, 50)
    assert split == TokenSplit(cached=700, cache_write=200, reasoning=0)
    # 100 x 3.0 + 700 x 0.3 + 200 x 3.75 + 50 x 15 = 300,000 + 210,000 + 750,000 + 750,000 = 2,010,000; x 1.25
    assert charge(1000, 50, split, RATE, Decimal("1.25")) == 2_512_500


def test_raw_anthropic_usage_reads_input_tokens_as_excluding_the_cache() -> None:
    usage = {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 700,
             "cache_creation_input_tokens": 200}
    assert token_split(usage, 1000, 50) == TokenSplit(700, 200, 0)
    assert token_split(usage, 100, 50) == TokenSplit(0, 0, 0)  # the settle did not believe that prompt


def test_responses_api_usage() -> None:
    usage = {"input_tokens": 1000, "output_tokens": 400, "total_tokens": 1400,
             "input_tokens_details": {"cached_tokens": 600}, "output_tokens_details": {"reasoning_tokens": 350}}
    split = token_split(usage, 1000, 400)
    assert split == TokenSplit(600, 0, 350)
    # 400 x 3.0 + 600 x 0.3 + 400 x 15 = 1,200,000 + 180,000 + 6,000,000 = 7,380,000 (x 1)
    assert charge(1000, 400, split, RATE, Decimal(1)) == 7_380_000


def test_unset_rates_default_and_cached_never_costs_more_than_input() -> None:
    plain = ModelRate("p", "m", input_rate=1000, output_rate=2000, context_window=10)
    assert cached_rate(plain) == 1000 and cache_write_rate(plain) == 1000
    dear_cache = ModelRate("p", "m", input_rate=1000, output_rate=2000, context_window=10, cached_input_rate=5000)
    assert cached_rate(dear_cache) == 1000
    # 7 tokens, 3 of them cached at a "dearer" cached rate: all 7 at the input rate, rounded up: ceil(7 x 1000/1000)
    assert charge(7, 0, TokenSplit(3, 0, 0), dear_cache, Decimal(1)) == 7


def test_a_split_the_settle_did_not_believe_charges_every_token_at_the_plain_rate() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 10},
             "completion_tokens_details": {"reasoning_tokens": 5}}
    assert token_split(usage, 12, 7) == TokenSplit(0, 0, 0)  # corrected counts: nothing at the cached rate
    hostile = {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": -4},
               "completion_tokens_details": {"reasoning_tokens": "many"}, "cache_creation_input_tokens": True}
    assert token_split(hostile, 10, 5) == TokenSplit(0, 0, 0)
    over = {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 8},
            "cache_creation_input_tokens": 8, "completion_tokens_details": {"reasoning_tokens": 50}}
    assert token_split(over, 10, 5) == TokenSplit(8, 2, 5)  # clamped: no token counted twice


def test_the_reservation_prices_the_prompt_at_the_dearest_prompt_rate() -> None:
    # A prompt that could all be cache writes (3.75) costs more than at the input rate (3.0): reserved for that.
    assert budget.route_cost(RATE, Decimal(1), 1000, 0, 1) == 3_750_000


@given(prompt=st.integers(0, 10**6), completion=st.integers(0, 10**6), cached=st.integers(-5, 2 * 10**6),
       written=st.integers(-5, 2 * 10**6), reasoning=st.integers(0, 2 * 10**6),
       cached_rate_=st.one_of(st.none(), st.integers(0, 10**7)), write_rate=st.one_of(st.none(), st.integers(0, 10**7)),
       mult=st.decimals(min_value=0, max_value=10, places=4))
def test_the_charge_is_bounded_by_the_dearest_and_cheapest_prices(prompt: int, completion: int, cached: int,
                                                                  written: int, reasoning: int,
                                                                  cached_rate_: int | None, write_rate: int | None,
                                                                  mult: Decimal) -> None:
    rate = ModelRate("p", "m", input_rate=2_000_000, output_rate=4_000_000, context_window=10**7,
                     cached_input_rate=cached_rate_, cache_write_rate=write_rate)
    got = charge(prompt, completion, TokenSplit(cached, written, reasoning), rate, mult)
    # never above every prompt token at the dearest prompt rate, never below every one at the cheapest
    most = budget.route_cost(rate, mult, prompt, completion, 1)
    least_rate = min(rate.input_rate, cached_rate(rate), cache_write_rate(rate))
    least = int(Decimal(prompt * least_rate + completion * rate.output_rate) * mult / 1000)
    assert least <= got <= most
    # reasoning is inside the completion: it never changes the charge
    assert got == charge(prompt, completion, TokenSplit(cached, written, 0), rate, mult)

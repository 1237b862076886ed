-- Tokens priced right (issue 15): every receipt row says how its prompt and output split, and a model may charge
-- prompt-cache writes at their own rate.
--
-- * llm_request_logs.cached_tokens: prompt tokens the upstream served from its cache (OpenAI
--   prompt_tokens_details.cached_tokens, Anthropic cache_read_input_tokens), charged at the cached-input rate.
-- * llm_request_logs.cache_write_tokens: prompt tokens written to the provider's cache (Anthropic
--   cache_creation_input_tokens), charged at the cache-write rate.
-- * llm_request_logs.reasoning_tokens: hidden reasoning tokens (completion_tokens_details.reasoning_tokens), a part
--   of tokens_out (never charged twice: shown, not added).
--   cached_tokens + cache_write_tokens <= tokens_in and reasoning_tokens <= tokens_out.
-- * llm_model_rates.cache_write_rate: micro-credits per 1,000 cache-write tokens; null = the input rate.

alter table public.llm_request_logs
  add column cached_tokens integer not null default 0 check (cached_tokens >= 0),
  add column cache_write_tokens integer not null default 0 check (cache_write_tokens >= 0),
  add column reasoning_tokens integer not null default 0 check (reasoning_tokens >= 0),
  add constraint llm_request_logs_token_split
    check (cached_tokens + cache_write_tokens <= tokens_in and reasoning_tokens <= tokens_out);

alter table public.llm_model_rates
  add column cache_write_rate bigint check (cache_write_rate is null or cache_write_rate >= 0);

grant update (cache_write_rate) on public.llm_model_rates to authenticated;

-- The receipt row written in the settle's (or refund's) transaction carries the split.
create or replace function public.request_log_insert(p_log jsonb, p_credits bigint, p_shortfall bigint)
returns void
language sql
set search_path = ''
as $$
  insert into public.llm_request_logs (request_id, user_id, mode, status, provider, model, task, key_source,
      admin_key_id, tokens_in, tokens_out, usage_source, credits, multiplier, fallback_path, stream, error_code,
      latency_ms, output_limit, shortfall, api_key_id, team_id, cached_tokens, cache_write_tokens, reasoning_tokens)
  select r.request_id, r.user_id, r.mode, r.status, r.provider, r.model, r.task, r.key_source, r.admin_key_id,
         r.tokens_in, r.tokens_out, r.usage_source, p_credits, r.multiplier, coalesce(r.fallback_path, '{}'),
         r.stream, r.error_code, r.latency_ms, r.output_limit, p_shortfall, r.api_key_id, r.team_id,
         coalesce(r.cached_tokens, 0), coalesce(r.cache_write_tokens, 0), coalesce(r.reasoning_tokens, 0)
  from jsonb_populate_record(null::public.llm_request_logs, p_log) r
  on conflict (request_id) do nothing
$$;

-- The daily rollups' trigger (20261201100000, usage_rollup_apply): one statement kept for what every receipt row
-- touches (the user's day, the platform's day shard, the user's month, the serving admin key's count), and the
-- rollups a row can only touch in some cases written only in those cases -- errors (status >= 400), BYOK models
-- (a BYOK success) and teams (a team's request) -- instead of three more ModifyTable nodes in the same statement
-- that set up their target table and indexes and then insert nothing (a member request's success: all three).
-- Same rows, same sums, same transaction (tests/db/test_rollups.py: every rollup equals a GROUP BY of the log).
create or replace function public.usage_rollup_apply(r public.llm_request_logs, p_sign integer) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_day date := (r.created_at at time zone 'utc')::date;
begin
  with daily as (
    insert into public.usage_daily as u (day, user_id, team_id, api_key_id, provider, model, mode, status_class,
                                         requests, tokens_in, tokens_out, credits, latency_ms, cached_tokens,
                                         cache_write_tokens, reasoning_tokens)
    values (v_day, r.user_id, r.team_id, r.api_key_id, coalesce(r.provider, ''), coalesce(r.model, ''),
            r.mode, (r.status / 100)::smallint, p_sign, p_sign * r.tokens_in, p_sign * r.tokens_out,
            p_sign * r.credits, p_sign * r.latency_ms, p_sign * r.cached_tokens, p_sign * r.cache_write_tokens,
            p_sign * r.reasoning_tokens)
    on conflict on constraint usage_daily_key do update
      set requests = u.requests + excluded.requests, tokens_in = u.tokens_in + excluded.tokens_in,
          tokens_out = u.tokens_out + excluded.tokens_out, credits = u.credits + excluded.credits,
          latency_ms = u.latency_ms + excluded.latency_ms, cached_tokens = u.cached_tokens + excluded.cached_tokens,
          cache_write_tokens = u.cache_write_tokens + excluded.cache_write_tokens,
          reasoning_tokens = u.reasoning_tokens + excluded.reasoning_tokens
  ), platform as (
    insert into public.usage_daily_platform as p (day, provider, mode, status_class, shard, requests, tokens_in,
        tokens_out, credits, latency_ms, shortfall, shortfall_requests, corrected_requests, cached_tokens,
        cache_write_tokens, reasoning_tokens)
    values (v_day, coalesce(r.provider, ''), r.mode, (r.status / 100)::smallint, (hashtext(r.request_id::text) & 3),
            p_sign, p_sign * r.tokens_in, p_sign * r.tokens_out, p_sign * r.credits, p_sign * r.latency_ms,
            p_sign * r.shortfall, p_sign * (r.shortfall > 0)::int,
            p_sign * (r.usage_source is not distinct from 'corrected')::int, p_sign * r.cached_tokens,
            p_sign * r.cache_write_tokens, p_sign * r.reasoning_tokens)
    on conflict (day, provider, mode, status_class, shard) do update
      set requests = p.requests + excluded.requests, tokens_in = p.tokens_in + excluded.tokens_in,
          tokens_out = p.tokens_out + excluded.tokens_out, credits = p.credits + excluded.credits,
          latency_ms = p.latency_ms + excluded.latency_ms, shortfall = p.shortfall + excluded.shortfall,
          shortfall_requests = p.shortfall_requests + excluded.shortfall_requests,
          corrected_requests = p.corrected_requests + excluded.corrected_requests,
          cached_tokens = p.cached_tokens + excluded.cached_tokens,
          cache_write_tokens = p.cache_write_tokens + excluded.cache_write_tokens,
          reasoning_tokens = p.reasoning_tokens + excluded.reasoning_tokens
  ), monthly as (
    insert into public.usage_monthly_users as m (month, user_id, requests, tokens, credits)
    values (date_trunc('month', v_day)::date, r.user_id, p_sign, p_sign * (r.tokens_in + r.tokens_out),
            p_sign * r.credits)
    on conflict (month, user_id) do update
      set requests = m.requests + excluded.requests, tokens = m.tokens + excluded.tokens, credits = m.credits + excluded.credits
  )
  insert into public.usage_admin_keys as k (key_source, provider, admin_key_id, shard, requests, last_at)
  select r.key_source, coalesce(r.provider, ''), r.admin_key_id, (hashtext(r.request_id::text) & 3),
         p_sign, r.created_at
  where r.key_source in ('admin_db', 'admin_env')
  on conflict on constraint usage_admin_keys_key do update
    set requests = k.requests + excluded.requests, last_at = greatest(k.last_at, excluded.last_at);
  if r.status >= 400 then
    insert into public.usage_daily_errors as e (day, code, requests)
    select v_day, coalesce(r.error_code, 'http_' || r.status::text), p_sign where r.status >= 400
    on conflict (day, code) do update set requests = e.requests + excluded.requests;
  end if;
  if r.mode = 'byok' and r.status < 400 and r.provider is not null and r.model is not null then
    insert into public.usage_daily_byok_models as b (day, provider, model, requests, tokens_in, tokens_out)
    select v_day, r.provider, r.model, p_sign, p_sign * r.tokens_in, p_sign * r.tokens_out
    where r.mode = 'byok' and r.status < 400 and r.provider is not null and r.model is not null
    on conflict (day, provider, model) do update
      set requests = b.requests + excluded.requests, tokens_in = b.tokens_in + excluded.tokens_in,
          tokens_out = b.tokens_out + excluded.tokens_out;
  end if;
  if r.team_id is not null then
    insert into public.usage_daily_teams as t (day, team_id, requests, tokens_in, tokens_out, credits, errors)
    select v_day, r.team_id, p_sign, p_sign * r.tokens_in, p_sign * r.tokens_out, p_sign * r.credits,
           p_sign * (r.status >= 400)::int
    where r.team_id is not null
    on conflict (day, team_id) do update
      set requests = t.requests + excluded.requests, tokens_in = t.tokens_in + excluded.tokens_in,
          tokens_out = t.tokens_out + excluded.tokens_out, credits = t.credits + excluded.credits,
          errors = t.errors + excluded.errors;
  end if;
end
$$;

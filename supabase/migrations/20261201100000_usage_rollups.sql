-- Daily usage rollups (issue 13): every chart, total and count reads these instead of the request log, so a page
-- costs the same at 20 million log rows as at 2 thousand. They are written by an AFTER INSERT trigger on
-- public.llm_request_logs, i.e. in the same transaction as the receipt row, whichever path writes it (the member
-- path's credits_settle_logged / credits_refund_logged, the BYOK log writer, a test fixture). An insert skipped by
-- `on conflict (request_id) do nothing` fires no row trigger, so a retried receipt never counts twice.
--
-- * usage_daily: day (UTC) x user x team x personal API key x provider x model x mode x status class. A user's
--   usage, a key's month, a team's members and days read it by the leading user / key / team index.
-- * usage_daily_platform: day x provider x mode x status class, spread over 4 shards (by request id) so concurrent
--   receipts rarely wait on one row lock until commit; usage_daily_errors: day x error code (failures only);
--   usage_daily_byok_models: day x provider x model of successful BYOK traffic (what it would cost in member mode).
--   Admin analytics: a year of them is tens of thousands of rows, whatever the traffic.
-- * usage_monthly_users: month x user: whole months of a user's totals, and the upper bounds the admin's top users
--   start from (see repos/rollups.py).
-- * usage_daily_teams: day x team (team-billed requests only) for the site's usage per team.
-- * usage_admin_keys: all-time requests and last use per admin key / environment key (the providers-and-keys panel).
--
-- Rollup rows are never pruned (log retention drops only log rows). Deleting a user deletes their rows, as it
-- deletes their log rows. Team and API key ids carry no foreign key: a deleted team or key keeps its history.

create table public.usage_daily (
  day date not null,
  user_id uuid not null references auth.users (id) on delete cascade,
  team_id uuid,
  api_key_id uuid,
  provider text not null default '',
  model text not null default '',
  mode text not null,
  status_class smallint not null,
  requests bigint not null default 0,
  tokens_in bigint not null default 0,
  tokens_out bigint not null default 0,
  credits bigint not null default 0,
  latency_ms bigint not null default 0,
  cached_tokens bigint not null default 0,
  cache_write_tokens bigint not null default 0,
  reasoning_tokens bigint not null default 0,
  constraint usage_daily_key unique nulls not distinct
    (user_id, day, team_id, api_key_id, provider, model, mode, status_class)
);
alter table public.usage_daily set (fillfactor = 70);  -- room for HOT updates: today's rows change on every receipt
alter table public.usage_daily enable row level security;
create index usage_daily_api_key_idx on public.usage_daily (api_key_id, day) where api_key_id is not null;
create index usage_daily_team_idx on public.usage_daily (team_id, day) where team_id is not null;

create table public.usage_daily_platform (
  day date not null,
  provider text not null default '',
  mode text not null,
  status_class smallint not null,
  shard smallint not null,
  requests bigint not null default 0,
  tokens_in bigint not null default 0,
  tokens_out bigint not null default 0,
  credits bigint not null default 0,
  latency_ms bigint not null default 0,
  shortfall bigint not null default 0,
  shortfall_requests bigint not null default 0,
  corrected_requests bigint not null default 0,
  cached_tokens bigint not null default 0,
  cache_write_tokens bigint not null default 0,
  reasoning_tokens bigint not null default 0,
  primary key (day, provider, mode, status_class, shard)
);
alter table public.usage_daily_platform set (fillfactor = 70);
alter table public.usage_daily_platform enable row level security;
create index usage_daily_platform_provider_idx on public.usage_daily_platform (provider);

create table public.usage_daily_errors (
  day date not null,
  code text not null,
  requests bigint not null default 0,
  primary key (day, code)
);
alter table public.usage_daily_errors set (fillfactor = 70);
alter table public.usage_daily_errors enable row level security;

create table public.usage_daily_byok_models (
  day date not null,
  provider text not null,
  model text not null,
  requests bigint not null default 0,
  tokens_in bigint not null default 0,
  tokens_out bigint not null default 0,
  primary key (day, provider, model)
);
alter table public.usage_daily_byok_models set (fillfactor = 70);
alter table public.usage_daily_byok_models enable row level security;

create table public.usage_monthly_users (
  month date not null,
  user_id uuid not null references auth.users (id) on delete cascade,
  requests bigint not null default 0,
  tokens bigint not null default 0,
  credits bigint not null default 0,
  primary key (month, user_id)
);
alter table public.usage_monthly_users enable row level security;
create index usage_monthly_users_user_idx on public.usage_monthly_users (user_id, month);
-- The admin's top users read each month's biggest spenders first (repos/rollups.py top_users).
create index usage_monthly_users_credits_idx on public.usage_monthly_users (month, credits desc, user_id);

create table public.usage_daily_teams (
  day date not null,
  team_id uuid not null,
  requests bigint not null default 0,
  tokens_in bigint not null default 0,
  tokens_out bigint not null default 0,
  credits bigint not null default 0,
  errors bigint not null default 0,
  primary key (day, team_id)
);
alter table public.usage_daily_teams set (fillfactor = 70);
alter table public.usage_daily_teams enable row level security;

create table public.usage_admin_keys (
  key_source text not null,
  provider text not null default '',
  admin_key_id uuid,
  shard smallint not null,
  requests bigint not null default 0,
  last_at timestamptz,
  constraint usage_admin_keys_key unique nulls not distinct (key_source, provider, admin_key_id, shard)
);
alter table public.usage_admin_keys set (fillfactor = 70);
alter table public.usage_admin_keys enable row level security;
create index usage_admin_keys_key_idx on public.usage_admin_keys (admin_key_id) where admin_key_id is not null;

-- -- grants and policies: the same readers as the log rows they sum ---------------------------------------------
revoke all on public.usage_daily, public.usage_daily_platform, public.usage_daily_errors,
  public.usage_daily_byok_models, public.usage_monthly_users, public.usage_daily_teams, public.usage_admin_keys
  from anon, authenticated, service_role;
grant select on public.usage_daily, public.usage_daily_platform, public.usage_daily_errors,
  public.usage_daily_byok_models, public.usage_monthly_users, public.usage_daily_teams, public.usage_admin_keys
  to authenticated, service_role;

-- The teams the caller owns or administers, computed once per query: a policy calling team_role(team_id) runs it
-- for every row it filters (thousands on a busy team's usage).
create or replace function public.usage_admin_team_ids() returns uuid[]
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(team_id), '{}') from public.team_members
  where user_id = (select auth.uid()) and role in ('owner', 'admin')
$$;
revoke execute on function public.usage_admin_team_ids() from public, anon;
grant execute on function public.usage_admin_team_ids() to authenticated, service_role;

-- A user reads their own rows, a team's owners and admins the team's, site admins all (as llm_request_logs).
create policy usage_daily_select on public.usage_daily for select to authenticated
  using (user_id = (select auth.uid()) or (select public.is_admin()));
create policy usage_daily_team_select on public.usage_daily for select to authenticated
  using (team_id = any ((select public.usage_admin_team_ids())::uuid[]));
create policy usage_monthly_users_select on public.usage_monthly_users for select to authenticated
  using (user_id = (select auth.uid()) or (select public.is_admin()));
-- Platform-wide sums name no user but describe everyone's traffic: site admins only.
create policy usage_daily_platform_select on public.usage_daily_platform for select to authenticated
  using ((select public.is_admin()));
create policy usage_daily_errors_select on public.usage_daily_errors for select to authenticated
  using ((select public.is_admin()));
create policy usage_daily_byok_models_select on public.usage_daily_byok_models for select to authenticated
  using ((select public.is_admin()));
create policy usage_admin_keys_select on public.usage_admin_keys for select to authenticated
  using ((select public.is_admin()));
create policy usage_daily_teams_select on public.usage_daily_teams for select to authenticated
  using ((select public.is_admin()) or team_id = any ((select public.usage_admin_team_ids())::uuid[]));

-- -- the trigger: one statement per receipt row --------------------------------------------------------------------
-- Adds one receipt row (p_sign 1) to every rollup, or takes it back out (-1: the old version of an updated row).
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
  ), errors as (
    insert into public.usage_daily_errors as e (day, code, requests)
    select v_day, coalesce(r.error_code, 'http_' || r.status::text), p_sign where r.status >= 400
    on conflict (day, code) do update set requests = e.requests + excluded.requests
  ), byok as (
    insert into public.usage_daily_byok_models as b (day, provider, model, requests, tokens_in, tokens_out)
    select v_day, r.provider, r.model, p_sign, p_sign * r.tokens_in, p_sign * r.tokens_out
    where r.mode = 'byok' and r.status < 400 and r.provider is not null and r.model is not null
    on conflict (day, provider, model) do update
      set requests = b.requests + excluded.requests, tokens_in = b.tokens_in + excluded.tokens_in,
          tokens_out = b.tokens_out + excluded.tokens_out
  ), monthly as (
    insert into public.usage_monthly_users as m (month, user_id, requests, tokens, credits)
    values (date_trunc('month', v_day)::date, r.user_id, p_sign, p_sign * (r.tokens_in + r.tokens_out),
            p_sign * r.credits)
    on conflict (month, user_id) do update
      set requests = m.requests + excluded.requests, tokens = m.tokens + excluded.tokens, credits = m.credits + excluded.credits
  ), teams as (
    insert into public.usage_daily_teams as t (day, team_id, requests, tokens_in, tokens_out, credits, errors)
    select v_day, r.team_id, p_sign, p_sign * r.tokens_in, p_sign * r.tokens_out, p_sign * r.credits,
           p_sign * (r.status >= 400)::int
    where r.team_id is not null
    on conflict (day, team_id) do update
      set requests = t.requests + excluded.requests, tokens_in = t.tokens_in + excluded.tokens_in,
          tokens_out = t.tokens_out + excluded.tokens_out, credits = t.credits + excluded.credits,
          errors = t.errors + excluded.errors
  )
  insert into public.usage_admin_keys as k (key_source, provider, admin_key_id, shard, requests, last_at)
  select r.key_source, coalesce(r.provider, ''), r.admin_key_id, (hashtext(r.request_id::text) & 3),
         p_sign, r.created_at
  where r.key_source in ('admin_db', 'admin_env')
  on conflict on constraint usage_admin_keys_key do update
    set requests = k.requests + excluded.requests, last_at = greatest(k.last_at, excluded.last_at);
end
$$;
revoke execute on function public.usage_rollup_apply(public.llm_request_logs, integer)
  from public, anon, authenticated, service_role;

-- Receipts are append-only, but a row can still change: a deleted team or API key sets its id to null (foreign
-- keys), an operator corrects one. The old version is taken out and the new one added, so the rollups stay equal to
-- the log; emptied rollup rows are removed. (Deleting a user deletes their usage_daily / monthly rows by cascade; the
-- platform-wide sums keep the traffic that happened.)
create or replace function public.usage_rollup_row() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' then
    perform public.usage_rollup_apply(old, -1);
    perform public.usage_rollup_apply(new, 1);
    delete from public.usage_daily where user_id = old.user_id and requests = 0;
    delete from public.usage_daily_platform where day = (old.created_at at time zone 'utc')::date and requests = 0;
    delete from public.usage_daily_errors where day = (old.created_at at time zone 'utc')::date and requests = 0;
    delete from public.usage_daily_byok_models where day = (old.created_at at time zone 'utc')::date
      and requests = 0;
    delete from public.usage_monthly_users where user_id = old.user_id and requests = 0;
    delete from public.usage_daily_teams where team_id = old.team_id and requests = 0;
    delete from public.usage_admin_keys where requests = 0;
  else
    perform public.usage_rollup_apply(new, 1);
  end if;
  return null;
end
$$;
revoke execute on function public.usage_rollup_row() from public, anon, authenticated, service_role;

create trigger llm_request_logs_usage_rollup after insert or update on public.llm_request_logs
  for each row execute function public.usage_rollup_row();

-- -- rebuild: the backfill below, and bulk loads that insert with the trigger disabled (bench/scale_bench.py) ------
create or replace function public.usage_rollups_rebuild() returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  truncate public.usage_daily, public.usage_daily_platform, public.usage_daily_errors,
    public.usage_daily_byok_models, public.usage_monthly_users, public.usage_daily_teams, public.usage_admin_keys;
  insert into public.usage_daily (day, user_id, team_id, api_key_id, provider, model, mode, status_class, requests,
                                  tokens_in, tokens_out, credits, latency_ms, cached_tokens, cache_write_tokens,
                                  reasoning_tokens)
  select (created_at at time zone 'utc')::date, user_id, team_id, api_key_id, coalesce(provider, ''),
         coalesce(model, ''), mode, (status / 100)::smallint, count(*), sum(tokens_in), sum(tokens_out),
         sum(credits), sum(latency_ms), sum(cached_tokens), sum(cache_write_tokens), sum(reasoning_tokens)
  from public.llm_request_logs group by 1, 2, 3, 4, 5, 6, 7, 8;
  insert into public.usage_daily_platform (day, provider, mode, status_class, shard, requests, tokens_in,
      tokens_out, credits, latency_ms, shortfall, shortfall_requests, corrected_requests, cached_tokens,
      cache_write_tokens, reasoning_tokens)
  select (created_at at time zone 'utc')::date, coalesce(provider, ''), mode, (status / 100)::smallint,
         hashtext(request_id::text) & 3, count(*), sum(tokens_in), sum(tokens_out), sum(credits), sum(latency_ms),
         sum(shortfall), count(*) filter (where shortfall > 0), count(*) filter (where usage_source = 'corrected'),
         sum(cached_tokens), sum(cache_write_tokens), sum(reasoning_tokens)
  from public.llm_request_logs group by 1, 2, 3, 4, 5;
  insert into public.usage_daily_errors (day, code, requests)
  select (created_at at time zone 'utc')::date, coalesce(error_code, 'http_' || status::text), count(*)
  from public.llm_request_logs where status >= 400 group by 1, 2;
  insert into public.usage_daily_byok_models (day, provider, model, requests, tokens_in, tokens_out)
  select (created_at at time zone 'utc')::date, provider, model, count(*), sum(tokens_in), sum(tokens_out)
  from public.llm_request_logs
  where mode = 'byok' and status < 400 and provider is not null and model is not null group by 1, 2, 3;
  insert into public.usage_monthly_users (month, user_id, requests, tokens, credits)
  select date_trunc('month', (created_at at time zone 'utc'))::date, user_id, count(*),
         sum(tokens_in + tokens_out), sum(credits)
  from public.llm_request_logs group by 1, 2;
  insert into public.usage_daily_teams (day, team_id, requests, tokens_in, tokens_out, credits, errors)
  select (created_at at time zone 'utc')::date, team_id, count(*), sum(tokens_in), sum(tokens_out), sum(credits),
         count(*) filter (where status >= 400)
  from public.llm_request_logs where team_id is not null group by 1, 2;
  insert into public.usage_admin_keys (key_source, provider, admin_key_id, shard, requests, last_at)
  select key_source, coalesce(provider, ''), admin_key_id, hashtext(request_id::text) & 3, count(*), max(created_at)
  from public.llm_request_logs where key_source in ('admin_db', 'admin_env') group by 1, 2, 3, 4;
end
$$;
revoke execute on function public.usage_rollups_rebuild() from public, anon, authenticated, service_role;

select public.usage_rollups_rebuild();

-- Admin logs page through the log by (created_at, id) and filter by these; see docs/perf-notes.md for the plans.
create index llm_request_logs_keyset_idx on public.llm_request_logs (created_at desc, id desc);
drop index if exists public.llm_request_logs_created_idx;
create index llm_request_logs_user_keyset_idx on public.llm_request_logs (user_id, created_at desc, id desc);
drop index if exists public.llm_request_logs_user_idx;
create index llm_request_logs_provider_idx on public.llm_request_logs (provider, created_at desc, id desc);
-- Failures only (a few percent of rows, never updated): the filter columns ride along so a filtered count of
-- failures is an index-only scan.
create index llm_request_logs_errors_idx on public.llm_request_logs (created_at desc, id desc)
  include (status, mode, provider, user_id, api_key_id) where status >= 400;
-- The environment-key count and the key-count indexes served the raw counts the rollups replace.
drop index if exists public.llm_request_logs_env_key_idx;

-- Personal API keys (issue 10). A key `sb_<12-char prefix>_<43-char secret>` is stored only as a keyed hash
-- (HMAC-SHA256 with the server's API_KEY_SECRET, computed by the app), so a database copy cannot be turned back into
-- keys. A key authenticates its owner, never with admin rights, within its own restrictions: expiry, a monthly
-- credit cap (enforced in the reservation, under the account lock), an allow-list of providers or provider/models
-- and a mode (member only, BYOK only, or the owner's mode).
--
-- * public.api_keys: the owner reads the metadata of their own keys (never the hash column: column grants), admins
--   read all; every write goes through the app as service_role (the app checks ownership and validates).
-- * public.api_key_principal(hash): the request's principal check for a key (key known, not revoked, not expired;
--   the owner passes public.principal_status), touching last_used_at at most once a minute. Service role: the
--   gateway's context statement.
-- * public.api_key_claims(hash): the same, as the claims a request runs under (`sub` = the owner, `api_key_id`,
--   role authenticated, the verdict). db.as_user sets them with set_config in its existing first round trip.
-- * public.is_admin() is false for key claims. credit_reservations and llm_request_logs carry the key.

create table public.api_keys (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 100),
  prefix text not null unique check (prefix ~ '^[0-9A-Za-z]{12}$'),
  hash text not null unique check (hash ~ '^[0-9a-f]{64}$'),
  mode text not null default 'user' check (mode in ('user', 'member', 'byok')),
  allow text[] not null default '{}' check (cardinality(allow) <= 100),
  monthly_credit_cap bigint check (monthly_credit_cap >= 0),
  expires_at timestamptz,
  revoked_at timestamptz,
  last_used_at timestamptz,
  created_at timestamptz not null default now()
);
alter table public.api_keys enable row level security;
create index api_keys_user_idx on public.api_keys (user_id, created_at);

revoke all on public.api_keys from anon, authenticated, service_role;
grant select (id, user_id, name, prefix, mode, allow, monthly_credit_cap, expires_at, revoked_at, last_used_at,
              created_at)
  on public.api_keys to authenticated;
grant select, insert, update on public.api_keys to service_role;

create policy api_keys_select on public.api_keys
  for select to authenticated using (user_id = (select auth.uid()) or (select public.is_admin()));

-- Which key made a request: on the reservation (the key's monthly cap sums them) and on the receipt.
alter table public.credit_reservations
  add column api_key_id uuid references public.api_keys (id) on delete set null;
create index credit_reservations_api_key_idx on public.credit_reservations (api_key_id, created_at)
  where api_key_id is not null;
alter table public.llm_request_logs
  add column api_key_id uuid references public.api_keys (id) on delete set null;
-- The key list's "this month" counts read this index (issue 13 moves them to rollups).
create index llm_request_logs_api_key_idx on public.llm_request_logs (api_key_id, created_at)
  where api_key_id is not null;

-- Admin rights come from the database, and never with a key.
create or replace function public.is_admin() returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((
    select coalesce(u.raw_app_meta_data ->> 'role', '') = 'admin'
           and u.deleted_at is null and (u.banned_until is null or u.banned_until <= now())
           and (select auth.jwt()) ->> 'api_key_id' is null
    from auth.users u
    where u.id = (select auth.uid())
  ), false)
$$;

create or replace function public.api_key_principal(p_hash text) returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  k public.api_keys;
  v_claims text;
  v_status jsonb;
begin
  select * into k from public.api_keys where hash = p_hash;
  if not found then
    return jsonb_build_object('ok', false, 'reason', 'invalid_api_key');
  end if;
  if k.revoked_at is not null then
    return jsonb_build_object('ok', false, 'reason', 'api_key_revoked');
  end if;
  if k.expires_at is not null and k.expires_at <= now() then
    return jsonb_build_object('ok', false, 'reason', 'api_key_expired');
  end if;
  -- The owner passes the same check as a token's user (no session: a key is its own credential). principal_status
  -- answers a signed-in caller only about itself, so it is asked as the system, and the caller's claims restored.
  v_claims := current_setting('request.jwt.claims', true);
  perform set_config('request.jwt.claims', '{"role": "service_role"}', true);
  v_status := public.principal_status(k.user_id, null);
  perform set_config('request.jwt.claims', coalesce(v_claims, ''), true);
  if not coalesce((v_status ->> 'ok')::boolean, false) then
    return v_status;
  end if;
  -- At most one write a minute per key, and never a wait: a row another request is touching is left alone.
  update public.api_keys set last_used_at = now()
    where id = (select a.id from public.api_keys a
                where a.id = k.id and (a.last_used_at is null or a.last_used_at < now() - interval '1 minute')
                for update skip locked);
  return jsonb_build_object(
    'ok', true, 'admin', false, 'user_id', k.user_id,
    'api_key', jsonb_build_object('id', k.id, 'name', k.name, 'mode', k.mode, 'allow', to_jsonb(k.allow),
                                  'monthly_credit_cap', k.monthly_credit_cap));
end
$$;

create or replace function public.api_key_claims(p_hash text) returns text
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v jsonb;
begin
  v := public.api_key_principal(p_hash);
  if not coalesce((v ->> 'ok')::boolean, false) then
    return jsonb_build_object('role', 'authenticated', 'api_key_verdict', v)::text;
  end if;
  return jsonb_build_object(
    'sub', v ->> 'user_id', 'role', 'authenticated', 'aud', 'authenticated',
    'api_key_id', v -> 'api_key' ->> 'id', 'amr', jsonb_build_array(jsonb_build_object('method', 'api_key')),
    'api_key_verdict', v)::text;
end
$$;

revoke execute on function public.api_key_principal(text) from public, anon, authenticated;
revoke execute on function public.api_key_claims(text) from public, anon;
grant execute on function public.api_key_principal(text) to service_role;
-- authenticated: db.as_user runs it after switching role. Knowing a key's hash means knowing the key (or the
-- server's secret and the key), so it tells a caller nothing they could not already do with the key.
grant execute on function public.api_key_claims(text) to authenticated, service_role;

-- The reservation also takes the key and its cap: this month's reservations of that key (not refunded) plus this one
-- stay within the cap, checked under the account lock the reservation already takes (a key belongs to one account,
-- so concurrent requests on one key serialise there). P0406 when not even p_min fits; DETAIL is the room left.
drop function public.credits_reserve_flex(uuid, uuid, bigint, bigint, bigint);
create function public.credits_reserve_flex(
  p_user uuid, p_request uuid, p_min bigint, p_max bigint, p_monthly_cap bigint default null,
  p_api_key uuid default null, p_key_cap bigint default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
  v_existing public.credit_reservations;
  v_spent bigint;
  v_room bigint;
  v_amount bigint;
  v_by text;
begin
  if p_min < 0 or p_max < p_min then
    raise exception 'need 0 <= min <= max' using errcode = '22023';
  end if;
  v_balance := public.credits_lock_account(p_user);
  select * into v_existing from public.credit_reservations where request_id = p_request;
  if found then
    if v_existing.user_id <> p_user then
      raise exception 'request id belongs to another user' using errcode = '22023';
    end if;
    return jsonb_build_object('amount', v_existing.amount,
                              'limited_by', case when v_existing.amount < p_max then 'balance' end);
  end if;
  if v_balance < p_min then
    raise exception 'insufficient credits' using errcode = 'P0402', detail = v_balance::text;
  end if;
  v_amount := p_max;
  if v_balance < v_amount then
    v_amount := v_balance;
    v_by := 'balance';
  end if;
  if p_monthly_cap is not null then
    select coalesce(sum(coalesce(charged, amount)), 0) into v_spent
      from public.credit_reservations
      where user_id = p_user and status <> 'refunded' and created_at >= date_trunc('month', now());
    v_room := greatest(p_monthly_cap - v_spent, 0);
    if v_room < p_min then
      raise exception 'monthly credit cap reached' using errcode = 'P0403', detail = v_room::text;
    end if;
    if v_room < v_amount then
      v_amount := v_room;
      v_by := 'monthly_cap';
    end if;
  end if;
  if p_api_key is not null and p_key_cap is not null then
    select coalesce(sum(coalesce(charged, amount)), 0) into v_spent
      from public.credit_reservations
      where api_key_id = p_api_key and status <> 'refunded' and created_at >= date_trunc('month', now());
    v_room := greatest(p_key_cap - v_spent, 0);
    if v_room < p_min then
      raise exception 'api key monthly credit cap reached' using errcode = 'P0406', detail = v_room::text;
    end if;
    if v_room < v_amount then
      v_amount := v_room;
      v_by := 'api_key_cap';
    end if;
  end if;
  insert into public.credit_reservations (request_id, user_id, amount, api_key_id)
    values (p_request, p_user, v_amount, p_api_key);
  update public.credit_accounts set balance = balance - v_amount, updated_at = now()
    where user_id = p_user returning balance into v_balance;
  insert into public.credit_ledger (user_id, kind, delta, balance_after, request_id)
    values (p_user, 'reserve', -v_amount, v_balance, p_request);
  return jsonb_build_object('amount', v_amount, 'limited_by', v_by);
end
$$;
revoke execute on function public.credits_reserve_flex(uuid, uuid, bigint, bigint, bigint, uuid, bigint)
  from public, anon, authenticated;
grant execute on function public.credits_reserve_flex(uuid, uuid, bigint, bigint, bigint, uuid, bigint)
  to service_role;

-- The receipt row carries the key.
create or replace function public.request_log_insert(p_log jsonb, p_credits bigint, p_shortfall bigint)
returns void
language sql
set search_path = ''
as $$
  insert into public.llm_request_logs (request_id, user_id, mode, status, provider, model, task, key_source,
      admin_key_id, tokens_in, tokens_out, usage_source, credits, multiplier, fallback_path, stream, error_code,
      latency_ms, output_limit, shortfall, api_key_id)
  select r.request_id, r.user_id, r.mode, r.status, r.provider, r.model, r.task, r.key_source, r.admin_key_id,
         r.tokens_in, r.tokens_out, r.usage_source, p_credits, r.multiplier, coalesce(r.fallback_path, '{}'),
         r.stream, r.error_code, r.latency_ms, r.output_limit, p_shortfall, r.api_key_id
  from jsonb_populate_record(null::public.llm_request_logs, p_log) r
  on conflict (request_id) do nothing
$$;

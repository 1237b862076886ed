-- Money that holds against a hostile client (issue: money and access).
--  * llm_model_rates.max_output_tokens: the most a model may produce in one answer; the gateway writes
--    min(client limit, this, context room, what the reservation pays for) into every upstream body.
--  * llm_providers.free_for_byok: a keyless (local) engine serves BYOK requests only when an admin says so.
--  * credits_reserve_flex: reserve between a minimum and a maximum, as much as balance and monthly cap allow,
--    in one locked statement (the gateway lowers the output limit to what was reserved).
--  * A settle that cannot collect everything records a 'shortfall' ledger row (delta 0, uncollected amount).
--  * credits_settle_logged / credits_refund_logged: the charge and its receipt (the request-log row) are written
--    in one transaction, so a charge never exists without its receipt.

alter table public.llm_model_rates
  add column max_output_tokens integer not null default 4096
    check (max_output_tokens between 1 and 10000000);

-- The seeded presets' published output maxima (tokens). Rows an admin added keep the default.
update public.llm_model_rates r set max_output_tokens = s.max_out
from (values
  ('openai', 'gpt-4o-mini', 16384), ('openai', 'gpt-4o', 16384), ('openai', 'gpt-4.1-mini', 32768),
  ('github', 'openai/gpt-4o-mini', 16384), ('github', 'openai/gpt-4.1-mini', 32768),
  ('anthropic', 'claude-haiku-4-5', 64000), ('anthropic', 'claude-sonnet-4-5', 64000),
  ('google', 'gemini-2.5-flash', 65536), ('google', 'gemini-2.5-flash-lite', 65536),
  ('groq', 'llama-3.3-70b-versatile', 32768), ('groq', 'llama-3.1-8b-instant', 131072),
  ('mistral', 'mistral-small-latest', 32768), ('mistral', 'mistral-large-latest', 32768),
  ('lmstudio', 'local-model', 4096), ('ollama', 'llama3.2', 8192), ('ollama', 'smollm2', 4096)
) as s (slug, model, max_out)
join public.llm_providers p on p.slug = s.slug
where r.provider_id = p.id and r.model = s.model and r.max_output_tokens = 4096;

alter table public.llm_providers
  add column free_for_byok boolean not null default false;

-- Ledger: a 'shortfall' row says how much a settle could not collect (delta 0, so balance = sum(delta) holds).
alter table public.credit_ledger drop constraint credit_ledger_kind_check;
alter table public.credit_ledger add constraint credit_ledger_kind_check
  check (kind in ('grant', 'deduct', 'reserve', 'settle', 'refund', 'shortfall'));
alter table public.credit_ledger add column uncollected bigint check (uncollected > 0);
alter table public.credit_reservations add column shortfall bigint not null default 0 check (shortfall >= 0);

-- Receipts: the effective output limit written upstream, what could not be collected, and usage corrected
-- because the upstream's numbers were invalid or implausible.
alter table public.llm_request_logs drop constraint llm_request_logs_usage_source_check;
alter table public.llm_request_logs add constraint llm_request_logs_usage_source_check
  check (usage_source in ('measured', 'estimated', 'corrected'));
alter table public.llm_request_logs add column output_limit integer check (output_limit >= 0);
alter table public.llm_request_logs add column shortfall bigint not null default 0 check (shortfall >= 0);
create index llm_request_logs_shortfall_idx on public.llm_request_logs (created_at) where shortfall > 0;

-- Reserve as much as balance and monthly cap allow, between p_min and p_max. Returns {amount, limited_by} where
-- limited_by is null, 'balance' or 'monthly_cap'. Idempotent by request id (a repeated call returns the first
-- reservation). P0402 / P0403 when not even p_min fits; the error's DETAIL is what was available, so the gateway
-- can say what would fit.
create or replace function public.credits_reserve_flex(
  p_user uuid, p_request uuid, p_min bigint, p_max bigint, p_monthly_cap bigint default null
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
  insert into public.credit_reservations (request_id, user_id, amount) values (p_request, p_user, v_amount);
  update public.credit_accounts set balance = balance - v_amount, updated_at = now()
    where user_id = p_user returning balance into v_balance;
  insert into public.credit_ledger (user_id, kind, delta, balance_after, request_id)
    values (p_user, 'reserve', -v_amount, v_balance, p_request);
  return jsonb_build_object('amount', v_amount, 'limited_by', v_by);
end
$$;

-- Settle at the actual cost. A cost above the reservation takes the extra only as far as the balance goes; what
-- could not be collected is recorded (reservation.shortfall and a 'shortfall' ledger row), never dropped silently.
create or replace function public.credits_settle(p_request uuid, p_actual bigint) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_res public.credit_reservations;
  v_balance bigint;
  v_charge bigint;
begin
  if p_actual < 0 then
    raise exception 'amount must not be negative' using errcode = '22023';
  end if;
  select * into v_res from public.credit_reservations where request_id = p_request;
  if not found then
    raise exception 'no such reservation' using errcode = 'P0404';
  end if;
  v_balance := public.credits_lock_account(v_res.user_id);
  select * into v_res from public.credit_reservations where request_id = p_request for update;
  if v_res.status <> 'reserved' then
    return coalesce(v_res.charged, 0);
  end if;
  v_charge := least(p_actual, v_res.amount + v_balance);
  update public.credit_reservations
    set status = 'settled', charged = v_charge, closed_at = now(), shortfall = p_actual - v_charge
    where request_id = p_request;
  if v_charge <> v_res.amount then
    update public.credit_accounts set balance = balance + (v_res.amount - v_charge), updated_at = now()
      where user_id = v_res.user_id returning balance into v_balance;
    insert into public.credit_ledger (user_id, kind, delta, balance_after, request_id)
      values (v_res.user_id, 'settle', v_res.amount - v_charge, v_balance, p_request);
  end if;
  if p_actual > v_charge then
    insert into public.credit_ledger (user_id, kind, delta, balance_after, request_id, uncollected, reason)
      values (v_res.user_id, 'shortfall', 0, v_balance, p_request, p_actual - v_charge,
              'usage above the reservation and the balance');
  end if;
  return v_charge;
end
$$;

-- The receipt row from a JSON object (the gateway's RequestLog), credits and shortfall taken from the reservation.
create or replace function public.request_log_insert(p_log jsonb, p_credits bigint, p_shortfall bigint)
returns void
language sql
set search_path = ''
as $$
  insert into public.llm_request_logs (request_id, user_id, mode, status, provider, model, task, key_source,
      admin_key_id, tokens_in, tokens_out, usage_source, credits, multiplier, fallback_path, stream, error_code,
      latency_ms, output_limit, shortfall)
  select r.request_id, r.user_id, r.mode, r.status, r.provider, r.model, r.task, r.key_source, r.admin_key_id,
         r.tokens_in, r.tokens_out, r.usage_source, p_credits, r.multiplier, coalesce(r.fallback_path, '{}'),
         r.stream, r.error_code, r.latency_ms, r.output_limit, p_shortfall
  from jsonb_populate_record(null::public.llm_request_logs, p_log) r
  on conflict (request_id) do nothing
$$;

-- Settle and write the receipt in one transaction. Returns {charged, shortfall}. Idempotent by request id.
create or replace function public.credits_settle_logged(p_request uuid, p_actual bigint, p_log jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_charged bigint;
  v_shortfall bigint;
begin
  v_charged := public.credits_settle(p_request, p_actual);
  select shortfall into v_shortfall from public.credit_reservations where request_id = p_request;
  perform public.request_log_insert(p_log, v_charged, coalesce(v_shortfall, 0));
  return jsonb_build_object('charged', v_charged, 'shortfall', coalesce(v_shortfall, 0));
end
$$;

-- Refund (the request failed) and write its receipt in one transaction.
create or replace function public.credits_refund_logged(p_request uuid, p_log jsonb) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_refunded bigint;
  v_charged bigint;
begin
  v_refunded := public.credits_refund(p_request);
  select coalesce(charged, 0) into v_charged from public.credit_reservations where request_id = p_request;
  perform public.request_log_insert(p_log, coalesce(v_charged, 0), 0);
  return v_refunded;
end
$$;

revoke execute on function public.credits_reserve_flex(uuid, uuid, bigint, bigint, bigint) from public;
revoke execute on function public.request_log_insert(jsonb, bigint, bigint) from public;
revoke execute on function public.credits_settle_logged(uuid, bigint, jsonb) from public;
revoke execute on function public.credits_refund_logged(uuid, jsonb) from public;
grant execute on function public.credits_reserve_flex(uuid, uuid, bigint, bigint, bigint) to service_role;
grant execute on function public.request_log_insert(jsonb, bigint, bigint) to service_role;
grant execute on function public.credits_settle_logged(uuid, bigint, jsonb) to service_role;
grant execute on function public.credits_refund_logged(uuid, jsonb) to service_role;

-- Receipt rows the request log refused (their user was deleted meanwhile, a value out of range): kept here, with
-- the reason, instead of being dropped; no foreign keys, service role only.
create table public.request_log_rejects (
  id bigint generated always as identity primary key,
  request_id uuid not null,
  row_data jsonb not null,
  reason text not null,
  created_at timestamptz not null default now()
);
alter table public.request_log_rejects enable row level security;
revoke all on public.request_log_rejects from anon, authenticated, service_role;
grant select, insert on public.request_log_rejects to service_role;

-- Credits: one balance per user, an append-only ledger, and one reservation per gateway request.
-- Money is integer micro-credits. Users read their own rows; every write goes through the functions below,
-- which only service_role may execute. Invariant: balance = sum(ledger.delta) and balance >= 0.

create table public.credit_accounts (
  user_id uuid primary key references auth.users (id) on delete cascade,
  balance bigint not null default 0 check (balance >= 0),
  updated_at timestamptz not null default now()
);
alter table public.credit_accounts enable row level security;

create table public.credit_ledger (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  kind text not null check (kind in ('grant', 'deduct', 'reserve', 'settle', 'refund')),
  delta bigint not null,
  balance_after bigint not null check (balance_after >= 0),
  request_id uuid,
  reason text not null default '' check (length(reason) <= 500),
  actor_id uuid,
  created_at timestamptz not null default now()
);
alter table public.credit_ledger enable row level security;
create index credit_ledger_user_idx on public.credit_ledger (user_id, created_at desc);
create index credit_ledger_request_idx on public.credit_ledger (request_id);

create table public.credit_reservations (
  request_id uuid primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  amount bigint not null check (amount >= 0),
  charged bigint check (charged >= 0),
  status text not null default 'reserved' check (status in ('reserved', 'settled', 'refunded')),
  created_at timestamptz not null default now(),
  closed_at timestamptz
);
alter table public.credit_reservations enable row level security;
create index credit_reservations_user_idx on public.credit_reservations (user_id, created_at);

revoke all on public.credit_accounts, public.credit_ledger, public.credit_reservations
  from anon, authenticated, service_role;
grant select on public.credit_accounts, public.credit_ledger, public.credit_reservations to authenticated;
grant select, insert, update on public.credit_accounts, public.credit_reservations to service_role;
grant select, insert on public.credit_ledger to service_role;

create policy credit_accounts_select on public.credit_accounts
  for select to authenticated using (user_id = (select auth.uid()) or (select public.is_admin()));
create policy credit_ledger_select on public.credit_ledger
  for select to authenticated using (user_id = (select auth.uid()) or (select public.is_admin()));
create policy credit_reservations_select on public.credit_reservations
  for select to authenticated using (user_id = (select auth.uid()) or (select public.is_admin()));

-- Locks the account row (creating it when missing) so concurrent writers for one user serialise.
create or replace function public.credits_lock_account(p_user uuid) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
begin
  insert into public.credit_accounts (user_id) values (p_user) on conflict (user_id) do nothing;
  select balance into v_balance from public.credit_accounts where user_id = p_user for update;
  return v_balance;
end
$$;

-- Grant (positive) or deduct (negative) credits. A deduct never takes the balance below zero.
create or replace function public.credits_adjust(
  p_user uuid, p_delta bigint, p_reason text, p_actor uuid default null
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
begin
  if p_delta = 0 then
    raise exception 'amount must not be zero' using errcode = '22023';
  end if;
  v_balance := public.credits_lock_account(p_user);
  if v_balance + p_delta < 0 then
    raise exception 'insufficient credits' using errcode = 'P0402';
  end if;
  update public.credit_accounts set balance = balance + p_delta, updated_at = now()
    where user_id = p_user returning balance into v_balance;
  insert into public.credit_ledger (user_id, kind, delta, balance_after, reason, actor_id)
    values (p_user, case when p_delta > 0 then 'grant' else 'deduct' end, p_delta, v_balance, coalesce(p_reason, ''),
            p_actor);
  return v_balance;
end
$$;

-- Reserve p_amount for one request. Idempotent by request id: a repeated call returns the first outcome.
-- Fails with P0402 when the balance is short and P0403 when the user's monthly cap would be exceeded.
create or replace function public.credits_reserve(
  p_user uuid, p_request uuid, p_amount bigint, p_monthly_cap bigint default null
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
  v_existing public.credit_reservations;
  v_spent bigint;
begin
  if p_amount < 0 then
    raise exception 'amount must not be negative' using errcode = '22023';
  end if;
  v_balance := public.credits_lock_account(p_user);
  select * into v_existing from public.credit_reservations where request_id = p_request;
  if found then
    if v_existing.user_id <> p_user then
      raise exception 'request id belongs to another user' using errcode = '22023';
    end if;
    return v_balance;
  end if;
  if v_balance < p_amount then
    raise exception 'insufficient credits' using errcode = 'P0402';
  end if;
  if p_monthly_cap is not null then
    select coalesce(sum(coalesce(charged, amount)), 0) into v_spent
      from public.credit_reservations
      where user_id = p_user and status <> 'refunded' and created_at >= date_trunc('month', now());
    if v_spent + p_amount > p_monthly_cap then
      raise exception 'monthly credit cap reached' using errcode = 'P0403';
    end if;
  end if;
  insert into public.credit_reservations (request_id, user_id, amount) values (p_request, p_user, p_amount);
  update public.credit_accounts set balance = balance - p_amount, updated_at = now()
    where user_id = p_user returning balance into v_balance;
  insert into public.credit_ledger (user_id, kind, delta, balance_after, request_id)
    values (p_user, 'reserve', -p_amount, v_balance, p_request);
  return v_balance;
end
$$;

-- Settle a reservation at the actual cost. Returns what was charged. Idempotent: settling twice, or settling a
-- refunded reservation, changes nothing. A cost above the reservation takes the extra only as far as the balance
-- goes (never below zero).
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
  update public.credit_reservations set status = 'settled', charged = v_charge, closed_at = now()
    where request_id = p_request;
  if v_charge <> v_res.amount then
    update public.credit_accounts set balance = balance + (v_res.amount - v_charge), updated_at = now()
      where user_id = v_res.user_id returning balance into v_balance;
    insert into public.credit_ledger (user_id, kind, delta, balance_after, request_id)
      values (v_res.user_id, 'settle', v_res.amount - v_charge, v_balance, p_request);
  end if;
  return v_charge;
end
$$;

-- Return a whole reservation (upstream failed). Idempotent; a settled reservation is left as it is.
create or replace function public.credits_refund(p_request uuid) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_res public.credit_reservations;
  v_balance bigint;
begin
  select * into v_res from public.credit_reservations where request_id = p_request;
  if not found then
    return 0;
  end if;
  v_balance := public.credits_lock_account(v_res.user_id);
  select * into v_res from public.credit_reservations where request_id = p_request for update;
  if v_res.status <> 'reserved' then
    return 0;
  end if;
  update public.credit_reservations set status = 'refunded', charged = 0, closed_at = now()
    where request_id = p_request;
  update public.credit_accounts set balance = balance + v_res.amount, updated_at = now()
    where user_id = v_res.user_id returning balance into v_balance;
  insert into public.credit_ledger (user_id, kind, delta, balance_after, request_id)
    values (v_res.user_id, 'refund', v_res.amount, v_balance, p_request);
  return v_res.amount;
end
$$;

revoke execute on function public.credits_lock_account(uuid) from public;
revoke execute on function public.credits_adjust(uuid, bigint, text, uuid) from public;
revoke execute on function public.credits_reserve(uuid, uuid, bigint, bigint) from public;
revoke execute on function public.credits_settle(uuid, bigint) from public;
revoke execute on function public.credits_refund(uuid) from public;
grant execute on function public.credits_lock_account(uuid) to service_role;
grant execute on function public.credits_adjust(uuid, bigint, text, uuid) to service_role;
grant execute on function public.credits_reserve(uuid, uuid, bigint, bigint) to service_role;
grant execute on function public.credits_settle(uuid, bigint) to service_role;
grant execute on function public.credits_refund(uuid) to service_role;

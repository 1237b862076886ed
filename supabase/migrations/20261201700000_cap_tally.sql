-- Monthly credit caps from a running tally instead of a sum of the month's reservations.
--
-- private.cap_spend (20261201500100, the cap notifications' tally) becomes THE month's spending per scope, kept for
-- every scope whether it has a cap or not, so a cap set or changed mid-month needs no rebuild:
--   scope 'user'        subject = user_id              personal reservations (team_id null)
--   scope 'team_member' subject = team_id:user_id      a member's reservations on that team's wallet
--   scope 'api_key'     subject = api_key_id           every reservation made with that key (either wallet)
--   month = date_trunc('month', created_at, 'UTC') of the reservation (the server runs in UTC, so this is the
--   month the sums used; naming the zone keeps a session with another TimeZone from splitting a reservation's
--   hold and its settle across two months).
--   spent = settled charges (charged), held = reservations still open (amount); refunds count nothing. So
--   spent + held = sum(coalesce(charged, amount)) of the month's reservations not refunded -- what
--   credits_reserve_flex summed before, and spent alone is what the 80 % / 100 % notifications compare.
--
-- One AFTER trigger on credit_reservations keeps it (insert = hold, settle = hold -> charge, refund = hold -> 0,
-- and any other change of the row's amount, status, month, user, team or key, e.g. a team deleted -> team_id
-- null), so every path -- reserve, settle, refund, the sweeper's refunds, a fixture -- moves it the same way. It
-- runs inside the statement that changes the reservation, i.e. under the wallet lock reserve/settle/refund take.
-- credits_reserve_flex reads spent + held of the capped scopes with the tally row locked (FOR UPDATE), so the check
-- and the hold are atomic even for an API key spending from two wallets at once. Lock order everywhere: wallet,
-- then the user / team_member row, then the api_key row.

-- Nothing may change a reservation while the tally is rebuilt below.
lock table public.credit_reservations in share row exclusive mode;

alter table private.cap_spend add column held bigint not null default 0;

-- -- the tally's writer ----------------------------------------------------------------------------------------------

-- Add (spent, held) to the wallet scope's row and, with a key, to the key's row of that month.
create or replace function private.cap_tally_add(p_user uuid, p_team uuid, p_key uuid, p_month timestamptz,
                                                 p_spent bigint, p_held bigint) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_spent = 0 and p_held = 0 then
    return;
  end if;
  insert into private.cap_spend as t (scope, subject, month, spent, held)
    values (case when p_team is null then 'user' else 'team_member' end,
            case when p_team is null then p_user::text else p_team::text || ':' || p_user::text end,
            p_month, p_spent, p_held)
    on conflict (scope, subject, month) do update set spent = t.spent + excluded.spent, held = t.held + excluded.held;
  if p_key is not null then
    insert into private.cap_spend as t (scope, subject, month, spent, held)
      values ('api_key', p_key::text, p_month, p_spent, p_held)
      on conflict (scope, subject, month) do update
        set spent = t.spent + excluded.spent, held = t.held + excluded.held;
  end if;
end
$$;

-- A reservation counts `amount` as held while reserved, `charged` as spent once settled, nothing once refunded.
create or replace function private.cap_tally_on_reservation() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_old_spent bigint := 0;
  v_old_held bigint := 0;
  v_new_spent bigint := 0;
  v_new_held bigint := 0;
  v_old_month timestamptz;
  v_new_month timestamptz;
begin
  if tg_op <> 'INSERT' then
    v_old_month := date_trunc('month', old.created_at, 'UTC');
    if old.status = 'reserved' then
      v_old_held := old.amount;
    elsif old.status = 'settled' then
      v_old_spent := coalesce(old.charged, old.amount);
    end if;
  end if;
  if tg_op <> 'DELETE' then
    v_new_month := date_trunc('month', new.created_at, 'UTC');
    if new.status = 'reserved' then
      v_new_held := new.amount;
    elsif new.status = 'settled' then
      v_new_spent := coalesce(new.charged, new.amount);
    end if;
  end if;
  if tg_op = 'UPDATE' and (old.user_id, old.team_id, old.api_key_id, v_old_month)
                          is not distinct from (new.user_id, new.team_id, new.api_key_id, v_new_month) then
    -- The usual case (a settle or a refund): one upsert per scope with the difference.
    perform private.cap_tally_add(new.user_id, new.team_id, new.api_key_id, v_new_month,
                                  v_new_spent - v_old_spent, v_new_held - v_old_held);
  else
    if tg_op <> 'INSERT' then
      perform private.cap_tally_add(old.user_id, old.team_id, old.api_key_id, v_old_month, -v_old_spent, -v_old_held);
    end if;
    if tg_op <> 'DELETE' then
      perform private.cap_tally_add(new.user_id, new.team_id, new.api_key_id, v_new_month, v_new_spent, v_new_held);
    end if;
  end if;
  return null;
end
$$;

revoke execute on function private.cap_tally_add(uuid, uuid, uuid, timestamptz, bigint, bigint)
  from public, anon, authenticated, service_role;
revoke execute on function private.cap_tally_on_reservation() from public, anon, authenticated, service_role;

-- Named to fire before credit_reservations_cap_notify (same event, triggers fire by name), which reads the tally.
create trigger credit_reservations_cap_count
  after insert or delete or update of status, amount, charged, created_at, user_id, team_id, api_key_id
  on public.credit_reservations
  for each row execute function private.cap_tally_on_reservation();

-- -- the backfill ------------------------------------------------------------------------------------------------------

delete from private.cap_spend;
insert into private.cap_spend (scope, subject, month, spent, held)
select scope, subject, month, sum(spent), sum(held)
from (
  select case when team_id is null then 'user' else 'team_member' end as scope,
         case when team_id is null then user_id::text else team_id::text || ':' || user_id::text end as subject,
         date_trunc('month', created_at, 'UTC') as month,
         case when status = 'settled' then coalesce(charged, amount) else 0 end as spent,
         case when status = 'reserved' then amount else 0 end as held
  from public.credit_reservations where status <> 'refunded'
  union all
  select 'api_key', api_key_id::text, date_trunc('month', created_at, 'UTC'),
         case when status = 'settled' then coalesce(charged, amount) else 0 end,
         case when status = 'reserved' then amount else 0 end
  from public.credit_reservations where status <> 'refunded' and api_key_id is not null
) r
group by scope, subject, month;

-- -- the reader for the cap check -------------------------------------------------------------------------------------

-- This month's spent + held of one scope, with its tally row locked until the caller's transaction ends (created
-- empty when the scope has no reservation yet this month). Called by credits_reserve_flex (service_role), which
-- cannot read the private schema itself.
create or replace function public.credits_cap_used(p_scope text, p_subject text, p_month timestamptz)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_used bigint;
begin
  select spent + held into v_used from private.cap_spend
    where scope = p_scope and subject = p_subject and month = p_month for update;
  if not found then
    insert into private.cap_spend (scope, subject, month, spent, held) values (p_scope, p_subject, p_month, 0, 0)
      on conflict (scope, subject, month) do nothing;
    select spent + held into v_used from private.cap_spend
      where scope = p_scope and subject = p_subject and month = p_month for update;
  end if;
  return v_used;
end
$$;

revoke execute on function public.credits_cap_used(text, text, timestamptz) from public, anon, authenticated;
grant execute on function public.credits_cap_used(text, text, timestamptz) to service_role;

-- -- the reservation: as 20261130400000, the three month sums replaced by the tally ----------------------------------

create or replace function public.credits_reserve_flex(
  p_user uuid, p_request uuid, p_min bigint, p_max bigint, p_monthly_cap bigint default null,
  p_api_key uuid default null, p_key_cap bigint default null, p_team uuid default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
  v_existing public.credit_reservations;
  v_month timestamptz := date_trunc('month', now(), 'UTC');  -- the new reservation's created_at is now()
  v_spent bigint;
  v_room bigint;
  v_amount bigint;
  v_by text;
  v_member public.team_members;
begin
  if p_min < 0 or p_max < p_min then
    raise exception 'need 0 <= min <= max' using errcode = '22023';
  end if;
  if p_team is null then
    v_balance := public.credits_lock_account(p_user);
  else
    v_balance := public.team_credits_lock(p_team);
    select * into v_member from public.team_members where team_id = p_team and user_id = p_user;
    if not found then
      raise exception 'not a team member' using errcode = 'P0417';
    end if;
  end if;
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
  if p_team is null and p_monthly_cap is not null then
    v_spent := public.credits_cap_used('user', p_user::text, v_month);
    v_room := greatest(p_monthly_cap - v_spent, 0);
    if v_room < p_min then
      raise exception 'monthly credit cap reached' using errcode = 'P0403', detail = v_room::text;
    end if;
    if v_room < v_amount then
      v_amount := v_room;
      v_by := 'monthly_cap';
    end if;
  end if;
  if p_team is not null and v_member.monthly_credit_cap is not null then
    v_spent := public.credits_cap_used('team_member', p_team::text || ':' || p_user::text, v_month);
    v_room := greatest(v_member.monthly_credit_cap - v_spent, 0);
    if v_room < p_min then
      raise exception 'team member monthly credit cap reached' using errcode = 'P0418', detail = v_room::text;
    end if;
    if v_room < v_amount then
      v_amount := v_room;
      v_by := 'team_member_cap';
    end if;
  end if;
  if p_api_key is not null and p_key_cap is not null then
    v_spent := public.credits_cap_used('api_key', p_api_key::text, v_month);
    v_room := greatest(p_key_cap - v_spent, 0);
    if v_room < p_min then
      raise exception 'api key monthly credit cap reached' using errcode = 'P0406', detail = v_room::text;
    end if;
    if v_room < v_amount then
      v_amount := v_room;
      v_by := 'api_key_cap';
    end if;
  end if;
  insert into public.credit_reservations (request_id, user_id, amount, api_key_id, team_id)
    values (p_request, p_user, v_amount, p_api_key, p_team);
  if p_team is null then
    update public.credit_accounts set balance = balance - v_amount, updated_at = now()
      where user_id = p_user returning balance into v_balance;
    insert into public.credit_ledger (user_id, kind, delta, balance_after, request_id)
      values (p_user, 'reserve', -v_amount, v_balance, p_request);
  else
    update public.team_credit_accounts set balance = balance - v_amount, updated_at = now()
      where team_id = p_team returning balance into v_balance;
    insert into public.team_credit_ledger (team_id, user_id, kind, delta, balance_after, request_id)
      values (p_team, p_user, 'reserve', -v_amount, v_balance, p_request);
  end if;
  return jsonb_build_object('amount', v_amount, 'limited_by', v_by);
end
$$;

-- The fixed-amount reservation (before credits_reserve_flex; services.credits.reserve): the same personal cap from
-- the same tally (it summed the user's team spending too before; the flex reservation never did).
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
    v_spent := public.credits_cap_used('user', p_user::text, date_trunc('month', now(), 'UTC'));
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

-- -- the notifications read the same tally ----------------------------------------------------------------------------

-- As 20261201500100, but the tally is already up to date (credit_reservations_cap_count fired first): read the
-- month's settled spending, tell the thresholds crossed. p_charged / p_where / p_id are kept for the signature.
create or replace function private.notify_cap_settled(p_scope text, p_subject text, p_user uuid, p_team uuid,
                                                      p_cap bigint, p_month timestamptz, p_charged bigint,
                                                      p_where text, p_id uuid, p_data jsonb) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_spent bigint;
begin
  select spent into v_spent from private.cap_spend where scope = p_scope and subject = p_subject and month = p_month;
  v_spent := coalesce(v_spent, p_charged);
  if v_spent * 5 >= p_cap * 4 and not exists (select 1 from public.notification_events where dedupe_key =
      'spend_cap.reached:' || p_scope || ':' || p_subject || ':' || to_char(p_month, 'YYYY-MM')) then
    perform private.notify_cap(p_scope, p_subject, p_user, p_team, p_cap, v_spent, p_data, to_char(p_month, 'YYYY-MM'));
  end if;
end
$$;

-- The tally counts every scope, capped or not: a cap change needs no rebuild any more.
drop trigger user_preferences_cap_changed on public.user_preferences;
drop trigger api_keys_cap_changed on public.api_keys;
drop trigger team_members_cap_changed on public.team_members;
drop function private.notify_cap_changed();

-- Notification outbox (issue 16). An event is a row of public.notification_events written by a trigger or a SQL
-- function in the SAME transaction as what caused it: a rolled-back action leaves no event, a committed one always
-- has its event. Each event has a dedupe_key (unique), so the same fact is recorded once (a cap threshold once per
-- month, a failing key once per day). The insert also defers the worker's `notify.dispatch` job (procrastinate) in
-- that transaction, so no event waits for a poll and none is forgotten.
--
-- * Events: balance.low (user or team wallet drops under the site's low_balance_threshold; re-armed by a grant that
--   brings it back above), spend_cap.warning / spend_cap.reached (80 % / 100 % of a monthly cap: the user's own,
--   an API key's, a team member's; once per month per threshold, measured when a reservation settles),
--   provider_key.failing (a stored BYOK, team or admin key answered 401/403; public.notify_key_failing, called by
--   the gateway; once per key per UTC day), api_key.created / api_key.revoked, password.changed,
--   team.invitation.created, credits.granted (user or team wallet).
-- * Amounts in `data` are integer micro-credits (1 credit = 1,000,000), named *_micro. No secret is ever in data.
-- * RLS: a user reads the events about them (user_id); writes are the definer functions' and the service role's.
-- * Hot path: the balance triggers fire only when a balance goes DOWN and the wallet has not been warned yet (a
--   WHEN clause, evaluated without a function call otherwise); the cap trigger only when a reservation settles with
--   a charge, and then reads the caps by primary key; a capped scope keeps a running monthly tally
--   (private.cap_spend), so no settle re-sums the month.

create table public.notification_events (
  id uuid primary key default gen_random_uuid(),
  type text not null check (type in ('balance.low', 'spend_cap.warning', 'spend_cap.reached',
    'provider_key.failing', 'api_key.created', 'api_key.revoked', 'password.changed', 'team.invitation.created',
    'credits.granted')),
  user_id uuid references auth.users (id) on delete cascade,
  team_id uuid references public.teams (id) on delete cascade,
  data jsonb not null default '{}'::jsonb check (jsonb_typeof(data) = 'object'),
  dedupe_key text not null unique check (length(dedupe_key) <= 300),
  created_at timestamptz not null default now(),
  dispatched_at timestamptz
);
alter table public.notification_events enable row level security;
create index notification_events_user_idx on public.notification_events (user_id, created_at desc);
create index notification_events_team_idx on public.notification_events (team_id, created_at desc)
  where team_id is not null;

-- One row per (event, channel, recipient): the worker's idempotency key for email. status: pending (a send job is
-- queued), sent, skipped (the recipient's preference is off, or no address), failed (gave up after retries).
create table public.notification_deliveries (
  id uuid primary key default gen_random_uuid(),
  event_id uuid not null references public.notification_events (id) on delete cascade,
  channel text not null check (channel in ('email')),
  recipient uuid not null references auth.users (id) on delete cascade,
  status text not null default 'pending' check (status in ('pending', 'sent', 'skipped', 'failed')),
  attempts integer not null default 0,
  last_error text check (length(last_error) <= 300),
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  unique (event_id, channel, recipient)
);
alter table public.notification_deliveries enable row level security;
create index notification_deliveries_recipient_idx on public.notification_deliveries (recipient);

revoke all on public.notification_events, public.notification_deliveries from anon, authenticated, service_role;
grant select (id, type, user_id, team_id, data, created_at) on public.notification_events to authenticated;
grant select, insert, update on public.notification_events to service_role;
grant select, insert, update on public.notification_deliveries to service_role;

create policy notification_events_select on public.notification_events
  for select to authenticated using (user_id = (select auth.uid()));

-- Wallet state: when the owner was last warned of a low balance (null = armed).
alter table public.credit_accounts add column low_balance_notified_at timestamptz;
alter table public.team_credit_accounts add column low_balance_notified_at timestamptz;

-- -- recording --------------------------------------------------------------------------------------------------------

-- Defers the dispatch job in the caller's transaction. procrastinate's functions and triggers name their tables
-- unqualified, so this one function runs with search_path = public (pg_temp last); it touches nothing else.
create or replace function private.notify_enqueue(p_event uuid) returns void
language sql
security definer
set search_path = public, pg_temp
as $$
  select public.procrastinate_defer_jobs_v1(array[row('notify', 'notify.dispatch', 0, null, null,
    jsonb_build_object('event_id', p_event), null)::public.procrastinate_job_to_defer_v1]);
$$;

-- Records one event (nothing when its dedupe_key is taken) and queues its dispatch. Returns the new id or null.
create or replace function private.notify_event(p_type text, p_user uuid, p_team uuid, p_dedupe text, p_data jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  insert into public.notification_events (type, user_id, team_id, dedupe_key, data)
    values (p_type, p_user, p_team, p_dedupe, coalesce(p_data, '{}'::jsonb))
    on conflict (dedupe_key) do nothing
    returning id into v_id;
  if v_id is not null then
    perform private.notify_enqueue(v_id);
  end if;
  return v_id;
end
$$;

-- -- balance.low --------------------------------------------------------------------------------------------------------

create or replace function private.notify_low_balance() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_threshold bigint;
  v_team uuid;
  v_user uuid;
begin
  select low_balance_threshold into v_threshold from public.site_settings where id;
  if v_threshold is null or v_threshold <= 0 or new.balance >= v_threshold then
    return new;
  end if;
  new.low_balance_notified_at := now();
  if tg_table_name = 'team_credit_accounts' then
    v_team := (to_jsonb(new) ->> 'team_id')::uuid;
  else
    v_user := (to_jsonb(new) ->> 'user_id')::uuid;
  end if;
  perform private.notify_event('balance.low', v_user, v_team,
    'balance.low:' || coalesce(v_team, v_user)::text || ':' || extract(epoch from clock_timestamp())::text,
    jsonb_build_object('wallet', case when v_team is null then 'user' else 'team' end,
                       'balance_micro', new.balance, 'threshold_micro', v_threshold));
  return new;
end
$$;

create trigger credit_accounts_low_balance before update of balance on public.credit_accounts
  for each row when (new.balance < old.balance and old.low_balance_notified_at is null)
  execute function private.notify_low_balance();
create trigger team_credit_accounts_low_balance before update of balance on public.team_credit_accounts
  for each row when (new.balance < old.balance and old.low_balance_notified_at is null)
  execute function private.notify_low_balance();

-- -- credits.granted (and re-arming the low-balance warning) ------------------------------------------------------------

create or replace function private.notify_user_grant() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.notify_event('credits.granted', new.user_id, null, 'credits.granted:user:' || new.id,
    jsonb_build_object('wallet', 'user', 'amount_micro', new.delta, 'balance_micro', new.balance_after,
                       'reason', new.reason));
  if new.balance_after >= (select low_balance_threshold from public.site_settings where id) then
    update public.credit_accounts set low_balance_notified_at = null
      where user_id = new.user_id and low_balance_notified_at is not null;
  end if;
  return null;
end
$$;

create or replace function private.notify_team_grant() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.notify_event('credits.granted', null, new.team_id, 'credits.granted:team:' || new.id,
    jsonb_build_object('wallet', 'team', 'amount_micro', new.delta, 'balance_micro', new.balance_after,
                       'reason', new.reason));
  if new.balance_after >= (select low_balance_threshold from public.site_settings where id) then
    update public.team_credit_accounts set low_balance_notified_at = null
      where team_id = new.team_id and low_balance_notified_at is not null;
  end if;
  return null;
end
$$;

create trigger credit_ledger_grant_notify after insert on public.credit_ledger
  for each row when (new.kind = 'grant') execute function private.notify_user_grant();
create trigger team_credit_ledger_grant_notify after insert on public.team_credit_ledger
  for each row when (new.kind = 'grant') execute function private.notify_team_grant();

-- -- spend_cap.warning / spend_cap.reached ------------------------------------------------------------------------------

-- One cap: spent so far this month against the cap, both thresholds, each once per month (dedupe_key).
create or replace function private.notify_cap(p_scope text, p_subject text, p_user uuid, p_team uuid, p_cap bigint,
                                              p_spent bigint, p_data jsonb, p_month text) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_month text := p_month;
  v_data jsonb := coalesce(p_data, '{}'::jsonb) || jsonb_build_object(
    'scope', p_scope, 'cap_micro', p_cap, 'spent_micro', p_spent, 'month', v_month);
begin
  if p_spent >= p_cap then
    perform private.notify_event('spend_cap.reached', p_user, p_team,
      'spend_cap.reached:' || p_scope || ':' || p_subject || ':' || v_month, v_data || '{"percent": 100}');
  elsif p_spent * 5 >= p_cap * 4 then  -- a jump straight to 100 % is told once, as reached
    perform private.notify_event('spend_cap.warning', p_user, p_team,
      'spend_cap.warning:' || p_scope || ':' || p_subject || ':' || v_month, v_data || '{"percent": 80}');
  end if;
end
$$;

-- What each capped scope has settled this month, kept as settles happen (O(1) per settle instead of re-summing the
-- month's reservations): filled from the reservations the first time a scope is seen in a month. Written only
-- under the wallet lock the settle already holds, so it adds no contention. Not exposed (schema private).
create table private.cap_spend (
  scope text not null,
  subject text not null,
  month timestamptz not null,
  spent bigint not null,
  primary key (scope, subject, month)
);
revoke all on private.cap_spend from public, anon, authenticated, service_role;

-- One capped scope after a settle of p_charged: add it to the month's tally (or start the tally from the settled
-- reservations, this one included) and tell the thresholds crossed. p_where selects the scope's reservations.
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
  update private.cap_spend set spent = spent + p_charged
    where scope = p_scope and subject = p_subject and month = p_month
    returning spent into v_spent;
  if not found then
    execute format('select coalesce(sum(charged), 0) from public.credit_reservations where %s = $1'
                   ' and status = ''settled'' and created_at >= $2 and created_at < $2 + interval ''1 month''%s',
                   p_where, case when p_scope = 'user' then ' and team_id is null'
                                 when p_scope = 'team_member' then ' and team_id = $3' else '' end)
      into v_spent using p_id, p_month, p_team;
    insert into private.cap_spend (scope, subject, month, spent) values (p_scope, p_subject, p_month, v_spent)
      on conflict (scope, subject, month) do update set spent = excluded.spent;
  end if;
  if v_spent * 5 >= p_cap * 4 and not exists (select 1 from public.notification_events where dedupe_key =
      'spend_cap.reached:' || p_scope || ':' || p_subject || ':' || to_char(p_month, 'YYYY-MM')) then
    perform private.notify_cap(p_scope, p_subject, p_user, p_team, p_cap, v_spent, p_data, to_char(p_month, 'YYYY-MM'));
  end if;
end
$$;

-- After a reservation settles: the caps that bound it (the user's own for personal spending, the member's in a
-- team, the API key's). Without a cap: one primary-key read (two with an API key).
create or replace function private.notify_caps_on_settle() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_cap bigint;
  v_month timestamptz := date_trunc('month', new.created_at);
  v_name text;
  v_prefix text;
  v_owner uuid;
begin
  if new.team_id is null then
    select monthly_credit_cap into v_cap from public.user_preferences where user_id = new.user_id;
    if v_cap > 0 then
      perform private.notify_cap_settled('user', new.user_id::text, new.user_id, null, v_cap, v_month, new.charged,
                                         'user_id', new.user_id, '{}');
    end if;
  else
    select monthly_credit_cap into v_cap from public.team_members
      where team_id = new.team_id and user_id = new.user_id;
    if v_cap > 0 then
      perform private.notify_cap_settled('team_member', new.team_id || ':' || new.user_id, new.user_id,
                                         new.team_id, v_cap, v_month, new.charged, 'user_id', new.user_id,
                                         jsonb_build_object('team_id', new.team_id));
    end if;
  end if;
  if new.api_key_id is not null then
    select monthly_credit_cap, name, prefix, user_id into v_cap, v_name, v_prefix, v_owner
      from public.api_keys where id = new.api_key_id;
    if v_cap > 0 then
      perform private.notify_cap_settled('api_key', new.api_key_id::text, v_owner, null, v_cap, v_month,
                                         new.charged, 'api_key_id', new.api_key_id,
                                         jsonb_build_object('api_key_id', new.api_key_id, 'api_key_name', v_name,
                                                            'api_key_prefix', v_prefix));
    end if;
  end if;
  return null;
end
$$;

-- A cap changed (or removed and set again): that scope's tally is rebuilt from the reservations on its next settle,
-- since settles made while it had no cap were not counted.
create or replace function private.notify_cap_changed() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.cap_spend where (scope, subject) = (
    case tg_table_name when 'user_preferences' then 'user' when 'api_keys' then 'api_key' else 'team_member' end,
    case tg_table_name when 'user_preferences' then (to_jsonb(new) ->> 'user_id')
                       when 'api_keys' then (to_jsonb(new) ->> 'id')
                       else (to_jsonb(new) ->> 'team_id') || ':' || (to_jsonb(new) ->> 'user_id') end);
  return null;
end
$$;

create trigger user_preferences_cap_changed after update of monthly_credit_cap on public.user_preferences
  for each row when (old.monthly_credit_cap is distinct from new.monthly_credit_cap)
  execute function private.notify_cap_changed();
create trigger api_keys_cap_changed after update of monthly_credit_cap on public.api_keys
  for each row when (old.monthly_credit_cap is distinct from new.monthly_credit_cap)
  execute function private.notify_cap_changed();
create trigger team_members_cap_changed after update of monthly_credit_cap on public.team_members
  for each row when (old.monthly_credit_cap is distinct from new.monthly_credit_cap)
  execute function private.notify_cap_changed();

create trigger credit_reservations_cap_notify after update of status on public.credit_reservations
  for each row when (old.status = 'reserved' and new.status = 'settled' and new.charged > 0)
  execute function private.notify_caps_on_settle();

-- -- provider_key.failing ------------------------------------------------------------------------------------------------

-- Called by the gateway (service_role) when an upstream answers 401/403 to a stored key: p_kind 'admin' (an
-- llm_admin_keys id) or 'stored' (a user's or a team's BYOK key id). Once per key per UTC day. Returns whether this
-- call recorded the event.
create or replace function public.notify_key_failing(p_kind text, p_key uuid, p_status integer) returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_day text := to_char(now() at time zone 'utc', 'YYYY-MM-DD');
  v_user uuid;
  v_team uuid;
  v_provider uuid;
  v_last4 text;
  v_source text;
begin
  if p_status not in (401, 403) then
    return false;
  end if;
  if p_kind = 'admin' then
    select provider_id, last4 into v_provider, v_last4 from public.llm_admin_keys where id = p_key;
    v_source := 'admin';
  elsif p_kind = 'stored' then
    select user_id, provider_id, last4 into v_user, v_provider, v_last4
      from public.user_provider_keys where id = p_key;
    v_source := 'byok';
    if v_provider is null then
      select team_id, provider_id, last4 into v_team, v_provider, v_last4
        from public.team_provider_keys where id = p_key;
      v_source := 'team';
    end if;
  end if;
  if v_provider is null then
    return false;
  end if;
  return private.notify_event('provider_key.failing', v_user, v_team,
    'provider_key.failing:' || p_key || ':' || v_day,
    jsonb_build_object('key_source', v_source, 'key_id', p_key, 'last4', v_last4, 'status', p_status,
                       'provider', (select slug from public.llm_providers where id = v_provider),
                       'provider_name', (select name from public.llm_providers where id = v_provider),
                       'day', v_day)) is not null;
end
$$;

-- -- api_key.created / api_key.revoked -----------------------------------------------------------------------------------

create or replace function private.notify_api_key() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_type text := case when tg_op = 'INSERT' then 'api_key.created' else 'api_key.revoked' end;
begin
  perform private.notify_event(v_type, new.user_id, null, v_type || ':' || new.id,
    jsonb_build_object('api_key_id', new.id, 'name', new.name, 'prefix', new.prefix));
  return null;
end
$$;

create trigger api_keys_created_notify after insert on public.api_keys
  for each row execute function private.notify_api_key();
create trigger api_keys_revoked_notify after update of revoked_at on public.api_keys
  for each row when (old.revoked_at is null and new.revoked_at is not null)
  execute function private.notify_api_key();

-- -- password.changed --------------------------------------------------------------------------------------------------

create or replace function private.notify_password_changed() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.notify_event('password.changed', new.id, null,
    'password.changed:' || new.id || ':' || extract(epoch from clock_timestamp())::text, '{}');
  return null;
end
$$;

create trigger users_password_changed_notify after update of encrypted_password on auth.users
  for each row when (old.encrypted_password is distinct from new.encrypted_password
                     and old.encrypted_password is not null and old.encrypted_password <> ''
                     -- a sign-in that re-hashes the same password (bcrypt -> argon2) stamps last_sign_in_at
                     and new.last_sign_in_at is not distinct from old.last_sign_in_at)
  execute function private.notify_password_changed();

-- -- team.invitation.created ---------------------------------------------------------------------------------------------

create or replace function private.notify_team_invitation() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.notify_event('team.invitation.created', null, new.team_id, 'team.invitation.created:' || new.id,
    jsonb_build_object('invitation_id', new.id, 'role', new.role, 'expires_at', new.expires_at,
                       'created_by', new.created_by,
                       'team_name', (select name from public.teams where id = new.team_id)));
  return null;
end
$$;

create trigger team_invitations_created_notify after insert on public.team_invitations
  for each row execute function private.notify_team_invitation();

-- -- grants -------------------------------------------------------------------------------------------------------------

revoke execute on function private.notify_enqueue(uuid), private.notify_event(text, uuid, uuid, text, jsonb),
  private.notify_low_balance(), private.notify_user_grant(), private.notify_team_grant(),
  private.notify_cap(text, text, uuid, uuid, bigint, bigint, jsonb, text),
  private.notify_cap_settled(text, text, uuid, uuid, bigint, timestamptz, bigint, text, uuid, jsonb),
  private.notify_caps_on_settle(), private.notify_cap_changed(), private.notify_api_key(), private.notify_password_changed(),
  private.notify_team_invitation(), public.notify_key_failing(text, uuid, integer)
  from public, anon, authenticated;
grant execute on function public.notify_key_failing(text, uuid, integer) to service_role;

-- Teams (issue 12): members with roles, single-use invitations, a team wallet and ledger, per-member monthly caps,
-- team BYOK keys and team default routing. One model with users' credits: a reservation row (credit_reservations)
-- names the wallet it holds (team_id null = the user's own), and credits_reserve_flex / credits_settle /
-- credits_refund stay the only writers of both kinds of wallet.
--
-- * Who may do what is decided here, not in the app: every management action is a SECURITY DEFINER function run
--   as the signed-in user (authenticated), checking public.team_role(team) for auth.uid(); reads go through RLS.
-- * A team always has exactly one owner: a partial unique index (at most one) and a deferred constraint trigger
--   (at least one, at commit) on team_members.
-- * Invitation tokens and key ciphertext are never selectable by authenticated (column grants).
-- * Errors: SQLSTATE P0411 forbidden, P0412 not found, P0413 owner rule, P0414 invitation not valid,
--   P0416 already a member, P0417 not a member (reservation), P0418 member monthly cap reached.

create table public.teams (
  id uuid primary key default gen_random_uuid(),
  name text not null check (char_length(name) between 1 and 100),
  slug text not null unique check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$'),
  routing jsonb not null default '{}'::jsonb check (jsonb_typeof(routing) = 'object'),
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now()
);
alter table public.teams enable row level security;

create table public.team_members (
  team_id uuid not null references public.teams (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role text not null default 'member' check (role in ('owner', 'admin', 'member')),
  monthly_credit_cap bigint check (monthly_credit_cap >= 0),
  joined_at timestamptz not null default now(),
  primary key (team_id, user_id)
);
alter table public.team_members enable row level security;
create index team_members_user_idx on public.team_members (user_id);
create unique index team_members_one_owner on public.team_members (team_id) where role = 'owner';

create table public.team_invitations (
  id uuid primary key default gen_random_uuid(),
  team_id uuid not null references public.teams (id) on delete cascade,
  hash text not null unique check (hash ~ '^[0-9a-f]{64}$'),
  role text not null default 'member' check (role in ('admin', 'member')),
  created_by uuid references auth.users (id) on delete set null,
  expires_at timestamptz not null,
  used_at timestamptz,
  used_by uuid references auth.users (id) on delete set null,
  revoked_at timestamptz,
  created_at timestamptz not null default now()
);
alter table public.team_invitations enable row level security;
create index team_invitations_team_idx on public.team_invitations (team_id, created_at desc);

create table public.team_credit_accounts (
  team_id uuid primary key references public.teams (id) on delete cascade,
  balance bigint not null default 0 check (balance >= 0),
  updated_at timestamptz not null default now()
);
alter table public.team_credit_accounts enable row level security;

create table public.team_credit_ledger (
  id bigint generated always as identity primary key,
  team_id uuid not null references public.teams (id) on delete cascade,
  user_id uuid references auth.users (id) on delete set null,  -- the member a reserve/settle/refund was for
  kind text not null check (kind in ('grant', 'deduct', 'reserve', 'settle', 'refund', 'shortfall')),
  delta bigint not null,
  balance_after bigint not null check (balance_after >= 0),
  request_id uuid,
  reason text not null default '' check (length(reason) <= 500),
  uncollected bigint check (uncollected >= 0),
  actor_id uuid,
  created_at timestamptz not null default now()
);
alter table public.team_credit_ledger enable row level security;
create index team_credit_ledger_team_idx on public.team_credit_ledger (team_id, id desc);

create table public.team_provider_keys (
  id uuid primary key default gen_random_uuid(),
  team_id uuid not null references public.teams (id) on delete cascade,
  provider_id uuid not null references public.llm_providers (id) on delete cascade,
  ciphertext text not null,
  key_id text not null,
  last4 text not null check (length(last4) <= 4),
  base_url text check (base_url is null or base_url ~ '^https?://'),
  enabled boolean not null default true,
  priority integer not null default 100,
  added_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  unique (team_id, provider_id)
);
alter table public.team_provider_keys enable row level security;

-- Who is billed: the reservation and the receipt carry the team; a key may be bound to a team; a user may have a
-- default team.
alter table public.credit_reservations add column team_id uuid references public.teams (id) on delete set null;
create index credit_reservations_team_idx on public.credit_reservations (team_id, user_id, created_at)
  where team_id is not null;
alter table public.llm_request_logs add column team_id uuid references public.teams (id) on delete set null;
create index llm_request_logs_team_idx on public.llm_request_logs (team_id, created_at) where team_id is not null;
alter table public.api_keys add column team_id uuid references public.teams (id) on delete set null;
grant select (team_id) on public.api_keys to authenticated;
alter table public.user_preferences add column default_team_id uuid references public.teams (id) on delete set null;

-- -- grants -------------------------------------------------------------------------------------------------------
revoke all on public.teams, public.team_members, public.team_invitations, public.team_credit_accounts,
  public.team_credit_ledger, public.team_provider_keys from anon, authenticated, service_role;
grant select on public.teams, public.team_members, public.team_credit_accounts, public.team_credit_ledger
  to authenticated;
grant select (id, team_id, role, created_by, expires_at, used_at, used_by, revoked_at, created_at)
  on public.team_invitations to authenticated;
grant select (id, team_id, provider_id, key_id, last4, base_url, enabled, priority, added_by, created_at)
  on public.team_provider_keys to authenticated;
grant select, insert, update, delete on public.teams, public.team_members, public.team_invitations,
  public.team_provider_keys to service_role;
grant select, insert, update on public.team_credit_accounts to service_role;
grant select, insert on public.team_credit_ledger to service_role;

-- The caller's role in a team (null: not a member). Security definer so policies on team_members can use it.
create or replace function public.team_role(p_team uuid) returns text
language sql
stable
security definer
set search_path = ''
as $$
  select role from public.team_members where team_id = p_team and user_id = (select auth.uid())
$$;
revoke execute on function public.team_role(uuid) from public, anon;
grant execute on function public.team_role(uuid) to authenticated, service_role;

create policy teams_select on public.teams for select to authenticated
  using ((select public.team_role(id)) is not null or (select public.is_admin()));
create policy team_members_select on public.team_members for select to authenticated
  using ((select public.team_role(team_id)) is not null or (select public.is_admin()));
create policy team_invitations_select on public.team_invitations for select to authenticated
  using ((select public.team_role(team_id)) in ('owner', 'admin') or (select public.is_admin()));
create policy team_credit_accounts_select on public.team_credit_accounts for select to authenticated
  using ((select public.team_role(team_id)) is not null or (select public.is_admin()));
-- Members see grants and their own requests' rows; owners and admins see every member's.
create policy team_credit_ledger_select on public.team_credit_ledger for select to authenticated
  using ((select public.team_role(team_id)) in ('owner', 'admin') or (select public.is_admin())
         or ((select public.team_role(team_id)) is not null
             and (user_id is null or user_id = (select auth.uid()))));
create policy team_provider_keys_select on public.team_provider_keys for select to authenticated
  using ((select public.team_role(team_id)) is not null or (select public.is_admin()));
-- Owners and admins read the team's per-member usage (members read their own through the existing policies).
create policy credit_reservations_team_select on public.credit_reservations for select to authenticated
  using (team_id is not null and (select public.team_role(team_id)) in ('owner', 'admin'));
create policy llm_request_logs_team_select on public.llm_request_logs for select to authenticated
  using (team_id is not null and (select public.team_role(team_id)) in ('owner', 'admin'));

-- Exactly one owner: at most one by the partial unique index, at least one checked at commit.
create or replace function public.team_members_owner_check() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_team uuid := coalesce(new.team_id, old.team_id);
begin
  if exists (select 1 from public.teams where id = v_team)
     and not exists (select 1 from public.team_members where team_id = v_team and role = 'owner') then
    raise exception 'a team must keep exactly one owner' using errcode = 'P0413';
  end if;
  return null;
end
$$;
create constraint trigger team_members_owner_check after insert or update or delete on public.team_members
  deferrable initially deferred for each row execute function public.team_members_owner_check();

-- -- management (as the signed-in user) ---------------------------------------------------------------------------
create or replace function public.team_require(p_team uuid, p_roles text[]) returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_role text;
begin
  if (select auth.uid()) is null or (select auth.jwt()) ->> 'api_key_id' is not null then
    raise exception 'team_forbidden' using errcode = 'P0411';
  end if;
  v_role := public.team_role(p_team);
  if v_role is null then
    raise exception 'team_not_found' using errcode = 'P0412';
  end if;
  if not v_role = any (p_roles) then
    raise exception 'team_forbidden' using errcode = 'P0411';
  end if;
  return v_role;
end
$$;

create or replace function public.team_create(p_name text, p_slug text) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_uid uuid := (select auth.uid());
begin
  if v_uid is null or (select auth.jwt()) ->> 'api_key_id' is not null then
    raise exception 'team_forbidden' using errcode = 'P0411';
  end if;
  insert into public.teams (name, slug, created_by) values (p_name, p_slug, v_uid) returning id into v_id;
  insert into public.team_members (team_id, user_id, role) values (v_id, v_uid, 'owner');
  insert into public.team_credit_accounts (team_id) values (v_id);
  return v_id;
end
$$;

create or replace function public.team_invite(p_team uuid, p_hash text, p_role text, p_expires timestamptz)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  perform public.team_require(p_team, array['owner', 'admin']);
  insert into public.team_invitations (team_id, hash, role, created_by, expires_at)
    values (p_team, p_hash, p_role, (select auth.uid()), p_expires) returning id into v_id;
  return v_id;
end
$$;

create or replace function public.team_revoke_invitation(p_team uuid, p_invitation uuid) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform public.team_require(p_team, array['owner', 'admin']);
  update public.team_invitations set revoked_at = now()
    where id = p_invitation and team_id = p_team and revoked_at is null and used_at is null;
  if not found then
    raise exception 'invitation_not_found' using errcode = 'P0412';
  end if;
end
$$;

-- Accept an invitation by its token's keyed hash: single use (the row is locked and marked used).
create or replace function public.team_join(p_hash text) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_inv public.team_invitations;
  v_uid uuid := (select auth.uid());
begin
  if v_uid is null or (select auth.jwt()) ->> 'api_key_id' is not null then
    raise exception 'team_forbidden' using errcode = 'P0411';
  end if;
  select * into v_inv from public.team_invitations where hash = p_hash for update;
  if not found or v_inv.used_at is not null or v_inv.revoked_at is not null or v_inv.expires_at <= now() then
    raise exception 'invitation_invalid' using errcode = 'P0414';
  end if;
  if exists (select 1 from public.team_members where team_id = v_inv.team_id and user_id = v_uid) then
    raise exception 'already_a_member' using errcode = 'P0416';
  end if;
  insert into public.team_members (team_id, user_id, role) values (v_inv.team_id, v_uid, v_inv.role);
  update public.team_invitations set used_at = now(), used_by = v_uid where id = v_inv.id;
  return v_inv.team_id;
end
$$;

-- Owners set anyone's role but their own (transfer hands ownership over); admins change members and admins only.
create or replace function public.team_set_role(p_team uuid, p_user uuid, p_role text) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_mine text;
  v_theirs text;
begin
  v_mine := public.team_require(p_team, array['owner', 'admin']);
  if p_role not in ('admin', 'member') then
    raise exception 'team_owner_rule' using errcode = 'P0413';
  end if;
  select role into v_theirs from public.team_members where team_id = p_team and user_id = p_user for update;
  if not found then
    raise exception 'member_not_found' using errcode = 'P0412';
  end if;
  if v_theirs = 'owner' then
    raise exception 'team_owner_rule' using errcode = 'P0413';
  end if;
  update public.team_members set role = p_role where team_id = p_team and user_id = p_user;
end
$$;

-- Remove a member (owners: anyone but themselves; admins: members only), or leave (p_user = the caller; the
-- owner must transfer first).
create or replace function public.team_remove(p_team uuid, p_user uuid) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_mine text;
  v_theirs text;
begin
  v_mine := public.team_require(p_team, array['owner', 'admin', 'member']);
  select role into v_theirs from public.team_members where team_id = p_team and user_id = p_user for update;
  if not found then
    raise exception 'member_not_found' using errcode = 'P0412';
  end if;
  if v_theirs = 'owner' then
    raise exception 'team_owner_rule' using errcode = 'P0413';
  end if;
  if p_user <> (select auth.uid()) and not (v_mine = 'owner' or (v_mine = 'admin' and v_theirs = 'member')) then
    raise exception 'team_forbidden' using errcode = 'P0411';
  end if;
  delete from public.team_members where team_id = p_team and user_id = p_user;
end
$$;

create or replace function public.team_transfer(p_team uuid, p_user uuid) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform public.team_require(p_team, array['owner']);
  if p_user = (select auth.uid()) then
    raise exception 'team_owner_rule' using errcode = 'P0413';
  end if;
  if not exists (select 1 from public.team_members where team_id = p_team and user_id = p_user) then
    raise exception 'member_not_found' using errcode = 'P0412';
  end if;
  update public.team_members set role = 'admin' where team_id = p_team and user_id = (select auth.uid());
  update public.team_members set role = 'owner' where team_id = p_team and user_id = p_user;
end
$$;

-- A member's monthly cap (null: none). Owners and admins only: nobody raises their own cap as a member.
create or replace function public.team_set_cap(p_team uuid, p_user uuid, p_cap bigint) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform public.team_require(p_team, array['owner', 'admin']);
  update public.team_members set monthly_credit_cap = p_cap where team_id = p_team and user_id = p_user;
  if not found then
    raise exception 'member_not_found' using errcode = 'P0412';
  end if;
end
$$;

create or replace function public.team_update(p_team uuid, p_name text, p_routing jsonb) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform public.team_require(p_team, array['owner', 'admin']);
  update public.teams set name = coalesce(p_name, name), routing = coalesce(p_routing, routing) where id = p_team;
end
$$;

create or replace function public.team_put_key(p_team uuid, p_provider uuid, p_ciphertext text, p_key_id text,
                                               p_last4 text, p_base_url text) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  perform public.team_require(p_team, array['owner', 'admin']);
  insert into public.team_provider_keys (team_id, provider_id, ciphertext, key_id, last4, base_url, added_by)
    values (p_team, p_provider, p_ciphertext, p_key_id, p_last4, p_base_url, (select auth.uid()))
    on conflict (team_id, provider_id) do update
      set ciphertext = excluded.ciphertext, key_id = excluded.key_id, last4 = excluded.last4,
          base_url = excluded.base_url, added_by = excluded.added_by, enabled = true, created_at = now()
    returning id into v_id;
  return v_id;
end
$$;

create or replace function public.team_delete_key(p_team uuid, p_provider uuid) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform public.team_require(p_team, array['owner', 'admin']);
  delete from public.team_provider_keys where team_id = p_team and provider_id = p_provider;
  if not found then
    raise exception 'key_not_found' using errcode = 'P0412';
  end if;
end
$$;

-- The caller's default team (null: personal). Only a team they belong to.
create or replace function public.team_set_default(p_team uuid) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_team is not null then
    perform public.team_require(p_team, array['owner', 'admin', 'member']);
  end if;
  insert into public.user_preferences (user_id, default_team_id) values ((select auth.uid()), p_team)
    on conflict (user_id) do update set default_team_id = excluded.default_team_id;
end
$$;

-- Bind one of the caller's personal API keys to a team they belong to (null: unbind).
create or replace function public.team_bind_api_key(p_key uuid, p_team uuid) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_team is not null then
    perform public.team_require(p_team, array['owner', 'admin', 'member']);
  elsif (select auth.uid()) is null or (select auth.jwt()) ->> 'api_key_id' is not null then
    raise exception 'team_forbidden' using errcode = 'P0411';
  end if;
  update public.api_keys set team_id = p_team where id = p_key and user_id = (select auth.uid());
  if not found then
    raise exception 'api_key_not_found' using errcode = 'P0412';
  end if;
end
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.team_create(text, text)',
    'public.team_invite(uuid, text, text, timestamptz)', 'public.team_revoke_invitation(uuid, uuid)',
    'public.team_join(text)', 'public.team_set_role(uuid, uuid, text)', 'public.team_remove(uuid, uuid)',
    'public.team_transfer(uuid, uuid)', 'public.team_set_cap(uuid, uuid, bigint)',
    'public.team_update(uuid, text, jsonb)', 'public.team_put_key(uuid, uuid, text, text, text, text)',
    'public.team_delete_key(uuid, uuid)', 'public.team_set_default(uuid)', 'public.team_bind_api_key(uuid, uuid)']
  loop
    execute format('revoke execute on function %s from public, anon', f);
    execute format('grant execute on function %s to authenticated, service_role', f);
  end loop;
end
$$;
revoke execute on function public.team_members_owner_check() from public, anon, authenticated;
-- Called only inside the functions above (which run as their owner).
revoke execute on function public.team_require(uuid, text[]) from public, anon, authenticated;

-- -- the team wallet ------------------------------------------------------------------------------------------------
create or replace function public.team_credits_lock(p_team uuid) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
begin
  insert into public.team_credit_accounts (team_id) values (p_team) on conflict (team_id) do nothing;
  select balance into v_balance from public.team_credit_accounts where team_id = p_team for update;
  return v_balance;
end
$$;

-- Grant (positive) or deduct (negative) a team's credits; never below zero. Site admins, through the app.
create or replace function public.team_credits_adjust(p_team uuid, p_delta bigint, p_reason text,
                                                      p_actor uuid default null) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
begin
  if p_delta = 0 then
    raise exception 'amount must not be zero' using errcode = '22023';
  end if;
  if not exists (select 1 from public.teams where id = p_team) then
    raise exception 'team_not_found' using errcode = 'P0412';
  end if;
  v_balance := public.team_credits_lock(p_team);
  if v_balance + p_delta < 0 then
    raise exception 'insufficient credits' using errcode = 'P0402';
  end if;
  update public.team_credit_accounts set balance = balance + p_delta, updated_at = now()
    where team_id = p_team returning balance into v_balance;
  insert into public.team_credit_ledger (team_id, kind, delta, balance_after, reason, actor_id)
    values (p_team, case when p_delta > 0 then 'grant' else 'deduct' end, p_delta, v_balance,
            coalesce(p_reason, ''), p_actor);
  return v_balance;
end
$$;

-- The one reservation function, now for either wallet. With p_team: the team's wallet is locked, the caller must
-- still be a member (read under that lock), and the member's monthly cap (this month's team reservations of that
-- member, not refunded) bounds it; the user's personal cap counts personal reservations only.
drop function public.credits_reserve_flex(uuid, uuid, bigint, bigint, bigint, uuid, bigint);
create function public.credits_reserve_flex(
  p_user uuid, p_request uuid, p_min bigint, p_max bigint, p_monthly_cap bigint default null,
  p_api_key uuid default null, p_key_cap bigint default null, p_team uuid default null
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
    select coalesce(sum(coalesce(charged, amount)), 0) into v_spent
      from public.credit_reservations
      where user_id = p_user and team_id is null and status <> 'refunded'
        and created_at >= date_trunc('month', now());
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
    select coalesce(sum(coalesce(charged, amount)), 0) into v_spent
      from public.credit_reservations
      where team_id = p_team and user_id = p_user and status <> 'refunded'
        and created_at >= date_trunc('month', now());
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

-- Settle and refund close the reservation against the wallet it holds.
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
  if v_res.team_id is null then
    v_balance := public.credits_lock_account(v_res.user_id);
  else
    v_balance := public.team_credits_lock(v_res.team_id);
  end if;
  select * into v_res from public.credit_reservations where request_id = p_request for update;
  if v_res.status <> 'reserved' then
    return coalesce(v_res.charged, 0);
  end if;
  v_charge := least(p_actual, v_res.amount + v_balance);
  update public.credit_reservations
    set status = 'settled', charged = v_charge, closed_at = now(), shortfall = p_actual - v_charge
    where request_id = p_request;
  if v_res.team_id is null then
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
  else
    if v_charge <> v_res.amount then
      update public.team_credit_accounts set balance = balance + (v_res.amount - v_charge), updated_at = now()
        where team_id = v_res.team_id returning balance into v_balance;
      insert into public.team_credit_ledger (team_id, user_id, kind, delta, balance_after, request_id)
        values (v_res.team_id, v_res.user_id, 'settle', v_res.amount - v_charge, v_balance, p_request);
    end if;
    if p_actual > v_charge then
      insert into public.team_credit_ledger (team_id, user_id, kind, delta, balance_after, request_id, uncollected,
                                             reason)
        values (v_res.team_id, v_res.user_id, 'shortfall', 0, v_balance, p_request, p_actual - v_charge,
                'usage above the reservation and the balance');
    end if;
  end if;
  return v_charge;
end
$$;

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
  if v_res.team_id is null then
    v_balance := public.credits_lock_account(v_res.user_id);
  else
    v_balance := public.team_credits_lock(v_res.team_id);
  end if;
  select * into v_res from public.credit_reservations where request_id = p_request for update;
  if v_res.status <> 'reserved' then
    return 0;
  end if;
  update public.credit_reservations set status = 'refunded', charged = 0, closed_at = now()
    where request_id = p_request;
  if v_res.team_id is null then
    update public.credit_accounts set balance = balance + v_res.amount, updated_at = now()
      where user_id = v_res.user_id returning balance into v_balance;
    insert into public.credit_ledger (user_id, kind, delta, balance_after, request_id)
      values (v_res.user_id, 'refund', v_res.amount, v_balance, p_request);
  else
    update public.team_credit_accounts set balance = balance + v_res.amount, updated_at = now()
      where team_id = v_res.team_id returning balance into v_balance;
    insert into public.team_credit_ledger (team_id, user_id, kind, delta, balance_after, request_id)
      values (v_res.team_id, v_res.user_id, 'refund', v_res.amount, v_balance, p_request);
  end if;
  return v_res.amount;
end
$$;

-- The receipt row carries the team.
create or replace function public.request_log_insert(p_log jsonb, p_credits bigint, p_shortfall bigint)
returns void
language sql
set search_path = ''
as $$
  insert into public.llm_request_logs (request_id, user_id, mode, status, provider, model, task, key_source,
      admin_key_id, tokens_in, tokens_out, usage_source, credits, multiplier, fallback_path, stream, error_code,
      latency_ms, output_limit, shortfall, api_key_id, team_id)
  select r.request_id, r.user_id, r.mode, r.status, r.provider, r.model, r.task, r.key_source, r.admin_key_id,
         r.tokens_in, r.tokens_out, r.usage_source, p_credits, r.multiplier, coalesce(r.fallback_path, '{}'),
         r.stream, r.error_code, r.latency_ms, r.output_limit, p_shortfall, r.api_key_id, r.team_id
  from jsonb_populate_record(null::public.llm_request_logs, p_log) r
  on conflict (request_id) do nothing
$$;

revoke execute on function public.team_credits_lock(uuid) from public, anon, authenticated;
revoke execute on function public.team_credits_adjust(uuid, bigint, text, uuid) from public, anon, authenticated;
revoke execute on function public.credits_reserve_flex(uuid, uuid, bigint, bigint, bigint, uuid, bigint, uuid)
  from public, anon, authenticated;
grant execute on function public.team_credits_lock(uuid) to service_role;
grant execute on function public.team_credits_adjust(uuid, bigint, text, uuid) to service_role;
grant execute on function public.credits_reserve_flex(uuid, uuid, bigint, bigint, bigint, uuid, bigint, uuid)
  to service_role;

-- Site settings for credits (issue 11): what a new account is granted at sign-up, what one credit is worth for
-- display ("1 credit = $1.00"), and the balance under which a user is warned. One row (id = true).
--  * Money is micro-credits (signup_grant, low_balance_threshold); a credit's display value is millionths of the
--    currency unit (1,000,000 = 1.00), so no float is ever stored.
--  * authenticated reads only the display columns (the user's page needs them); the sign-up grant, who changed
--    the row and when are the admins', read and written by the app as service_role after the database has
--    confirmed the caller is an admin (webapp/services/site_settings.py). anon reads nothing.
--  * The sign-up grant is applied by the auth.users insert trigger, through credits_adjust (a 'grant' ledger row,
--    reason 'sign-up grant'), in the transaction that creates the user: local sign-up, /auth/v1/signup and
--    Supabase's GoTrue alike. A change applies to the next sign-up.

create table public.site_settings (
  id boolean primary key default true check (id),
  signup_grant bigint not null default 0 check (signup_grant between 0 and 1000000000000000),
  currency_code text not null default 'USD' check (currency_code ~ '^[A-Z]{3}$'),
  currency_symbol text not null default '$' check (length(currency_symbol) <= 4 and currency_symbol !~ '[[:space:][:cntrl:]]'),
  credit_value bigint not null default 1000000 check (credit_value between 0 and 1000000000000),
  low_balance_threshold bigint not null default 1000000
    check (low_balance_threshold between 0 and 1000000000000000),
  updated_at timestamptz not null default now(),
  updated_by uuid references auth.users (id) on delete set null
);
alter table public.site_settings enable row level security;
insert into public.site_settings (id) values (true);

revoke all on public.site_settings from anon, authenticated, service_role;
grant select (id, currency_code, currency_symbol, credit_value, low_balance_threshold)
  on public.site_settings to authenticated;
grant select, update on public.site_settings to service_role;

create policy site_settings_select on public.site_settings
  for select to authenticated using (true);

-- The new-user trigger, now also granting the sign-up credits (when the setting is above zero).
create or replace function private.handle_new_user() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_grant bigint;
begin
  insert into public.user_preferences (user_id) values (new.id) on conflict (user_id) do nothing;
  insert into public.credit_accounts (user_id) values (new.id) on conflict (user_id) do nothing;
  select signup_grant into v_grant from public.site_settings where id;
  if coalesce(v_grant, 0) > 0 then
    perform public.credits_adjust(new.id, v_grant, 'sign-up grant', null);
  end if;
  return new;
end
$$;
revoke execute on function private.handle_new_user() from public;

-- The user's ledger is paged by id (keyset), newest first.
create index credit_ledger_user_id_idx on public.credit_ledger (user_id, id desc);

-- Each user's profile and LLM serving preferences. Owner only.

create table public.user_preferences (
  user_id uuid primary key references auth.users (id) on delete cascade,
  username text unique check (username ~ '^[A-Za-z0-9_.-]{3,32}$'),
  first_name text not null default '' check (length(first_name) <= 80),
  last_name text not null default '' check (length(last_name) <= 80),
  email_notifications boolean not null default true,
  marketing_emails boolean not null default false,
  llm_mode text not null default 'member' check (llm_mode in ('member', 'byok')),
  default_provider text,
  fallbacks_enabled boolean not null default true,
  never_spend_credits boolean not null default false,
  provider_priorities text[] not null default '{}',
  task_overrides jsonb not null default '{}'::jsonb check (jsonb_typeof(task_overrides) = 'object'),
  monthly_credit_cap bigint check (monthly_credit_cap is null or monthly_credit_cap >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
alter table public.user_preferences enable row level security;
create trigger user_preferences_touch before update on public.user_preferences
  for each row execute function public.touch_updated_at();

revoke all on public.user_preferences from anon, authenticated, service_role;
grant select, insert, update on public.user_preferences to authenticated;
grant select, insert, update, delete on public.user_preferences to service_role;

create policy user_preferences_select on public.user_preferences
  for select to authenticated using (user_id = (select auth.uid()));
create policy user_preferences_insert on public.user_preferences
  for insert to authenticated with check (user_id = (select auth.uid()));
create policy user_preferences_update on public.user_preferences
  for update to authenticated using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

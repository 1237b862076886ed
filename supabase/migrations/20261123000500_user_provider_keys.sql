-- The user's stored BYOK keys, encrypted by the app. Owner only; the ciphertext is never selectable by
-- `authenticated`, not even by its owner (the gateway decrypts as service_role).

create table public.user_provider_keys (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  provider_id uuid not null references public.llm_providers (id) on delete cascade,
  ciphertext text not null,
  key_id text not null,
  last4 text not null check (length(last4) <= 4),
  base_url text check (base_url is null or base_url ~ '^https?://'),
  enabled boolean not null default true,
  priority integer not null default 100,
  last_used_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (user_id, provider_id)
);
alter table public.user_provider_keys enable row level security;
create index user_provider_keys_user_idx on public.user_provider_keys (user_id);
create index user_provider_keys_provider_idx on public.user_provider_keys (provider_id);
create trigger user_provider_keys_touch before update on public.user_provider_keys
  for each row execute function public.touch_updated_at();

revoke all on public.user_provider_keys from anon, authenticated, service_role;
grant select (id, user_id, provider_id, key_id, last4, base_url, enabled, priority, last_used_at, created_at,
              updated_at)
  on public.user_provider_keys to authenticated;
grant insert (user_id, provider_id, ciphertext, key_id, last4, base_url, enabled, priority)
  on public.user_provider_keys to authenticated;
grant update (ciphertext, key_id, last4, base_url, enabled, priority) on public.user_provider_keys to authenticated;
grant delete on public.user_provider_keys to authenticated;
grant select, insert, update, delete on public.user_provider_keys to service_role;

create policy user_provider_keys_select on public.user_provider_keys
  for select to authenticated using (user_id = (select auth.uid()));
create policy user_provider_keys_insert on public.user_provider_keys
  for insert to authenticated with check (user_id = (select auth.uid()));
create policy user_provider_keys_update on public.user_provider_keys
  for update to authenticated using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
create policy user_provider_keys_delete on public.user_provider_keys
  for delete to authenticated using (user_id = (select auth.uid()));

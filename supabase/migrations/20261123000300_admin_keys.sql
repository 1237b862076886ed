-- Encrypted admin API keys per provider. Admins manage them; the ciphertext is never selectable by `authenticated`
-- (decryption for forwarding runs as service_role).

create table public.llm_admin_keys (
  id uuid primary key default gen_random_uuid(),
  provider_id uuid not null references public.llm_providers (id) on delete cascade,
  ciphertext text not null,
  key_id text not null,
  last4 text not null check (length(last4) <= 4),
  label text not null default '' check (length(label) <= 80),
  active boolean not null default true,
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  revoked_at timestamptz
);
alter table public.llm_admin_keys enable row level security;
create index llm_admin_keys_provider_idx on public.llm_admin_keys (provider_id);
create index llm_admin_keys_created_by_idx on public.llm_admin_keys (created_by);

revoke all on public.llm_admin_keys from anon, authenticated, service_role;
grant select (id, provider_id, key_id, last4, label, active, created_by, created_at, revoked_at)
  on public.llm_admin_keys to authenticated;
grant insert (provider_id, ciphertext, key_id, last4, label, active, created_by)
  on public.llm_admin_keys to authenticated;
grant update (active, label, revoked_at) on public.llm_admin_keys to authenticated;
grant delete on public.llm_admin_keys to authenticated;
grant select, insert, update, delete on public.llm_admin_keys to service_role;

create policy llm_admin_keys_select on public.llm_admin_keys
  for select to authenticated using ((select public.is_admin()));
create policy llm_admin_keys_insert on public.llm_admin_keys
  for insert to authenticated with check ((select public.is_admin()));
create policy llm_admin_keys_update on public.llm_admin_keys
  for update to authenticated using ((select public.is_admin())) with check ((select public.is_admin()));
create policy llm_admin_keys_delete on public.llm_admin_keys
  for delete to authenticated using ((select public.is_admin()));

-- Providers the admin fully owns (issue 11): create, edit every field, retire; per-model cached-input rate and
-- an enabled flag; notices that tell a user what an admin change did to their routing.
--
-- * llm_providers.extra_headers: name/value pairs sent upstream with every request (an Azure api-version,
--   OpenRouter's HTTP-Referer / X-Title). Not secrets (keys live in llm_admin_keys), but validated by the app.
-- * llm_providers.needs_key: whether member mode needs a key to call it (a keyless company vLLM, Ollama).
-- * llm_providers.archived_at: a retired provider that has history. It stays (the request logs, receipts and
--   analytics name it) but is disabled for good: hidden from users, /v1/models and routing.
-- * llm_model_rates.cached_input_rate (null = the input rate) and enabled (a disabled model is neither offered
--   nor routed; admins still see it).
-- * user_notices: one row per thing a user should be told (the owner reads and dismisses; the app writes).

alter table public.llm_providers
  add column extra_headers jsonb not null default '[]'::jsonb
    check (jsonb_typeof(extra_headers) = 'array' and jsonb_array_length(extra_headers) <= 20),
  add column needs_key boolean not null default true,
  add column archived_at timestamptz,
  add constraint llm_providers_archived_disabled check (archived_at is null or not enabled);

-- The seeded local engines (and any provider on a loopback or private address) serve without a key.
update public.llm_providers set needs_key = false
where base_url ~* '^https?://(localhost|127\.|10\.|192\.168\.|172\.(1[6-9]|2[0-9]|3[01])\.|\[::1\])';

alter table public.llm_model_rates
  add column cached_input_rate bigint check (cached_input_rate is null or cached_input_rate >= 0),
  add column enabled boolean not null default true;

-- Admins create and delete providers through RLS (the policies have always said admin only); users still cannot.
grant insert (slug, name, api_style, base_url, default_model, enabled, credit_multiplier, byok_allowed,
              custom_base_url_allowed, sort_order, free_for_byok, extra_headers, needs_key)
  on public.llm_providers to authenticated;
grant delete on public.llm_providers to authenticated;
grant update (extra_headers, needs_key, archived_at) on public.llm_providers to authenticated;
grant update (cached_input_rate, enabled) on public.llm_model_rates to authenticated;

-- A disabled model's rate is hidden like a disabled provider's (admins still see everything).
drop policy llm_model_rates_select_anon on public.llm_model_rates;
drop policy llm_model_rates_select on public.llm_model_rates;
create policy llm_model_rates_select_anon on public.llm_model_rates
  for select to anon
  using (enabled and exists (select 1 from public.llm_providers p where p.id = provider_id and p.enabled));
create policy llm_model_rates_select on public.llm_model_rates
  for select to authenticated
  using ((select public.is_admin())
         or (enabled and exists (select 1 from public.llm_providers p where p.id = provider_id and p.enabled)));

create table public.user_notices (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  kind text not null check (kind ~ '^[a-z][a-z0-9_.]{0,39}$'),
  message text not null check (length(message) between 1 and 1000),
  created_at timestamptz not null default now(),
  dismissed_at timestamptz
);
alter table public.user_notices enable row level security;
create index user_notices_user_idx on public.user_notices (user_id, created_at desc);

revoke all on public.user_notices from anon, authenticated, service_role;
grant select on public.user_notices to authenticated;
grant update (dismissed_at) on public.user_notices to authenticated;
grant select, insert, update, delete on public.user_notices to service_role;

create policy user_notices_select on public.user_notices
  for select to authenticated using (user_id = (select auth.uid()));
create policy user_notices_update on public.user_notices
  for update to authenticated using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

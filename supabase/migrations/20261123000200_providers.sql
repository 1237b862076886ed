-- Provider presets and per-model rates. Readable by every signed-in user (enabled rows), written by admins.

create table public.llm_providers (
  id uuid primary key default gen_random_uuid(),
  slug text not null unique check (slug ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
  name text not null check (length(name) between 1 and 80),
  api_style text not null check (api_style in ('openai', 'anthropic')),
  base_url text not null check (base_url ~ '^https?://'),
  default_model text not null,
  enabled boolean not null default true,
  credit_multiplier numeric(10, 4) not null default 1.0 check (credit_multiplier > 0),
  byok_allowed boolean not null default true,
  custom_base_url_allowed boolean not null default false,
  sort_order integer not null default 100,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
alter table public.llm_providers enable row level security;
create index llm_providers_enabled_idx on public.llm_providers (enabled);
create trigger llm_providers_touch before update on public.llm_providers
  for each row execute function public.touch_updated_at();

revoke all on public.llm_providers from anon, authenticated, service_role;
grant select on public.llm_providers to anon, authenticated;
grant insert, update, delete on public.llm_providers to authenticated;
grant select, insert, update, delete on public.llm_providers to service_role;

create policy llm_providers_select_anon on public.llm_providers
  for select to anon using (enabled);
create policy llm_providers_select on public.llm_providers
  for select to authenticated using (enabled or (select public.is_admin()));
create policy llm_providers_insert on public.llm_providers
  for insert to authenticated with check ((select public.is_admin()));
create policy llm_providers_update on public.llm_providers
  for update to authenticated using ((select public.is_admin())) with check ((select public.is_admin()));
create policy llm_providers_delete on public.llm_providers
  for delete to authenticated using ((select public.is_admin()));

create table public.llm_model_rates (
  id uuid primary key default gen_random_uuid(),
  provider_id uuid not null references public.llm_providers (id) on delete cascade,
  model text not null check (length(model) between 1 and 200),
  -- micro-credits per 1,000 tokens; 1 credit = 1,000,000 micro-credits
  input_rate bigint not null check (input_rate >= 0),
  output_rate bigint not null check (output_rate >= 0),
  context_window integer not null default 8192 check (context_window > 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (provider_id, model)
);
alter table public.llm_model_rates enable row level security;
create index llm_model_rates_provider_idx on public.llm_model_rates (provider_id);
create trigger llm_model_rates_touch before update on public.llm_model_rates
  for each row execute function public.touch_updated_at();

revoke all on public.llm_model_rates from anon, authenticated, service_role;
grant select on public.llm_model_rates to anon, authenticated;
grant insert, update, delete on public.llm_model_rates to authenticated;
grant select, insert, update, delete on public.llm_model_rates to service_role;

create policy llm_model_rates_select_anon on public.llm_model_rates
  for select to anon using (true);
create policy llm_model_rates_select on public.llm_model_rates
  for select to authenticated using (true);
create policy llm_model_rates_insert on public.llm_model_rates
  for insert to authenticated with check ((select public.is_admin()));
create policy llm_model_rates_update on public.llm_model_rates
  for update to authenticated using ((select public.is_admin())) with check ((select public.is_admin()));
create policy llm_model_rates_delete on public.llm_model_rates
  for delete to authenticated using ((select public.is_admin()));

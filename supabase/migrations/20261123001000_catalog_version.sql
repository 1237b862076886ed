-- A counter bumped whenever providers, rates or admin keys change, so every app worker notices an admin change on
-- its next request (read in the same query that loads the user's context: no extra round trip) and reloads its
-- cached catalog. Cache invalidation, not a restart.

create table public.catalog_version (
  id boolean primary key default true check (id),
  version bigint not null default 1
);
alter table public.catalog_version enable row level security;
insert into public.catalog_version (id, version) values (true, 1);

revoke all on public.catalog_version from anon, authenticated, service_role;
grant select on public.catalog_version to service_role;

create or replace function private.bump_catalog_version() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.catalog_version set version = version + 1 where id;
  return null;
end
$$;
revoke execute on function private.bump_catalog_version() from public;

create trigger llm_providers_bump after insert or update or delete on public.llm_providers
  for each statement execute function private.bump_catalog_version();
create trigger llm_model_rates_bump after insert or update or delete on public.llm_model_rates
  for each statement execute function private.bump_catalog_version();
create trigger llm_admin_keys_bump after insert or update or delete on public.llm_admin_keys
  for each statement execute function private.bump_catalog_version();

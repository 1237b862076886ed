-- catalog_version moves only when a catalog row really changes.
--
-- The first triggers were `for each statement`, and statement triggers fire even when a statement touches no row:
-- any signed-in user could run `update llm_providers set name = name` (RLS filters every row out, the statement
-- still "happens") and make every worker reload its catalog on its next request. Now one trigger per event and
-- table reads the statement's transition tables: an insert or delete bumps when it affected a row, an update
-- only when some row differs from what it was (updated_at, which the touch trigger always moves, is ignored).

create or replace function private.bump_catalog_version_on_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' then
    if not exists (select to_jsonb(n) - 'updated_at' from new_rows n
                   except all
                   select to_jsonb(o) - 'updated_at' from old_rows o) then
      return null;
    end if;
  elsif tg_op = 'INSERT' then
    if not exists (select 1 from new_rows) then
      return null;
    end if;
  elsif not exists (select 1 from old_rows) then
    return null;
  end if;
  update public.catalog_version set version = version + 1 where id;
  return null;
end
$$;
revoke execute on function private.bump_catalog_version_on_change() from public, anon, authenticated;

drop trigger llm_providers_bump on public.llm_providers;
drop trigger llm_model_rates_bump on public.llm_model_rates;
drop trigger llm_admin_keys_bump on public.llm_admin_keys;

-- Transition tables allow one event per trigger, hence three per table.
create trigger llm_providers_bump_insert after insert on public.llm_providers
  referencing new table as new_rows
  for each statement execute function private.bump_catalog_version_on_change();
create trigger llm_providers_bump_update after update on public.llm_providers
  referencing old table as old_rows new table as new_rows
  for each statement execute function private.bump_catalog_version_on_change();
create trigger llm_providers_bump_delete after delete on public.llm_providers
  referencing old table as old_rows
  for each statement execute function private.bump_catalog_version_on_change();

create trigger llm_model_rates_bump_insert after insert on public.llm_model_rates
  referencing new table as new_rows
  for each statement execute function private.bump_catalog_version_on_change();
create trigger llm_model_rates_bump_update after update on public.llm_model_rates
  referencing old table as old_rows new table as new_rows
  for each statement execute function private.bump_catalog_version_on_change();
create trigger llm_model_rates_bump_delete after delete on public.llm_model_rates
  referencing old table as old_rows
  for each statement execute function private.bump_catalog_version_on_change();

create trigger llm_admin_keys_bump_insert after insert on public.llm_admin_keys
  referencing new table as new_rows
  for each statement execute function private.bump_catalog_version_on_change();
create trigger llm_admin_keys_bump_update after update on public.llm_admin_keys
  referencing old table as old_rows new table as new_rows
  for each statement execute function private.bump_catalog_version_on_change();
create trigger llm_admin_keys_bump_delete after delete on public.llm_admin_keys
  referencing old table as old_rows
  for each statement execute function private.bump_catalog_version_on_change();

-- Truncate bypasses row triggers; only the service role could run it, but a reload must follow it too.
create trigger llm_providers_bump_truncate after truncate on public.llm_providers
  for each statement execute function private.bump_catalog_version();
create trigger llm_model_rates_bump_truncate after truncate on public.llm_model_rates
  for each statement execute function private.bump_catalog_version();
create trigger llm_admin_keys_bump_truncate after truncate on public.llm_admin_keys
  for each statement execute function private.bump_catalog_version();

-- Give every new auth user a preferences row and a credit account (Supabase's handle_new_user pattern).

create schema if not exists private;
revoke all on schema private from public;

create or replace function private.handle_new_user() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.user_preferences (user_id) values (new.id) on conflict (user_id) do nothing;
  insert into public.credit_accounts (user_id) values (new.id) on conflict (user_id) do nothing;
  return new;
end
$$;
revoke execute on function private.handle_new_user() from public;

create trigger on_auth_user_created after insert on auth.users
  for each row execute function private.handle_new_user();

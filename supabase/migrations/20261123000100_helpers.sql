-- Shared helpers: public.is_admin() for policies, and a trigger function keeping updated_at current.

create or replace function public.is_admin() returns boolean
language sql stable
set search_path = ''
as $$
  -- app_metadata is set by the service role only; user_metadata is user-editable and never trusted here.
  select coalesce((select auth.jwt()) -> 'app_metadata' ->> 'role', '') = 'admin'
$$;
revoke execute on function public.is_admin() from public;
grant execute on function public.is_admin() to anon, authenticated, service_role;

create or replace function public.touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;
revoke execute on function public.touch_updated_at() from public;

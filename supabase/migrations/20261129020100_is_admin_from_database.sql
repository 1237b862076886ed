-- public.is_admin() reads the caller's current row in auth.users instead of the token's app_metadata, so a
-- demoted, banned or deleted admin loses admin rights in every policy on the next statement, not when an
-- hour-old token expires. security definer: the API roles cannot read auth.users; the owner can.

create or replace function public.is_admin() returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((
    select coalesce(u.raw_app_meta_data ->> 'role', '') = 'admin'
           and u.deleted_at is null and (u.banned_until is null or u.banned_until <= now())
    from auth.users u
    where u.id = (select auth.uid())
  ), false)
$$;
revoke execute on function public.is_admin() from public;
grant execute on function public.is_admin() to anon, authenticated, service_role;

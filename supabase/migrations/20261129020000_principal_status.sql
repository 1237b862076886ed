-- The principal check every request makes inside its existing round trip: the user still exists, is not
-- soft-deleted or banned, and the token's session (GoTrue's auth.sessions, where that table exists) has not been
-- ended by sign-out. Also says whether the user is an admin now, from auth.users, not from the token.
-- security definer: the API roles cannot read auth.users or auth.sessions; the owner (the migration role) can.

create or replace function public.principal_status(p_user uuid, p_session uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_deleted timestamptz;
  v_banned timestamptz;
  v_admin boolean;
begin
  -- A signed-in caller may ask only about itself (PostgREST exposes public functions as RPC on Supabase).
  if (select auth.role()) is distinct from 'service_role' and p_user is distinct from (select auth.uid()) then
    return jsonb_build_object('ok', false, 'reason', 'user_not_found');
  end if;
  select u.deleted_at, u.banned_until, coalesce(u.raw_app_meta_data ->> 'role', '') = 'admin'
    into v_deleted, v_banned, v_admin
    from auth.users u where u.id = p_user;
  if not found or v_deleted is not null then
    return jsonb_build_object('ok', false, 'reason', 'user_not_found');
  end if;
  if v_banned is not null and v_banned > now() then
    return jsonb_build_object('ok', false, 'reason', 'user_banned');
  end if;
  -- Tokens GoTrue and the local backend issue always carry session_id; one without it was minted by an
  -- operator with the JWT secret and has no session to end.
  if p_session is not null and to_regclass('auth.sessions') is not null then
    if not exists (select 1 from auth.sessions s
                   where s.id = p_session and s.user_id = p_user and (s.not_after is null or s.not_after > now()))
    then
      return jsonb_build_object('ok', false, 'reason', 'session_revoked');
    end if;
  end if;
  return jsonb_build_object('ok', true, 'admin', v_admin);
end
$$;
revoke execute on function public.principal_status(uuid, uuid) from public, anon;
grant execute on function public.principal_status(uuid, uuid) to authenticated, service_role;

-- "Spent this month" on the pages from the cap tally instead of a sum of the month's reservations.
--
-- The settings page's Credits section (and /api/user/credits) and the team roster showed this month's spending by
-- summing credit_reservations on every view, so a page got slower as the month's usage grew. The tally
-- private.cap_spend (20261201700000) already holds the same number per scope and UTC month: spent + held =
-- sum(coalesce(charged, amount)) of the month's reservations not refunded -- what the cap counts and what the pages
-- summed. The private schema is not readable by the API roles, so these two SECURITY DEFINER readers return only
-- what the caller could sum before under the reservations' policies:
--   credits_month_spent(user)  the user's personal spending: the caller's own (a site admin: anyone's); 0 otherwise,
--                              as the sum over rows the caller may not read was.
--   team_month_spent(team)     one row per member of the team whose spending the caller may read: every member for
--                              the team's owners and admins and for site admins, the caller alone for a member, no
--                              row for an outsider.

create or replace function public.credits_month_spent(p_user uuid) returns bigint
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((
    select c.spent + c.held from private.cap_spend c
    where c.scope = 'user' and c.subject = p_user::text and c.month = date_trunc('month', now(), 'UTC')
      and (p_user = (select auth.uid()) or (select public.is_admin()))
  ), 0)::bigint
$$;
revoke execute on function public.credits_month_spent(uuid) from public, anon;
grant execute on function public.credits_month_spent(uuid) to authenticated, service_role;

create or replace function public.team_month_spent(p_team uuid) returns table (user_id uuid, month_spent bigint)
language sql
stable
security definer
set search_path = ''
as $$
  select m.user_id, coalesce(c.spent + c.held, 0)::bigint
  from public.team_members m
  left join private.cap_spend c
    on c.scope = 'team_member' and c.subject = p_team::text || ':' || m.user_id::text
       and c.month = date_trunc('month', now(), 'UTC')
  where m.team_id = p_team
    and (m.user_id = (select auth.uid()) or (select public.team_role(p_team)) in ('owner', 'admin')
         or (select public.is_admin()))
$$;
revoke execute on function public.team_month_spent(uuid) from public, anon;
grant execute on function public.team_month_spent(uuid) to authenticated, service_role;

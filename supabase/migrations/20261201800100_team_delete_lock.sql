-- Deleting a team takes the wallets first.
--
-- A team's delete cascades: its reservations get team_id null (on delete set null), and the cap tally's trigger
-- (credit_reservations_cap_count, 20261201700000) moves each from the member's team_member row and the API key's row
-- to the member's user row. Every other writer of those rows holds the wallet first (the team's for team_member,
-- the user's for user; then the user / team_member row, then the api_key row), but the cascade held none: a member's
-- personal request holding their wallet and user row while the cascade held the key's row deadlocked (one side
-- aborted). Before the cascade, lock the team's wallet and then, in user id order, the personal wallets of everyone
-- with a reservation on the team -- the order reservations, settles and refunds take them (each takes one wallet;
-- only this takes several, always sorted) -- so the delete waits for requests in flight instead.

create or replace function private.team_delete_lock_wallets() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid;
begin
  perform public.team_credits_lock(old.id);
  for v_user in
    select distinct user_id from public.credit_reservations where team_id = old.id order by user_id
  loop
    perform public.credits_lock_account(v_user);
  end loop;
  return old;
end
$$;
revoke execute on function private.team_delete_lock_wallets() from public, anon, authenticated, service_role;

create trigger teams_delete_lock_wallets before delete on public.teams
  for each row execute function private.team_delete_lock_wallets();

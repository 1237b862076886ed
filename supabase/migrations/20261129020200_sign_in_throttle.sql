-- Failed sign-in attempts per key (an account's email, a client address), shared by every worker and instance.
-- A fixed window per key: once a key has p_limit failures inside the window, sign-in for it is refused until the
-- window ends. Only the service role touches the table and the function.

create table public.sign_in_attempts (
  key text primary key,
  window_start timestamptz not null,
  failures integer not null
);
alter table public.sign_in_attempts enable row level security;
revoke all on public.sign_in_attempts from anon, authenticated, service_role;
grant select, insert, update, delete on public.sign_in_attempts to service_role;
create index sign_in_attempts_window_idx on public.sign_in_attempts (window_start);

-- Seconds until the first of p_keys is allowed again (0: go ahead). p_limits[i] is the allowance of p_keys[i].
create or replace function public.sign_in_wait(p_keys text[], p_limits integer[], p_window_seconds integer)
returns integer
language sql
stable
set search_path = ''
as $$
  select coalesce(max(greatest(1, ceil(extract(epoch from
           (a.window_start + make_interval(secs => p_window_seconds) - now())))::int)), 0)
  from public.sign_in_attempts a
  join unnest(p_keys, p_limits) as k (key, lim) on k.key = a.key
  where a.failures >= k.lim and a.window_start > now() - make_interval(secs => p_window_seconds)
$$;

-- Count one failure against every key; a window older than p_window_seconds starts again at 1.
-- Expired rows of other keys are swept a few at a time so the table stays small.
create or replace function public.sign_in_failed(p_keys text[], p_window_seconds integer)
returns void
language sql
volatile
set search_path = ''
as $$
  delete from public.sign_in_attempts
    where key in (select key from public.sign_in_attempts
                  where window_start < now() - make_interval(secs => p_window_seconds) limit 100);
  insert into public.sign_in_attempts as a (key, window_start, failures)
    select k, now(), 1 from unnest(p_keys) as k
    on conflict (key) do update set
      failures = case when a.window_start > now() - make_interval(secs => p_window_seconds)
                      then a.failures + 1 else 1 end,
      window_start = case when a.window_start > now() - make_interval(secs => p_window_seconds)
                          then a.window_start else now() end;
$$;

revoke execute on function public.sign_in_wait(text[], integer[], integer) from public;
revoke execute on function public.sign_in_failed(text[], integer) from public;
grant execute on function public.sign_in_wait(text[], integer[], integer) to service_role;
grant execute on function public.sign_in_failed(text[], integer) to service_role;

-- Request rate limits of the local Supabase Auth API (AUTH_BACKEND=local): sign-ups (/auth/v1/signup) and token
-- refreshes (/auth/v1/token?grant_type=refresh_token) per client address, counted here so every worker and instance
-- shares one count (as sign_in_attempts does for failed sign-ins). A fixed window per key: the hit that opens it sets
-- window_end; past `limit` hits inside it, the caller is refused until window_end. Only the service role touches
-- the table and the function.

create table public.auth_rate_hits (
  key text primary key check (char_length(key) <= 300),
  window_end timestamptz not null,
  hits integer not null
);
alter table public.auth_rate_hits enable row level security;
revoke all on public.auth_rate_hits from anon, authenticated, service_role;
grant select, insert, update, delete on public.auth_rate_hits to service_role;
create index auth_rate_hits_window_end_idx on public.auth_rate_hits (window_end);

-- Count one hit against p_key; returns 0 when it is within p_limit hits of the key's window (go ahead), else the
-- seconds until the window ends. A few expired rows of other keys are swept each call, so the table stays small.
create or replace function public.auth_rate_hit(p_key text, p_limit integer, p_window_seconds integer)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_end timestamptz;
  v_hits integer;
begin
  if p_key is null or char_length(p_key) > 300 or p_limit is null or p_limit < 1
     or p_window_seconds is null or p_window_seconds < 1 then
    raise exception 'a key, a limit of at least 1 and a window of at least 1 second' using errcode = '22023';
  end if;
  delete from public.auth_rate_hits
   where key in (select key from public.auth_rate_hits where window_end < now() limit 100
                 for update skip locked);
  insert into public.auth_rate_hits as h (key, window_end, hits)
    values (p_key, now() + make_interval(secs => p_window_seconds), 1)
    on conflict (key) do update set
      hits = case when h.window_end > now() then h.hits + 1 else 1 end,
      window_end = case when h.window_end > now() then h.window_end else excluded.window_end end
    returning window_end, hits into v_end, v_hits;
  if v_hits <= p_limit then
    return 0;
  end if;
  return greatest(1, ceil(extract(epoch from (v_end - now())))::int);
end
$$;
revoke execute on function public.auth_rate_hit(text, integer, integer) from public, anon, authenticated;
grant execute on function public.auth_rate_hit(text, integer, integer) to service_role;

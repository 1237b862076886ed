-- Per-user request rate and concurrent streams, shared by every app worker and instance. Only the service role
-- touches these tables; gateway_admit() runs in the same statement that loads the user's context.

create table public.rate_limit_windows (
  user_id uuid primary key references auth.users (id) on delete cascade,
  window_start timestamptz not null,
  count integer not null
);
alter table public.rate_limit_windows enable row level security;

create table public.active_streams (
  request_id uuid primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  started_at timestamptz not null default now()
);
alter table public.active_streams enable row level security;
create index active_streams_user_idx on public.active_streams (user_id, started_at);

revoke all on public.rate_limit_windows, public.active_streams from anon, authenticated, service_role;
grant select, insert, update, delete on public.rate_limit_windows, public.active_streams to service_role;

-- Admit one request or say why not. The upsert on the user's window row locks it for the rest of the
-- transaction, so concurrent requests of one user are counted one after another (each statement below takes a
-- fresh snapshot). Streams older than p_stale_seconds are presumed abandoned by a crashed worker. Safe to call
-- again for the same request when the first call's outcome is unknown (connection lost at commit): the stream slot
-- insert then finds its own row.
create or replace function public.gateway_admit(
  p_user uuid, p_per_minute integer, p_stream_request uuid, p_max_streams integer, p_stale_seconds integer
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_count integer;
  v_start timestamptz;
  v_streams integer;
begin
  insert into public.rate_limit_windows as w (user_id, window_start, count)
    values (p_user, date_trunc('minute', now()), 1)
    on conflict (user_id) do update set
      count = case when w.window_start = excluded.window_start then w.count + 1 else 1 end,
      window_start = excluded.window_start
    returning count, window_start into v_count, v_start;
  if p_per_minute > 0 and v_count > p_per_minute then
    return jsonb_build_object('ok', false, 'reason', 'rate',
      'retry_after', greatest(1, ceil(extract(epoch from (v_start + interval '1 minute' - now())))::int));
  end if;
  if p_stream_request is not null then
    if exists (select 1 from public.active_streams where request_id = p_stream_request) then
      return jsonb_build_object('ok', true);
    end if;
    delete from public.active_streams
      where user_id = p_user and started_at < now() - make_interval(secs => p_stale_seconds);
    select count(*) into v_streams from public.active_streams where user_id = p_user;
    if p_max_streams > 0 and v_streams >= p_max_streams then
      return jsonb_build_object('ok', false, 'reason', 'streams', 'retry_after', 1);
    end if;
    insert into public.active_streams (request_id, user_id) values (p_stream_request, p_user)
      on conflict (request_id) do nothing;
  end if;
  return jsonb_build_object('ok', true);
end
$$;
revoke execute on function public.gateway_admit(uuid, integer, uuid, integer, integer) from public;
grant execute on function public.gateway_admit(uuid, integer, uuid, integer, integer) to service_role;

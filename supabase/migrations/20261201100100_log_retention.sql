-- Request-log retention (issue 13): public.request_logs_prune(months, batch) deletes one batch of log rows older
-- than the current UTC month and the `months` before it, oldest first, and returns how many it deleted. Run by the
-- operator (`flask logs prune`, looping until a batch comes back short) or by pg_cron on Supabase (see
-- docs/admin-guide.md). Only log rows go: the credit ledger, reservations and the usage rollups (whose trigger fires
-- on insert and update, not delete) keep every month. No API role may call it.

create or replace function public.request_logs_prune(p_months integer, p_batch integer default 10000)
returns bigint
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_cutoff timestamptz;
  v_deleted bigint;
begin
  if p_months is null or p_months < 1 then
    raise exception 'keep at least one month before the current one' using errcode = '22023';
  end if;
  if p_batch is null or p_batch < 1 then
    raise exception 'a batch is at least one row' using errcode = '22023';
  end if;
  v_cutoff := (date_trunc('month', now() at time zone 'utc') - make_interval(months => p_months)) at time zone 'utc';
  delete from public.llm_request_logs
   where id in (select id from public.llm_request_logs where created_at < v_cutoff
                order by created_at limit p_batch);
  get diagnostics v_deleted = row_count;
  return v_deleted;
end
$$;
revoke execute on function public.request_logs_prune(integer, integer) from public, anon, authenticated, service_role;

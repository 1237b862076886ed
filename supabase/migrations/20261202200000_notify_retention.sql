-- Notification retention (issue 16): public.notify_prune(days, batch) deletes, in one call, at most `batch` of each
-- of the following that finished more than `days` days ago, oldest first, and returns how many of each it deleted:
--   * webhook deliveries that succeeded or failed (never a pending one, retrying or not); their attempts cascade;
--   * outbox events already dispatched whose email deliveries and webhook deliveries are all finished (never an event
--     waiting for its dispatch or with a delivery still pending); their email delivery rows cascade. A spend-cap
--     event is kept until its month and the one after it are over, whatever `days` says: its dedupe_key (one per
--     month) is what stops a second notice for that month;
--   * procrastinate jobs in a final state (succeeded, failed, cancelled, aborted) whose last event is that old;
--     their events cascade. A job still to do or running is never touched.
-- Nothing else: endpoints, wallets, the ledger, the cap tally are untouched. Run by `flask notify prune` (looping
-- until every count comes back short) and hourly by the notification worker (NOTIFY_RETENTION_DAYS; 0 keeps all).
-- Only the service role (the worker) and the owner may call it.

create index if not exists notification_events_created_idx on public.notification_events (created_at);
create index if not exists webhook_deliveries_finished_idx on public.webhook_deliveries (created_at)
  where status <> 'pending';
create index if not exists webhook_deliveries_pending_event_idx on public.webhook_deliveries (event_id)
  where status = 'pending' and event_id is not null;

create or replace function public.notify_prune(p_days integer, p_batch integer default 5000)
returns table (pruned_events bigint, pruned_emails bigint, pruned_webhook_deliveries bigint, pruned_jobs bigint)
language plpgsql
security definer
-- procrastinate's delete trigger names its tables unqualified (as in private.notify_enqueue): public, pg_temp last;
-- everything here is schema-qualified.
set search_path = public, pg_temp
as $$
declare
  v_cutoff timestamptz;
  v_caps timestamptz;
  v_ids uuid[];
begin
  if p_days is null or p_days < 1 then
    raise exception 'keep at least one day' using errcode = '22023';
  end if;
  if p_batch is null or p_batch < 1 then
    raise exception 'a batch is at least one row' using errcode = '22023';
  end if;
  v_cutoff := now() - make_interval(days => p_days);
  v_caps := least(v_cutoff,
                  (date_trunc('month', now() at time zone 'utc') - interval '1 month') at time zone 'utc');

  delete from public.webhook_deliveries
   where id in (select w.id from public.webhook_deliveries w
                 where w.status <> 'pending' and w.created_at < v_cutoff
                 order by w.created_at limit p_batch);
  get diagnostics pruned_webhook_deliveries = row_count;

  select coalesce(array_agg(s.id), '{}') into v_ids
    from (select e.id from public.notification_events e
           where e.created_at < v_cutoff and e.dispatched_at is not null
             and (e.type not like 'spend\_cap.%' or e.created_at < v_caps)
             and not exists (select 1 from public.notification_deliveries d
                              where d.event_id = e.id and d.status = 'pending')
             and not exists (select 1 from public.webhook_deliveries w
                              where w.event_id = e.id and w.status = 'pending')
           order by e.created_at limit p_batch
           for update skip locked) s;
  select count(*) into pruned_emails from public.notification_deliveries where event_id = any(v_ids);
  delete from public.notification_events where id = any(v_ids);
  get diagnostics pruned_events = row_count;

  delete from public.procrastinate_jobs
   where id in (select j.id from public.procrastinate_jobs j
                 where j.status in ('succeeded', 'failed', 'cancelled', 'aborted')
                   and (select max(ev.at) from public.procrastinate_events ev where ev.job_id = j.id) < v_cutoff
                 limit p_batch);
  get diagnostics pruned_jobs = row_count;
  return next;
end
$$;
revoke execute on function public.notify_prune(integer, integer) from public, anon, authenticated;
grant execute on function public.notify_prune(integer, integer) to service_role;

-- The hot path's Postgres time (issues 13 and 14): the same two statements per member request (gateway_begin,
-- gateway_close), the same rows written in the same transactions, less work per statement. Measured with
-- bench/pg_path_cost.py (docs/perf-notes.md, "Postgres time per member request"); each change below paid on its own.

-- 1. The receipt row. A LANGUAGE sql function called from PL/pgSQL is not inlined and keeps no plan between
--    transactions: its INSERT ... SELECT FROM jsonb_populate_record was parsed and planned on every receipt
--    (0.26 ms of the function's 0.38). In PL/pgSQL the plan is kept per connection (0.12-0.14 ms). Same statement.
create or replace function public.request_log_insert(p_log jsonb, p_credits bigint, p_shortfall bigint)
returns void
language plpgsql
set search_path = ''
as $$
begin
  insert into public.llm_request_logs (request_id, user_id, mode, status, provider, model, task, key_source,
      admin_key_id, tokens_in, tokens_out, usage_source, credits, multiplier, fallback_path, stream, error_code,
      latency_ms, output_limit, shortfall, api_key_id, team_id, cached_tokens, cache_write_tokens, reasoning_tokens)
  select r.request_id, r.user_id, r.mode, r.status, r.provider, r.model, r.task, r.key_source, r.admin_key_id,
         r.tokens_in, r.tokens_out, r.usage_source, p_credits, r.multiplier, coalesce(r.fallback_path, '{}'),
         r.stream, r.error_code, r.latency_ms, r.output_limit, p_shortfall, r.api_key_id, r.team_id,
         coalesce(r.cached_tokens, 0), coalesce(r.cache_write_tokens, 0), coalesce(r.reasoning_tokens, 0)
  from jsonb_populate_record(null::public.llm_request_logs, p_log) r
  on conflict (request_id) do nothing;
end
$$;

-- 2. The wallet lock (twice per request: reserve, settle). The account row exists for every user (made with the
--    user); lock it first and only make it when it is missing, instead of an INSERT ... ON CONFLICT DO NOTHING
--    (a speculative insertion into the primary key) before every lock. Same answer, same lock.
create or replace function public.credits_lock_account(p_user uuid) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_balance bigint;
begin
  select balance into v_balance from public.credit_accounts where user_id = p_user for update;
  if not found then
    insert into public.credit_accounts (user_id) values (p_user) on conflict (user_id) do nothing;
    select balance into v_balance from public.credit_accounts where user_id = p_user for update;
  end if;
  return v_balance;
end
$$;

-- 3. The ledger carried two indexes on the user: (user_id, id desc) -- every reader's order (repos/credits.py
--    ledger_page, repos/admin.py ledger: `where user_id = ... order by id desc`) -- and (user_id, created_at desc),
--    which no reader uses (the user-delete cascade and local_engine's `where user_id and reason` use either). Two
--    ledger rows per member request (reserve, settle): two index insertions fewer.
drop index if exists public.credit_ledger_user_idx;

-- 4. The monthly cap tally (20261201700000): one statement per event instead of one per scope, and no nested
--    call in the usual cases (a reservation made; settled or refunded without changing user, team, key or month).
--    The rows are touched in the same order as before (wallet scope, then the key), so the lock order holds.
create or replace function private.cap_tally_add(p_user uuid, p_team uuid, p_key uuid, p_month timestamptz,
                                                 p_spent bigint, p_held bigint) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_spent = 0 and p_held = 0 then
    return;
  end if;
  insert into private.cap_spend as t (scope, subject, month, spent, held)
    select s.scope, s.subject, p_month, p_spent, p_held
    from (values (case when p_team is null then 'user' else 'team_member' end,
                  case when p_team is null then p_user::text else p_team::text || ':' || p_user::text end),
                 ('api_key', p_key::text)) s (scope, subject)
    where s.subject is not null
    on conflict (scope, subject, month) do update set spent = t.spent + excluded.spent, held = t.held + excluded.held;
end
$$;

create or replace function private.cap_tally_on_reservation() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_old_spent bigint := 0;
  v_old_held bigint := 0;
  v_new_spent bigint := 0;
  v_new_held bigint := 0;
  v_old_month timestamptz;
  v_new_month timestamptz;
begin
  if tg_op <> 'INSERT' then
    v_old_month := date_trunc('month', old.created_at, 'UTC');
    if old.status = 'reserved' then
      v_old_held := old.amount;
    elsif old.status = 'settled' then
      v_old_spent := coalesce(old.charged, old.amount);
    end if;
  end if;
  if tg_op <> 'DELETE' then
    v_new_month := date_trunc('month', new.created_at, 'UTC');
    if new.status = 'reserved' then
      v_new_held := new.amount;
    elsif new.status = 'settled' then
      v_new_spent := coalesce(new.charged, new.amount);
    end if;
  end if;
  if tg_op = 'INSERT' or (tg_op = 'UPDATE' and (old.user_id, old.team_id, old.api_key_id, v_old_month)
                          is not distinct from (new.user_id, new.team_id, new.api_key_id, v_new_month)) then
    -- The usual cases (a reservation; its settle or refund): the difference, in one upsert for both scopes.
    v_new_spent := v_new_spent - v_old_spent;
    v_new_held := v_new_held - v_old_held;
    if v_new_spent <> 0 or v_new_held <> 0 then
      insert into private.cap_spend as t (scope, subject, month, spent, held)
        select s.scope, s.subject, v_new_month, v_new_spent, v_new_held
        from (values (case when new.team_id is null then 'user' else 'team_member' end,
                      case when new.team_id is null then new.user_id::text
                           else new.team_id::text || ':' || new.user_id::text end),
                     ('api_key', new.api_key_id::text)) s (scope, subject)
        where s.subject is not null
        on conflict (scope, subject, month) do update
          set spent = t.spent + excluded.spent, held = t.held + excluded.held;
    end if;
  else
    if tg_op <> 'INSERT' then
      perform private.cap_tally_add(old.user_id, old.team_id, old.api_key_id, v_old_month, -v_old_spent, -v_old_held);
    end if;
    if tg_op <> 'DELETE' then
      perform private.cap_tally_add(new.user_id, new.team_id, new.api_key_id, v_new_month, v_new_spent, v_new_held);
    end if;
  end if;
  return null;
end
$$;

-- The hot path in two round trips (issue 14): one statement before forwarding, one after.
--
-- gateway_begin: the principal check (token user and session, or personal API key), the context (preferences,
-- stored keys, catalog version, billed team and membership), the admission (gateway_admit) and, when the caller
-- already knows what to reserve, the reservation (credits_reserve_flex) -- in one function, so Postgres keeps
-- its plans per connection instead of planning a large statement on every request.
--
-- The reservation bounds are priced by the app from the context it holds for this caller; they are used only when
-- the fingerprint the app sends equals the fingerprint of the context read here, now, in this transaction (md5 of
-- everything the routing and the price depend on). Otherwise nothing is reserved and the app prices the request
-- from the fresh context and reserves in a second statement. The context itself is never trusted from a cache:
-- a revoked key, a banned user, an ended session, a removed member or an admin change is seen by this statement.
--
-- gateway_close: settle (or refund) + the receipt row + the stream slot's release, in one transaction.

create or replace function public.gateway_begin(
  p_uid uuid,            -- the token's user (null with a personal API key)
  p_sid uuid,            -- the token's session (null: none)
  p_key text,            -- a personal API key's keyed hash (null with a token)
  p_team text,           -- X-Switchboard-Team's slug (null: the key's team, else the user's default team)
  p_billing boolean,     -- a request that spends: the billed team's routing and keys replace the user's
  p_admit boolean,       -- count this request against the per-user limits
  p_per_minute integer,
  p_stream uuid,         -- a stream's request id (its slot), or null
  p_max_streams integer,
  p_stale integer,
  p_fingerprint text,    -- the fingerprint of the context the app priced the reservation from (null: none)
  p_request uuid,        -- the reservation's request id (with p_min/p_max)
  p_min bigint,
  p_max bigint
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_principal jsonb;
  v_ok boolean;
  v_uid uuid;
  v_admit jsonb;
  v_prefs jsonb;
  v_keys jsonb;
  v_version bigint;
  v_team_id uuid;
  v_team jsonb;
  v_key_team uuid;
  v_refusal text;
  v_fp text;
  v_reserve jsonb;
  v_state text;
  v_detail text;
begin
  if p_key is not null then
    v_principal := public.api_key_principal(p_key);
    v_ok := coalesce((v_principal ->> 'ok')::boolean, false);
    v_uid := case when v_ok then (v_principal ->> 'user_id')::uuid end;
    select team_id into v_key_team from public.api_keys where hash = p_key;
  else
    v_principal := public.principal_status(p_uid, p_sid);
    v_ok := coalesce((v_principal ->> 'ok')::boolean, false);
    v_uid := p_uid;
  end if;
  select to_jsonb(p) into v_prefs from (
    select user_id::text as user_id, username, first_name, last_name, email_notifications, marketing_emails,
           llm_mode, default_provider, fallbacks_enabled, never_spend_credits, provider_priorities,
           task_overrides, monthly_credit_cap, allow_dearer_fallbacks
    from public.user_preferences where user_id = v_uid) p;
  select coalesce(jsonb_agg(to_jsonb(k) order by k.priority), '[]'::jsonb) into v_keys from (
    select id::text as id, user_id::text as user_id, provider_id::text as provider_id, ciphertext, key_id, base_url,
           priority
    from public.user_provider_keys where user_id = v_uid and enabled) k;
  select version into v_version from public.catalog_version;
  if p_team is not null then
    select id into v_team_id from public.teams where slug = p_team;
  else
    v_team_id := coalesce(v_key_team, (select default_team_id from public.user_preferences where user_id = v_uid));
  end if;
  if v_team_id is not null then
    select to_jsonb(x) into v_team from (
      select t.id::text as id, t.slug, t.routing, m.role, m.monthly_credit_cap,
             (select coalesce(jsonb_agg(to_jsonb(k) order by k.priority), '[]'::jsonb) from (
                select id::text as id, team_id::text as user_id, provider_id::text as provider_id, ciphertext,
                       key_id, base_url, priority
                from public.team_provider_keys where team_id = t.id and enabled) k) as keys
      from public.teams t left join public.team_members m on m.team_id = t.id and m.user_id = v_uid
      where t.id = v_team_id) x;
  end if;
  -- The same refusals as the app's (repos/context.py): asked for a team that is not there or not theirs, or a key
  -- bound to another team than the one asked for.
  if p_billing then
    if v_team is null then
      v_refusal := case when p_team is not null then 'not_a_team_member' end;
    elsif v_team ->> 'role' is null then
      v_refusal := 'not_a_team_member';
    elsif p_team is not null and v_key_team is not null and v_key_team::text <> v_team ->> 'id' then
      v_refusal := 'team_not_allowed';
    end if;
  end if;
  -- The locks come last (the user's rate window, then the wallet), so they are held for as short a time as can be.
  if v_ok and p_admit then
    v_admit := public.gateway_admit(v_uid, p_per_minute, p_stream, p_max_streams, p_stale);
  end if;
  v_fp := md5(concat_ws('|', v_principal::text, v_prefs::text, v_keys::text, v_version::text, v_team::text,
                        v_key_team::text, p_billing::text));
  if v_ok and p_min is not null and p_fingerprint = v_fp and v_refusal is null
     and (not p_admit or coalesce((v_admit ->> 'ok')::boolean, false)) then
    begin
      v_reserve := public.credits_reserve_flex(
        v_uid, p_request, p_min, p_max, (v_prefs ->> 'monthly_credit_cap')::bigint,
        (v_principal -> 'api_key' ->> 'id')::uuid, (v_principal -> 'api_key' ->> 'monthly_credit_cap')::bigint,
        case when p_billing then (v_team ->> 'id')::uuid end);
    exception when sqlstate 'P0402' or sqlstate 'P0403' or sqlstate 'P0406' or sqlstate 'P0417'
                    or sqlstate 'P0418' then
      -- Refused for want of credits (or membership): the admission above still counts, as it does when the
      -- reservation is a statement of its own; the app answers 402/403 from this.
      get stacked diagnostics v_state = returned_sqlstate, v_detail = pg_exception_detail;
      v_reserve := jsonb_build_object('refused', v_state, 'available', v_detail);
    end;
  end if;
  if v_reserve is not null and p_fingerprint = v_fp then
    -- The app holds this very context: send only what changes per request.
    return jsonb_build_object('fp', v_fp, 'principal', v_principal, 'admit', v_admit, 'reserve', v_reserve,
                              'refusal', v_refusal);
  end if;
  return jsonb_build_object('fp', v_fp, 'principal', v_principal, 'admit', v_admit, 'reserve', v_reserve,
                            'refusal', v_refusal, 'prefs', v_prefs, 'keys', v_keys, 'catalog_version', v_version,
                            'team', v_team, 'key_team', v_key_team);
end
$$;

-- Close a member request: release its stream slot (when it held one), settle at p_actual (null: refund in full)
-- and write its receipt row, in one transaction. Idempotent by request id, like the functions it calls.
create or replace function public.gateway_close(p_request uuid, p_actual bigint, p_log jsonb, p_release boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_out jsonb;
begin
  if p_release then
    delete from public.active_streams where request_id = p_request;
  end if;
  if p_actual is null then
    perform public.credits_refund_logged(p_request, p_log);
    return jsonb_build_object('charged', 0, 'shortfall', 0);
  end if;
  return public.credits_settle_logged(p_request, p_actual, p_log);
end
$$;

revoke execute on function public.gateway_begin(uuid, uuid, text, text, boolean, boolean, integer, uuid, integer,
                                               integer, text, uuid, bigint, bigint) from public, anon, authenticated;
revoke execute on function public.gateway_close(uuid, bigint, jsonb, boolean) from public, anon, authenticated;
grant execute on function public.gateway_begin(uuid, uuid, text, text, boolean, boolean, integer, uuid, integer,
                                               integer, text, uuid, bigint, bigint) to service_role;
grant execute on function public.gateway_close(uuid, bigint, jsonb, boolean) to service_role;

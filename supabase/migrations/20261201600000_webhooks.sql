-- Signed webhooks (issue 16): endpoints registered by a user (their own events), a team's owners and admins (the
-- team's events) or a site admin (site-wide events); one delivery row per (endpoint, event) whose id is the
-- `webhook-id` every retry carries; the attempts of each delivery for the endpoint's delivery log.
--
-- * Who manages an endpoint is decided here: public.webhook_manages(user, team) is the owner for a user's endpoint,
--   an owner or admin of the team for a team's, an admin for a site endpoint, and never a caller holding an API key.
--   Reads and writes of webhook_endpoints run as the signed-in user under these policies.
-- * The signing secret is stored encrypted by the app (AES-256-GCM, bound to the endpoint id) and is never selectable
--   by authenticated (column grants); after a rotation the previous one keeps signing beside it for a day. Deliveries and attempts are written by the worker (service_role); a user reads
--   those of the endpoints they manage.
-- * A response body is kept only as an excerpt of at most 200 characters.

create table public.webhook_endpoints (
  id uuid primary key default gen_random_uuid(),
  scope text not null check (scope in ('user', 'team', 'site')),
  user_id uuid references auth.users (id) on delete cascade,
  team_id uuid references public.teams (id) on delete cascade,
  url text not null check (char_length(url) between 8 and 2000 and url ~ '^https?://'),
  description text not null default '' check (char_length(description) <= 200),
  event_types text[] not null check (cardinality(event_types) between 1 and 50),
  secret_ciphertext text not null,
  secret_key_id text not null,
  -- After a rotation the old secret also signs for a day (two signatures in webhook-signature), so a receiver can
  -- switch without losing deliveries.
  previous_secret_ciphertext text,
  previous_secret_expires_at timestamptz,
  enabled boolean not null default true,
  failing_since timestamptz,
  disabled_at timestamptz,
  disabled_reason text check (char_length(disabled_reason) <= 300),
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check ((scope = 'user' and user_id is not null and team_id is null)
         or (scope = 'team' and team_id is not null and user_id is null)
         or (scope = 'site' and user_id is null and team_id is null))
);
alter table public.webhook_endpoints enable row level security;
create index webhook_endpoints_user_idx on public.webhook_endpoints (user_id) where user_id is not null;
create index webhook_endpoints_team_idx on public.webhook_endpoints (team_id) where team_id is not null;
create index webhook_endpoints_site_idx on public.webhook_endpoints (scope) where scope = 'site';

create table public.webhook_deliveries (
  id uuid primary key default gen_random_uuid(),
  endpoint_id uuid not null references public.webhook_endpoints (id) on delete cascade,
  event_id uuid,  -- the outbox event (null for a test event)
  event_type text not null check (char_length(event_type) <= 100),
  body text not null,  -- the exact payload, the same bytes on every retry
  test boolean not null default false,
  status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed')),
  attempts integer not null default 0 check (attempts >= 0),
  next_attempt_at timestamptz default now(),
  locked_until timestamptz,
  last_attempt_at timestamptz,
  last_status integer,
  last_excerpt text check (char_length(last_excerpt) <= 200),
  last_error text check (char_length(last_error) <= 300),
  created_at timestamptz not null default now(),
  unique (endpoint_id, event_id)
);
alter table public.webhook_deliveries enable row level security;
create index webhook_deliveries_endpoint_idx on public.webhook_deliveries (endpoint_id, created_at desc);
create index webhook_deliveries_due_idx on public.webhook_deliveries (next_attempt_at) where status = 'pending';

create table public.webhook_attempts (
  id bigint generated always as identity primary key,
  delivery_id uuid not null references public.webhook_deliveries (id) on delete cascade,
  endpoint_id uuid not null references public.webhook_endpoints (id) on delete cascade,
  attempted_at timestamptz not null default now(),
  status_code integer,
  excerpt text check (char_length(excerpt) <= 200),
  error text check (char_length(error) <= 300),
  duration_ms integer not null default 0 check (duration_ms >= 0),
  next_attempt_at timestamptz
);
alter table public.webhook_attempts enable row level security;
create index webhook_attempts_endpoint_idx on public.webhook_attempts (endpoint_id, id desc);
create index webhook_attempts_delivery_idx on public.webhook_attempts (delivery_id);

-- May the caller manage an endpoint owned by (p_user, p_team)? Both null: a site endpoint.
create or replace function public.webhook_manages(p_user uuid, p_team uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select (select auth.uid()) is not null
     and (select auth.jwt()) ->> 'api_key_id' is null
     and case
           when p_user is not null then p_user = (select auth.uid())
           when p_team is not null then coalesce(public.team_role(p_team) in ('owner', 'admin'), false)
           else public.is_admin()
         end
$$;
revoke execute on function public.webhook_manages(uuid, uuid) from public, anon;
grant execute on function public.webhook_manages(uuid, uuid) to authenticated, service_role;

revoke all on public.webhook_endpoints, public.webhook_deliveries, public.webhook_attempts
  from anon, authenticated, service_role;
grant select (id, scope, user_id, team_id, url, description, event_types, enabled, failing_since, disabled_at,
              disabled_reason, created_by, created_at, updated_at)
  on public.webhook_endpoints to authenticated;
grant insert (id, scope, user_id, team_id, url, description, event_types, secret_ciphertext, secret_key_id,
              created_by)
  on public.webhook_endpoints to authenticated;
-- (A new secret is written by the app as service_role, after the caller's own read of the endpoint succeeded.)
grant update (url, description, event_types, enabled, failing_since, disabled_at, disabled_reason, updated_at)
  on public.webhook_endpoints to authenticated;
grant delete on public.webhook_endpoints to authenticated;
grant select (id, endpoint_id, event_id, event_type, test, status, attempts, next_attempt_at, last_attempt_at,
              last_status, last_excerpt, last_error, created_at)
  on public.webhook_deliveries to authenticated;
grant select on public.webhook_attempts to authenticated;
grant select, insert, update, delete on public.webhook_endpoints, public.webhook_deliveries, public.webhook_attempts
  to service_role;

create policy webhook_endpoints_select on public.webhook_endpoints for select to authenticated
  using ((select public.webhook_manages(user_id, team_id)));
create policy webhook_endpoints_insert on public.webhook_endpoints for insert to authenticated
  with check ((select public.webhook_manages(user_id, team_id)) and created_by = (select auth.uid()));
create policy webhook_endpoints_update on public.webhook_endpoints for update to authenticated
  using ((select public.webhook_manages(user_id, team_id)))
  with check ((select public.webhook_manages(user_id, team_id)));
create policy webhook_endpoints_delete on public.webhook_endpoints for delete to authenticated
  using ((select public.webhook_manages(user_id, team_id)));
-- The endpoint subquery runs under the endpoint policy: a user reads the deliveries of endpoints they manage.
create policy webhook_deliveries_select on public.webhook_deliveries for select to authenticated
  using (endpoint_id in (select e.id from public.webhook_endpoints e));
create policy webhook_attempts_select on public.webhook_attempts for select to authenticated
  using (endpoint_id in (select e.id from public.webhook_endpoints e));

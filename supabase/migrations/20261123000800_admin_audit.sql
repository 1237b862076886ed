-- Every admin change: who, what, before, after, when. Admins read; the app inserts as service_role.

create table public.admin_audit_log (
  id bigint generated always as identity primary key,
  actor_id uuid references auth.users (id) on delete set null,
  action text not null check (length(action) between 1 and 80),
  target text not null default '',
  before jsonb,
  after jsonb,
  created_at timestamptz not null default now()
);
alter table public.admin_audit_log enable row level security;
create index admin_audit_log_created_idx on public.admin_audit_log (created_at desc);
create index admin_audit_log_actor_idx on public.admin_audit_log (actor_id);

revoke all on public.admin_audit_log from anon, authenticated, service_role;
grant select on public.admin_audit_log to authenticated;
grant select, insert on public.admin_audit_log to service_role;

create policy admin_audit_log_select on public.admin_audit_log
  for select to authenticated using ((select public.is_admin()));

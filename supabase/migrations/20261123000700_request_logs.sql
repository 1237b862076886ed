-- One row per gateway request: the receipt. No key and no prompt text is ever stored here.

create table public.llm_request_logs (
  id uuid primary key default gen_random_uuid(),
  request_id uuid not null unique,
  user_id uuid not null references auth.users (id) on delete cascade,
  mode text not null check (mode in ('member', 'byok')),
  provider text,
  model text,
  task text,
  key_source text check (key_source in ('admin_db', 'admin_env', 'byok_header', 'byok_stored')),
  admin_key_id uuid references public.llm_admin_keys (id) on delete set null,
  tokens_in integer not null default 0,
  tokens_out integer not null default 0,
  usage_source text check (usage_source in ('measured', 'estimated')),
  credits bigint not null default 0 check (credits >= 0),
  multiplier numeric(10, 4),
  fallback_path text[] not null default '{}',
  stream boolean not null default false,
  status integer not null,
  error_code text,
  latency_ms integer not null default 0,
  created_at timestamptz not null default now()
);
alter table public.llm_request_logs enable row level security;
create index llm_request_logs_user_idx on public.llm_request_logs (user_id, created_at desc);
create index llm_request_logs_created_idx on public.llm_request_logs (created_at desc);
create index llm_request_logs_admin_key_idx on public.llm_request_logs (admin_key_id);

revoke all on public.llm_request_logs from anon, authenticated, service_role;
grant select on public.llm_request_logs to authenticated;
grant select, insert on public.llm_request_logs to service_role;

create policy llm_request_logs_select on public.llm_request_logs
  for select to authenticated using (user_id = (select auth.uid()) or (select public.is_admin()));

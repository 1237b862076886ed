-- Account security (issue 10): one-time password reset links for the local auth backend, and the "must change
-- password" flag set on the first admin's printed one-time password. Only the service role touches either table:
-- a reset link's token is stored as a keyed hash (HMAC-SHA256 with a key derived from SECRET_KEY), never in clear.

create table public.password_reset_links (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  token_hash bytea not null unique,
  created_at timestamptz not null default now(),
  created_by uuid references auth.users (id) on delete set null,
  used_at timestamptz
);
alter table public.password_reset_links enable row level security;
revoke all on public.password_reset_links from anon, authenticated, service_role;
grant select, insert, update, delete on public.password_reset_links to service_role;
create index password_reset_links_user_idx on public.password_reset_links (user_id);

create table public.password_change_required (
  user_id uuid primary key references auth.users (id) on delete cascade,
  since timestamptz not null default now()
);
alter table public.password_change_required enable row level security;
revoke all on public.password_change_required from anon, authenticated, service_role;
grant select, insert, update, delete on public.password_change_required to service_role;

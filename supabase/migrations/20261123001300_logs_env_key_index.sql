-- The admin keys page counts requests served by environment keys per provider; keep that off a full scan.

create index llm_request_logs_env_key_idx on public.llm_request_logs (provider) where key_source = 'admin_env';

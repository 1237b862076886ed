-- Routing that does what the user said: a fallback never costs more than the route the request reserved for,
-- unless the user allows dearer fallbacks (off by default).

alter table public.user_preferences
  add column if not exists allow_dearer_fallbacks boolean not null default false;

-- gateway_admit (20261123001200) counts the caller's open streams: `select count(*) from public.active_streams where
-- user_id = ...`. A stream's row lives for one request (inserted by gateway_begin, deleted by gateway_close), so a
-- busy user's part of active_streams_user_idx is mostly dead rows until autovacuum passes (at most once a minute).
-- The planner reads this tiny table with a bitmap scan, which visits every dead heap row on every request and never
-- marks them dead in the index; measured with bench/pg_path_cost.py (one user, streaming): gateway_admit grew from
-- 0.09 ms to 0.26-0.38 ms within 10,000 streams. A plain index scan marks the dead entries once (kill_prior_tuple)
-- and skips them afterwards: 0.087 ms flat. Every statement in gateway_admit is a lookup by primary key or by
-- (user_id, started_at), so no plan there needs a bitmap scan. Same statements, same answers.
alter function public.gateway_admit(uuid, integer, uuid, integer, integer) set enable_bitmapscan = off;

"""Usage rollups (supabase/migrations/20261201100000_usage_rollups.sql): what every chart, total and count reads
instead of the request log, so their cost follows the number of days and users shown, never the log's size.
Days are UTC dates; `end` arguments are exclusive."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg

from webapp.repos.admin import DayTotals, GroupTotals, Shortfalls, UserTotals

# group_by name -> expression over public.usage_daily ('' is how the rollup keys a missing provider or model)
USER_GROUPS = {"day": "day", "provider": "nullif(provider, '')", "model": "nullif(model, '')", "mode": "mode",
               "api_key": "api_key_id::text", "team": "team_id::text"}
_SUMS = ("sum(requests)::bigint, sum(tokens_in)::bigint, sum(tokens_out)::bigint, sum(credits)::bigint,"
         " (coalesce(sum(requests) filter (where status_class >= 4), 0))::bigint,"
         " sum(cached_tokens)::bigint, sum(cache_write_tokens)::bigint, sum(reasoning_tokens)::bigint")


def user_buckets(conn: psycopg.Connection, user_id: str, start: date, end: date, groups: list[str],
                 api_key_id: str | None = None) -> list[tuple[Any, ...]]:
    """(group values..., requests, tokens_in, tokens_out, credits, errors, cached_tokens, cache_write_tokens,
    reasoning_tokens) of one user's requests, grouped by any of USER_GROUPS (the caller checks the names), optionally
    of one personal API key."""
    cols = ", ".join(f"{USER_GROUPS[g]} as {g}" for g in groups)
    order = ", ".join(str(i + 1) for i in range(len(groups)))
    key_filter = " and api_key_id = %s" if api_key_id else ""
    sql = (f"select {cols}, {_SUMS} from public.usage_daily"
           f" where user_id = %s and day >= %s and day < %s{key_filter} group by {order} order by {order}")
    return conn.execute(sql, [user_id, start, end, *([api_key_id] if api_key_id else [])]).fetchall()


# -- admin analytics (service role or a site admin) ----------------------------------------------------------------

@dataclass(frozen=True)
class PlatformReport:
    days: list[DayTotals]
    providers: list[GroupTotals]
    modes: list[GroupTotals]
    error_codes: list[GroupTotals]
    shortfalls: Shortfalls
    byok_member_equivalent: int
    split: tuple[int, int, int] = (0, 0, 0)  # cached, cache-write and reasoning tokens of the whole range


_PLATFORM = """
select grouping(day, provider, mode) as g, day, provider, mode,
       sum(requests)::bigint, sum(tokens_in)::bigint, sum(tokens_out)::bigint, sum(credits)::bigint,
       (coalesce(sum(requests) filter (where status_class >= 4), 0))::bigint,
       sum(shortfall_requests)::bigint, sum(shortfall)::bigint, sum(corrected_requests)::bigint,
       sum(cached_tokens)::bigint, sum(cache_write_tokens)::bigint, sum(reasoning_tokens)::bigint
  from (select day, coalesce(nullif(provider, ''), '(none)') as provider, mode, status_class, requests, tokens_in,
               tokens_out, credits, shortfall_requests, shortfall, corrected_requests, cached_tokens,
               cache_write_tokens, reasoning_tokens
          from public.usage_daily_platform where day >= %s and day < %s) p
 group by grouping sets ((day), (provider), (mode), ())"""
# grouping() bitmask over (day, provider, mode): a 1 bit = that column is rolled up in the row's set.
_SET_DAY, _SET_PROVIDER, _SET_MODE, _SET_ALL = 0b011, 0b101, 0b110, 0b111


def _rates(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[int, int, Decimal]]:
    rows = conn.execute("""select p.slug, r.model, r.input_rate, r.output_rate, p.credit_multiplier
                           from public.llm_model_rates r join public.llm_providers p on p.id = r.provider_id""")
    return {(str(r[0]), str(r[1])): (int(r[2]), int(r[3]), Decimal(r[4])) for r in rows.fetchall()}


def platform_report(conn: psycopg.Connection, start: date, end: date) -> PlatformReport:
    """Everything the analytics page shows except top users: totals per day, per provider and per mode and the
    shortfalls in one pass over the platform rollup (grouping sets), failures per error code, and what the
    successful BYOK traffic would have cost in member mode at today's rates and multipliers (per provider, model)."""
    # The grouping sets aggregate in the database: a year of platform rows (tens of thousands) never crosses the wire.
    days: list[DayTotals] = []
    providers: list[GroupTotals] = []
    modes: list[GroupTotals] = []
    shortfalls, split = Shortfalls(0, 0, 0), (0, 0, 0)
    for g, day, provider, mode, req, tin, tout, cred, errs, s_req, s_sum, corr, *parts in conn.execute(
            _PLATFORM, [start, end]).fetchall():
        totals = (int(req or 0), int(tin or 0), int(tout or 0), int(cred or 0), int(errs or 0))  # () of no rows
        if g == _SET_DAY:
            days.append(DayTotals(day, totals[0], totals[1] + totals[2], totals[3], totals[4]))
        elif g == _SET_PROVIDER:
            providers.append(GroupTotals(provider, *totals))
        elif g == _SET_MODE:
            modes.append(GroupTotals(mode, *totals))
        elif g == _SET_ALL:
            shortfalls = Shortfalls(int(s_req or 0), int(s_sum or 0), int(corr or 0))
            split = (int(parts[0] or 0), int(parts[1] or 0), int(parts[2] or 0))
    days.sort(key=lambda d: d.day)
    for group in (providers, modes):
        group.sort(key=lambda t: (-t.requests, t.key))
    codes = [GroupTotals(str(r[0]), int(r[1]), 0, 0, 0, int(r[1])) for r in conn.execute(
        """select code, sum(requests)::bigint from public.usage_daily_errors where day >= %s and day < %s
           group by code having sum(requests) > 0 order by 2 desc, 1""", [start, end]).fetchall()]
    byok = conn.execute("""select provider, model, sum(tokens_in)::bigint, sum(tokens_out)::bigint
                           from public.usage_daily_byok_models where day >= %s and day < %s
                           group by provider, model""", [start, end]).fetchall()
    rates = _rates(conn) if byok else {}
    equivalent = 0
    for provider, model, b_in, b_out in byok:
        rate = rates.get((str(provider), str(model)))
        if rate:
            equivalent += math.ceil((int(b_in) * rate[0] + int(b_out) * rate[1]) * rate[2] / 1000)
    return PlatformReport(days, providers, modes, codes, shortfalls, equivalent, split)


def _exact_user_totals(conn: psycopg.Connection, user_ids: list[str], start: date, end: date
                       ) -> dict[str, tuple[int, int, int]]:
    """(requests, tokens, credits) per user in [start, end): whole months from the monthly rollup, the days at
    either edge from the daily one."""
    inner_from = start if start.day == 1 else _next_month(start)
    inner_to = end.replace(day=1)
    rows = conn.execute(
        """select user_id::text, sum(r)::bigint, sum(t)::bigint, sum(c)::bigint from (
             select user_id, requests r, tokens t, credits c from public.usage_monthly_users
              where user_id = any(%(ids)s::uuid[]) and month >= %(inner_from)s and month < %(inner_to)s
             union all
             select user_id, requests, tokens_in + tokens_out, credits from public.usage_daily
              where user_id = any(%(ids)s::uuid[]) and day >= %(start)s and day < %(end)s
                and not (day >= %(inner_from)s and day < %(inner_to)s)) x
           group by 1""",
        {"ids": user_ids, "start": start, "end": end, "inner_from": inner_from, "inner_to": inner_to}).fetchall()
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def _months(start: date, end: date) -> list[date]:
    out, month = [], start.replace(day=1)
    while month < end:
        out.append(month)
        month = _next_month(month)
    return out


def top_users(conn: psycopg.Connection, start: date, end: date, limit: int) -> list[UserTotals]:
    """Service role (emails). The `limit` users who spent the most credits in [start, end), then most requests.

    Exact without summing every user's days (Fagin's threshold algorithm): each touched month's users are read in
    order of that month's credits (index), a few dozen at a time, and each newly seen user's exact total computed;
    no user not yet seen can have spent more than the sum of the last credits read in every month, so the search
    stops once `limit` users are above that. Skewed spending (the usual case) stops after the first batch."""
    months = _months(start, end)
    offsets = dict.fromkeys(months, 0)
    last: dict[date, int] = {}
    exact: dict[str, tuple[int, int, int]] = {}
    batch = limit + 6  # skewed spending: the first few of each month are nearly always the answer
    while True:
        seen: set[str] = set()
        for month in months:
            if last.get(month) == 0:
                continue  # this month's list is exhausted (or down to users who spent nothing)
            rows = conn.execute("""select user_id::text, credits from public.usage_monthly_users where month = %s
                                   order by credits desc, user_id limit %s offset %s""",
                                [month, batch, offsets[month]]).fetchall()
            offsets[month] += len(rows)
            last[month] = int(rows[-1][1]) if len(rows) == batch else 0
            seen.update(str(r[0]) for r in rows if str(r[0]) not in exact)
        if seen:
            found = _exact_user_totals(conn, sorted(seen), start, end)
            exact.update({uid: found.get(uid, (0, 0, 0)) for uid in seen})
        threshold = sum(last.values())
        ranked = sorted((v[2] for v in exact.values() if v[0]), reverse=True)
        if threshold == 0 or (len(ranked) >= limit and ranked[limit - 1] > threshold):
            break
        batch *= 2
    if sum(1 for v in exact.values() if v[2] > 0) < limit:
        # Fewer than `limit` users spent credits: the rest rank by requests, so every user of the months counts
        # (a site of BYOK users; the one case that reads every user).
        everyone = conn.execute("select distinct user_id::text from public.usage_monthly_users"
                                " where month = any(%s::date[])", [months]).fetchall()
        missing = sorted(str(r[0]) for r in everyone if str(r[0]) not in exact)
        exact.update(_exact_user_totals(conn, missing, start, end) if missing else {})
    best = [(uid, v) for uid, v in exact.items() if v[0]]
    if not best:
        return []
    emails = dict(conn.execute("select id::text, email from auth.users where id = any(%s::uuid[])",
                               [[uid for uid, _ in best]]).fetchall())
    best.sort(key=lambda item: (-item[1][2], -item[1][0], emails.get(item[0]) or ""))
    return [UserTotals(uid, emails.get(uid), v[0], v[1], v[2]) for uid, v in best[:limit]]


# -- counts on the key lists -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdminKeyUse:
    requests: int
    last_used_at: Any


def admin_key_use(conn: psycopg.Connection) -> dict[str, AdminKeyUse]:
    """All-time requests and last use per stored admin key id (service role or a site admin)."""
    with conn.cursor() as cur:
        rows = cur.execute("""select admin_key_id::text, sum(requests)::bigint, max(last_at)
                              from public.usage_admin_keys where admin_key_id is not null group by 1""").fetchall()
    return {str(r[0]): AdminKeyUse(int(r[1]), r[2]) for r in rows}


def env_key_requests(conn: psycopg.Connection) -> dict[str, int]:
    """Requests served with a key from the environment, by provider slug."""
    rows = conn.execute("""select provider, sum(requests)::bigint from public.usage_admin_keys
                           where key_source = 'admin_env' and provider <> '' group by provider""").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def provider_has_history(conn: psycopg.Connection, slug: str) -> bool:
    """Whether any receipt ever named the provider (the rollups keep every day, even past log retention)."""
    row = conn.execute("select exists (select 1 from public.usage_daily_platform where provider = %s)",
                       [slug]).fetchone()
    return bool(row and row[0])


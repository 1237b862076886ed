"""One round trip per gateway request: the user's preferences, their enabled stored keys and the catalog
version, read as service_role for the verified user id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from webapp.repos.preferences import Preferences
from webapp.repos.user_keys import UserKeySecret

_QUERY = """
select
  (select row_to_json(p) from (
     select user_id::text as user_id, username, first_name, last_name, email_notifications, marketing_emails,
            llm_mode, default_provider, fallbacks_enabled, never_spend_credits, provider_priorities,
            task_overrides, monthly_credit_cap
     from public.user_preferences where user_id = %(uid)s) p) as prefs,
  (select coalesce(json_agg(k order by k.priority), '[]'::json) from (
     select id::text as id, user_id::text as user_id, provider_id::text as provider_id, ciphertext, key_id,
            base_url, priority
     from public.user_provider_keys where user_id = %(uid)s and enabled) k) as keys,
  (select version from public.catalog_version) as catalog_version
"""


@dataclass(frozen=True)
class UserContext:
    preferences: Preferences
    keys: list[UserKeySecret]
    catalog_version: int


def load(conn: psycopg.Connection, user_id: str) -> UserContext:
    row: Any = conn.execute(_QUERY, {"uid": user_id}).fetchone()
    prefs = Preferences(**row[0]) if row[0] else Preferences(user_id=user_id)
    keys = [UserKeySecret(**k) for k in row[1]]
    return UserContext(prefs, keys, int(row[2] or 0))

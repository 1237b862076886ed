"""What a user sees first: how their requests are served and what they cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webapp.db import Database
from webapp.repos import credits as credits_repo
from webapp.repos import preferences as prefs_repo
from webapp.repos import providers as providers_repo
from webapp.repos import user_keys as keys_repo


@dataclass(frozen=True)
class Overview:
    preferences: prefs_repo.Preferences
    balance_micro: int
    providers: list[providers_repo.Provider]
    keys: list[keys_repo.UserKeyInfo]

    @property
    def balance(self) -> str:
        return f"{self.balance_micro / 1_000_000:,.4f}"


def for_user(db: Database, claims: dict[str, Any]) -> Overview:
    user_id = str(claims["sub"])
    with db.as_user(claims) as conn:
        return Overview(
            preferences=prefs_repo.get(conn, user_id),
            balance_micro=credits_repo.balance(conn, user_id),
            providers=providers_repo.list_providers(conn),
            keys=keys_repo.list_for_owner(conn, user_id),
        )

"""Notices a user should read on their settings page: what an admin change did to their routing (a retired
provider removed from their order, default or task overrides). Written by the services that cause them
(services/provider_admin.py) in the same transaction; read and dismissed here by the owner, under RLS."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from webapp.db import Database
from webapp.errors import NotFound
from webapp.repos import notices as notices_repo
from webapp.repos.notices import Notice

__all__ = ["Notice", "dismiss", "for_user"]


def for_user(db: Database, claims: Mapping[str, Any]) -> list[Notice]:
    """The signed-in user's open notices, newest first (at most 20)."""
    with db.as_user(dict(claims)) as conn:
        return notices_repo.open_notices(conn, str(claims["sub"]))


def dismiss(db: Database, claims: Mapping[str, Any], notice_id: str) -> None:
    """Hide one of the user's notices; 404 notice_not_found for another user's, a dismissed or unknown one."""
    try:
        uuid.UUID(notice_id)
    except ValueError:
        raise NotFound("No such notice.", code="notice_not_found") from None
    with db.as_user(dict(claims)) as conn:
        if not notices_repo.dismiss(conn, str(claims["sub"]), notice_id):
            raise NotFound("No such notice.", code="notice_not_found")

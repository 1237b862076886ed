"""Mint access tokens in exactly the shape Supabase Auth issues, signed HS256 with the project's JWT secret."""

from __future__ import annotations

import time
import uuid
from typing import Any

from jose import jws

from webapp.config import Settings


def mint_access_token(settings: Settings, *, user_id: str, email: str, app_metadata: dict[str, Any],
                      user_metadata: dict[str, Any], session_id: str | None = None, ttl: int | None = None,
                      now: int | None = None) -> str:
    """An HS256 access token for `user_id`, claims as in supabase/auth internal/tokens/service.go."""
    if not settings.jwt_secret:
        raise RuntimeError("jwt_secret is not set; cannot mint access tokens")
    uuid.UUID(user_id)  # raises ValueError: the verifier would refuse a non-UUID subject anyway
    issued = int(time.time()) if now is None else int(now)
    lifetime = settings.access_token_ttl if ttl is None else int(ttl)
    if lifetime <= 0:
        raise ValueError("ttl must be positive")
    claims = {
        "iss": settings.jwt_issuer,
        "sub": user_id,
        "aud": "authenticated",  # GoTrue serialises a single audience as a string
        "exp": issued + lifetime,
        "iat": issued,
        "email": email,
        "phone": "",
        "app_metadata": dict(app_metadata),
        "user_metadata": dict(user_metadata),
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": issued}],
        "session_id": session_id or str(uuid.uuid4()),
        "is_anonymous": False,
    }
    token: str = jws.sign(claims, settings.jwt_secret, algorithm="HS256")  # header {"alg":"HS256","typ":"JWT"}
    return token

"""Domain errors. Services raise these; the web layer turns them into JSON, OpenAI-shaped or HTML answers."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """An error a client may see: an HTTP status, a stable code and a message with no secret in it."""

    status = 400
    code = "bad_request"
    openai_type = "invalid_request_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 field: str | None = None, headers: dict[str, str] | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.field = field
        self.headers = headers or {}
        self.details = details or {}


class ValidationError(AppError):
    status = 422
    code = "validation_error"

    def __init__(self, errors: dict[str, str], message: str = "Some fields are not valid.") -> None:
        super().__init__(message, details={"fields": errors})
        self.errors = errors


def unknown_field(payload: dict[str, Any], fields: tuple[str, ...] | list[str]) -> str | None:
    """The message for a JSON object naming a field outside `fields` (the first such), or None."""
    unknown = [k for k in payload if k not in fields]
    if not unknown:
        return None
    return f"Unknown field {str(unknown[0])[:60]!r}; fields: {', '.join(fields)}."


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"
    openai_type = "authentication_error"


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    openai_type = "permission_error"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class PaymentRequired(AppError):
    status = 402
    code = "insufficient_credits"
    openai_type = "insufficient_quota"


class RateLimited(AppError):
    status = 429
    code = "rate_limited"
    openai_type = "rate_limit_error"


class UpstreamError(AppError):
    status = 502
    code = "upstream_error"
    openai_type = "api_error"


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"
    openai_type = "api_error"

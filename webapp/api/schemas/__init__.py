"""Request and response bodies declared once, as pydantic models: the routes validate with them and the OpenAPI
document (services/openapi_doc.py, `declared`) derives its schemas from them — no hand-kept second copy.

Two kinds of body:
- `V1Body`: an OpenAI-compatible /v1 body. OpenAI clients send fields newer than this declaration, so unknown
  fields are kept (and the service decides: forwarded as sent, or refused by name when they cannot be honoured —
  the policy of services/chat_request.py). Types are strict: `"1"` is not an integer, `1` is not a string.
- `ApiBody`: an /api body; unknown fields are refused (422, `validation_error`, one message per field).

`parse(model, body, v1=...)` validates and turns a pydantic ValidationError into the route's error shape: on /v1 a
400 `invalid_value` naming the first bad field as OpenAI's `param` (`input[2].content`), on /api a 422 with every
field's message. Pure declarations: no Flask here, so services may import them too."""

from __future__ import annotations

from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict

from webapp.errors import AppError, ValidationError

# The patterns the hand-written parts of the document use for the same values (services/openapi_doc.py).
NOT_BLANK_NO_NUL = r"^[^\x00]*[^\s\x00][^\x00]*$"
NO_NUL = r"^[^\x00]*$"
# A model id as every /v1 route takes it (services.chat_request.MODEL_NAME after str.strip()): printable ASCII, no
# spaces, surrounded by any of the whitespace str.strip() removes (listed: each regex dialect's \s differs).
_STRIPPED = r"[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*"
MODEL_ID = rf"^{_STRIPPED}[!-~]{{1,200}}{_STRIPPED}$"
MODEL_ID_MESSAGE = "A model id: 1 to 200 printable ASCII characters, no spaces."
MAX_TOKENS_CEILING = 262_144  # Settings.max_tokens_ceiling's default; the live ceiling is enforced on top

B = TypeVar("B", bound=BaseModel)


class V1Body(BaseModel):
    """An OpenAI-compatible body: strict types, unknown fields kept (see the module docstring)."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)


class V1Object(BaseModel):
    """A nested /v1 object (a tool, an input part): strict, unknown fields kept for the provider."""

    model_config = ConfigDict(strict=True, extra="allow")


class ApiBody(BaseModel):
    """An /api body: strict types, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


def loc_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a field path: ("input", 2, "content") -> "input[2].content". Union and tagged-
    union branch names (`function`, `str`, `list[...]`) are not fields: they are left out."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or "-" in part or part in _BRANCH_NAMES or part in UNION_TAGS:
            continue
        else:
            out += f".{part}" if out else part
    return out or "body"


_BRANCH_NAMES = {"str", "int", "float", "bool", "list", "dict", "none", "literal", "nullable"}
# The tags of the declared tagged unions (an input item's `message`, a part's `input_text`): locations, not fields.
UNION_TAGS: set[str] = set()


def other_than(*known: str) -> dict[str, Any]:
    """The JSON schema of a catch-all tagged-union branch: any `type` but the declared ones. pydantic picks the
    branch with a function; this says the same in the document, so its `oneOf` holds exactly one branch."""
    UNION_TAGS.update(known)
    UNION_TAGS.add("other")
    return {"not": {"type": "object", "properties": {"type": {"enum": list(known)}}, "required": ["type"]}}


def _message(err: Any) -> str:
    msg = str(err.get("msg") or "invalid value")
    if err.get("type") == "extra_forbidden":
        return "Unknown field."
    if err.get("type") == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == MODEL_ID:
        return MODEL_ID_MESSAGE
    return msg[:1].upper() + msg[1:] + ("" if msg.endswith(".") else ".")


def _relevance(err: Any) -> tuple[bool, int]:
    """A union reports every branch's failure. The one the client meant: a branch whose types matched but whose
    bounds did not (a list too long, a string too short) before a mere type mismatch, then the deepest."""
    mismatch = str(err.get("type", "")).endswith("_type")
    return mismatch, -len(err.get("loc") or ())


def parse(model: type[B], body: Any, *, v1: bool) -> B:
    """`body` validated as `model`; the route's error shape otherwise (see the module docstring)."""
    if not isinstance(body, dict):
        if v1:
            raise AppError("The request body must be a JSON object.", code="invalid_json", status=400, field="body")
        raise ValidationError({"body": "The body must be a JSON object."})
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        errors = sorted(exc.errors(include_url=False, include_input=False), key=_relevance)
        if v1:
            first = errors[0]
            where = loc_path(tuple(first.get("loc") or ()))
            raise AppError(f"`{where}`: {_message(first)}", code="invalid_value", status=400, field=where) from None
        fields: dict[str, str] = {}
        for err in errors:
            fields.setdefault(loc_path(tuple(err.get("loc") or ())), _message(err))
        raise ValidationError(fields) from None

"""The OpenAPI 3.1 document of the JSON and /v1 routes (GET /api/openapi.json) and a readable docs page rendered
server-side from that same document (GET /api/docs): no CDN and no script, so it works under the app's CSP."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, jsonify, render_template
from markupsafe import Markup, escape

from webapp.services import openapi_doc

bp = Blueprint("openapi", __name__, url_prefix="/api")

AUTH_LABELS = {"user": "Bearer token (any signed-in user)", "admin": "Bearer token of an admin",
               "none": "None (public)"}
CONSTRAINTS = (("format", "format"), ("pattern", "pattern"), ("minLength", "min length"),
               ("maxLength", "max length"), ("minimum", "min"), ("maximum", "max"), ("minItems", "min items"),
               ("maxItems", "max items"), ("maxProperties", "max keys"), ("default", "default"))


@bp.get("/openapi.json")
def openapi_json() -> Any:
    return jsonify(openapi_doc.document())


@bp.get("/docs")
def docs() -> Any:
    doc = openapi_doc.document()
    html = render_template("api_docs.html", info=doc["info"], intro=_paragraphs(doc["info"]["description"]),
                           groups=_groups(doc), schemas=_schemas(doc), version=doc["openapi"])
    return Response(html, mimetype="text/html")


# -- the docs page's view of the document --------------------------------------------------------------------------

def _inline(text: str) -> Markup:
    """Escaped text with `code` and **bold** marked up (the only markdown the document's descriptions use)."""
    out = str(escape(text))
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return Markup(out)  # noqa: S704 - built from escaped text only


def _paragraphs(text: str) -> list[Markup]:
    return [_inline(p) for p in text.split("\n\n") if p.strip()]


def _ref_name(schema: dict[str, Any]) -> str | None:
    target = schema.get("$ref")
    if target is None and len(schema.get("allOf", [])) == 1:
        target = schema["allOf"][0].get("$ref")
    return str(target).rsplit("/", 1)[-1] if target else None


def _type_label(schema: dict[str, Any]) -> Markup:
    """A short readable type: `string | null`, `array of UserKey` (linked), `map of TaskOverride`, ..."""
    name = _ref_name(schema)
    if name:
        return Markup('<a href="#schema-{0}">{0}</a>').format(name)
    if schema.get("type") == "string" and schema.get("maxLength") == 0:
        return Markup("empty")
    if "const" in schema:
        return Markup("<code>{}</code>").format(json.dumps(schema["const"]))
    if isinstance(schema.get("contentSchema"), dict):
        return Markup("string holding JSON: ") + _type_label(schema["contentSchema"])
    if "anyOf" in schema:
        return Markup(" | ").join(_type_label(s) for s in schema["anyOf"])
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    parts: list[Markup] = []
    for k in kinds:
        if k == "array" and isinstance(schema.get("items"), dict):
            parts.append(Markup("array of ") + _type_label(schema["items"]))
        elif k == "object" and isinstance(schema.get("additionalProperties"), dict) and not schema.get("properties"):
            parts.append(Markup("map of ") + _type_label(schema["additionalProperties"]))
        else:
            parts.append(escape(k))
    return Markup(" | ").join(parts) if parts else Markup("any")


def _constraints(schema: dict[str, Any]) -> list[str]:
    out = []
    if "enum" in schema:
        out.append("one of: " + ", ".join("null" if v is None else str(v) for v in schema["enum"]))
    for key, label in CONSTRAINTS:
        if key in schema:
            value = schema[key]
            out.append(f"{label}: {str(value).lower() if isinstance(value, bool) else value}")
    if schema.get("uniqueItems"):
        out.append("distinct items")
    if isinstance(schema.get("propertyNames"), dict) and "pattern" in schema["propertyNames"]:
        out.append(f"keys match {schema['propertyNames']['pattern']}")
    return out


def schema_rows(schema: dict[str, Any], name: str = "", depth: int = 0, required: bool = False) -> list[dict[str, Any]]:
    """The schema as table rows (name, type, required, description, constraints), nested objects indented.
    A $ref is a link to the named schema, not expanded."""
    rows = [{"name": name, "depth": depth, "type": _type_label(schema), "required": required,
             "description": _inline(schema.get("description", "")), "constraints": _constraints(schema)}]
    if _ref_name(schema):
        return rows
    for option in schema.get("anyOf", []):
        if not _ref_name(option) and option.get("properties"):
            rows += schema_rows(option, "", depth + 1)[1:]
    needed = set(schema.get("required", []))
    for prop, sub in (schema.get("properties") or {}).items():
        rows += schema_rows(sub, prop, depth + 1, prop in needed)
    items = schema.get("items")
    if isinstance(items, dict) and not _ref_name(items) and items.get("properties"):
        rows += [r for r in schema_rows(items, "[ ]", depth + 1)[1:]]
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and not _ref_name(extra) and extra.get("properties"):
        rows += schema_rows(extra, "{key}", depth + 1)[1:]
    return rows


def _resolve(doc: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    target = item.get("$ref")
    if not target:
        return item
    node: Any = doc
    for part in str(target).lstrip("#/").split("/"):
        node = node[part]
    return dict(node)


def _fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """An object schema's fields as rows from depth 0; any other schema as a single row."""
    rows = schema_rows(schema)
    if schema.get("properties"):
        return [{**row, "depth": row["depth"] - 1} for row in rows[1:]]
    return rows


def _content(doc: dict[str, Any], media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A body: the named schema's fields shown in place (one level), with a link to the schema."""
    name = _ref_name(schema)
    shown = _resolve(doc, {"$ref": f"#/components/schemas/{name}"}) if name else schema
    return {"type": media_type, "schema_name": name, "rows": _fields(shown)}


def _operation_view(doc: dict[str, Any], method: str, path: str, op: dict[str, Any],
                    shared: list[dict[str, Any]]) -> dict[str, Any]:
    params = []
    for p in [*shared, *op.get("parameters", [])]:
        params.append({"name": p["name"], "in": p["in"], "required": p.get("required", False),
                       "type": _type_label(p["schema"]), "constraints": _constraints(p["schema"]),
                       "description": _inline(p.get("description", ""))})
    body = None
    if "requestBody" in op:
        rb = op["requestBody"]
        body = {"required": rb.get("required", False), "description": _inline(rb.get("description", "")),
                "content": [_content(doc, ct, media["schema"]) for ct, media in rb.get("content", {}).items()]}
    responses = []
    for status, raw in op.get("responses", {}).items():
        resp = _resolve(doc, raw)
        responses.append({
            "status": status, "description": _inline(resp.get("description", "")),
            "content": [_content(doc, ct, media["schema"]) for ct, media in resp.get("content", {}).items()],
            "headers": [{"name": h, "required": spec.get("required", False), "type": _type_label(spec["schema"]),
                         "description": _inline(spec.get("description", ""))}
                        for h, spec in resp.get("headers", {}).items()],
        })
    auth = op.get("x-auth", "user")
    return {"id": op["operationId"], "method": method, "path": path, "summary": op.get("summary", ""),
            "description": _inline(op.get("description", "")), "auth": auth, "auth_label": AUTH_LABELS[auth],
            "params": params, "body": body, "responses": responses}


def _groups(doc: dict[str, Any]) -> list[dict[str, Any]]:
    by_tag: dict[str, list[dict[str, Any]]] = {t["name"]: [] for t in doc.get("tags", [])}
    for path, item in doc["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method == "parameters":
                continue
            tag = (op.get("tags") or ["Other"])[0]
            by_tag.setdefault(tag, []).append(_operation_view(doc, method.upper(), path, op, shared))
    descriptions = {t["name"]: t.get("description", "") for t in doc.get("tags", [])}
    return [{"name": tag, "anchor": "tag-" + re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-"),
             "description": _inline(descriptions.get(tag, "")), "operations": ops}
            for tag, ops in by_tag.items() if ops]


def _schemas(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "description": _inline(schema.get("description", "")), "rows": _fields(schema)}
            for name, schema in doc["components"]["schemas"].items()]

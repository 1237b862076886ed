"""The OpenAPI description of the webhook routes: the same eight operations for a user's own endpoints
(/api/user/webhooks), a team's (/api/teams/{slug}/webhooks) and the site's (/api/admin/webhooks); merged into
openapi_doc's document by `apply`."""

from __future__ import annotations

from typing import Any

from webapp.notify.events import EVENT_TYPES
from webapp.services.openapi_doc import (
    BOOL,
    DATETIME,
    NO_NUL,
    UUID,
    _body,
    _errors,
    _json,
    _op,
    _param,
    array,
    integer,
    nullable,
    obj,
    ref,
    string,
)
from webapp.services.webhooks import MAX_DESCRIPTION, MAX_ENDPOINTS, MAX_URL

Schema = dict[str, Any]
TAG = "Webhooks"
EVENT = string(enum=list(EVENT_TYPES))
_FIELDS: dict[str, Schema] = {
    "url": string("Where to POST the events: https (http outside production), a public address.",
                  minLength=1, maxLength=MAX_URL, pattern=r"^\s*https?://[^\s\x00]+\s*$"),
    "description": string(maxLength=MAX_DESCRIPTION, pattern=NO_NUL),
    "event_types": array(EVENT, "The events this endpoint receives.", minItems=1, maxItems=len(EVENT_TYPES)),
}

SCHEMAS: dict[str, Schema] = {
    "Webhook": obj({
        "id": UUID, "scope": string(enum=["user", "team", "site"]), "url": string(), "description": string(),
        "event_types": array(string()), "enabled": BOOL,
        "status": string(enum=["active", "failing", "disabled"],
                         description="failing: the last attempts failed; disabled: after a day of failures, or "
                                     "by you."),
        "failing_since": nullable(DATETIME), "disabled_at": nullable(DATETIME),
        "disabled_reason": nullable(string()), "created_at": DATETIME, "updated_at": DATETIME,
    }),
    "WebhookEnvelope": obj({"webhook": ref("Webhook")}),
    "WebhookList": obj({"webhooks": array(ref("Webhook")),
                        "event_types": obj({}, extra=string(), description="Event type -> label.")}),
    "WebhookCreated": obj({
        "webhook": ref("Webhook"),
        "secret": string("The signing secret: shown this once.", pattern="^whsec_[A-Za-z0-9+/]+={0,2}$"),
        "warning": string(),
    }),
    "WebhookCreate": obj(dict(_FIELDS), ["url", "event_types"]),
    "WebhookUpdate": obj({**_FIELDS, "enabled": BOOL}, [], description="Only the fields sent change; enabling "
                                                                        "clears the failure state."),
    "WebhookDelivery": obj({
        "id": UUID, "webhook_id": string("The `webhook-id` header: the same on every retry."),
        "event_id": nullable(UUID), "event_type": string(), "test": BOOL,
        "status": string(enum=["pending", "succeeded", "failed"]), "attempts": integer(),
        "next_attempt_at": nullable(DATETIME), "last_attempt_at": nullable(DATETIME),
        "last_status": nullable(integer()),
        "last_response_excerpt": nullable(string("At most 200 characters of the answer.", maxLength=200)),
        "last_error": nullable(string()), "created_at": DATETIME,
    }),
    "WebhookDeliveryEnvelope": obj({"delivery": ref("WebhookDelivery")}),
    "WebhookDeliveries": obj({"deliveries": array(ref("WebhookDelivery"), "Newest first.", maxItems=100)}),
}


def _paths_for(base: str, prefix: str, auth: str, who: str, extra: list[Schema]) -> dict[str, Schema]:
    errs = ("401", "503")
    forbidden = _json(ref("ApiError"), f"{who} (`api_key_forbidden` for a personal API key).")
    not_found = _json(ref("ApiError"), "No such endpoint here (`webhook_not_found`)"
                                       + (", or no such team that you belong to (`team_not_found`)."
                                          if "{slug}" in base else "."))
    endpoint = _param("endpoint_id", "path", UUID, "The endpoint's id.")
    ok204 = {"204": {"description": "Deleted, with its delivery log."}}

    def op(op_id: str, summary: str, description: str, ok: dict[str, Schema], *codes: str,
           body: Schema | None = None, parameters: list[Schema] | None = None) -> Schema:
        return _op(prefix + op_id, TAG, summary, description, auth,
                   {**ok, "403": forbidden, "404": not_found, **_errors(*errs, *codes)}, body=body,
                   parameters=parameters)

    one = [*extra, endpoint]
    return {
        base: {
            **({"parameters": extra} if extra else {}),
            "get": op("ListWebhooks", "List webhook endpoints", "With the event types one may choose.",
                      {"200": _json(ref("WebhookList"), "The endpoints.")}),
            "post": op("CreateWebhook", "Add a webhook endpoint",
                       f"Returns the signing secret once. At most {MAX_ENDPOINTS} endpoints. The URL follows the "
                       "address rules of BYOK base URLs: no private, loopback, link-local or metadata address.",
                       {"201": _json(ref("WebhookCreated"), "The endpoint and its secret.")}, "413", "422",
                       body=_body(ref("WebhookCreate"), "URL, events and an optional description.")),
        },
        base + "/{endpoint_id}": {
            "parameters": one,
            "get": op("GetWebhook", "One webhook endpoint", "Its state (active, failing, disabled).",
                      {"200": _json(ref("WebhookEnvelope"), "The endpoint.")}),
            "patch": op("UpdateWebhook", "Change a webhook endpoint", "URL, description, events, enabled.",
                        {"200": _json(ref("WebhookEnvelope"), "The endpoint after the change.")}, "413", "422",
                        body=_body(ref("WebhookUpdate"), "The fields to change.")),
            "delete": op("DeleteWebhook", "Delete a webhook endpoint", "Pending deliveries are dropped.", ok204),
        },
        base + "/{endpoint_id}/rotate-secret": {
            "parameters": one,
            "post": op("RotateWebhookSecret", "Rotate the signing secret",
                       "A new secret, shown once. For a day the old one signs too: `webhook-signature` then holds "
                       "two `v1,` signatures (the new one first).",
                       {"200": _json(ref("WebhookCreated"), "The endpoint and its new secret.")}),
        },
        base + "/{endpoint_id}/test": {
            "parameters": one,
            "post": op("SendWebhookTest", "Send a test event",
                       "Queues a signed `webhook.test` event; the worker delivers it like any other.",
                       {"202": _json(ref("WebhookDeliveryEnvelope"), "The queued delivery."),
                        "409": _json(ref("ApiError"), "The endpoint is disabled (`webhook_disabled`), or three test "
                                                      "events already wait for it (`webhook_tests_pending`).")}),
        },
        base + "/{endpoint_id}/deliveries": {
            "parameters": one,
            "get": op("ListWebhookDeliveries", "The delivery log",
                      "The last deliveries: status, attempts, next retry, the answer's status and a 200-character "
                      "excerpt.", {"200": _json(ref("WebhookDeliveries"), "Newest first.")}, "422",
                      parameters=[_param("limit", "query", integer(minimum=1, maximum=100),
                                         "How many, 1 to 100 (50).")]),
        },
    }


def paths() -> dict[str, Schema]:
    slug = _param("slug", "path", string(minLength=1, pattern="^[^/]+$"), "The team's slug.")
    return {
        **_paths_for("/api/user/webhooks", "user", "user", "A personal API key cannot manage webhooks", []),
        **_paths_for("/api/teams/{slug}/webhooks", "team", "user",
                     "Only the team's owner and admins (`team_forbidden`)", [slug]),
        **_paths_for("/api/admin/webhooks", "admin", "admin", "Admins only (`admin_required`)", []),
    }


def apply(doc_paths: dict[str, Schema], schemas: dict[str, Schema]) -> None:
    doc_paths.update(paths())
    schemas.update(SCHEMAS)

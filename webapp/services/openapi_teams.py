"""The OpenAPI description of the teams API (/api/teams, /api/admin/teams), merged into openapi_doc's document."""

from __future__ import annotations

from typing import Any

from webapp.services.openapi_doc import (
    BOOL,
    CREDITS,
    DATE,
    DATETIME,
    MICRO,
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
    or_empty,
    ref,
    string,
)

Schema = dict[str, Any]
TAG = "Teams"
ADMIN_TAG = "Admin: users"
SLUG_PATTERN = "^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
AMOUNT_IN: Schema = {"type": ["number", "string"],
                     "description": "A decimal with at most 6 decimal places, from 0 to 1,000,000,000."}

SCHEMAS: dict[str, Schema] = {
    "Team": obj({
        "id": UUID, "name": string(), "slug": string(pattern=SLUG_PATTERN),
        "role": nullable(string(enum=["owner", "admin", "member"],
                                description="Your role (null: a site admin looking at a team they are not in).")),
        "balance": CREDITS, "members": integer(), "routing": {"type": "object", "description": "The team's "
                                                             "default routing (see TeamRouting)."},
        "created_at": DATETIME,
    }),
    "TeamEnvelope": obj({"team": ref("Team")}),
    "TeamList": obj({"teams": array(ref("Team")),
                     "default_team": nullable(string("The slug of your default team (null: personal)."))}),
    "TeamCreate": obj({"name": string(minLength=1, maxLength=100, pattern=NO_NUL),
                       "slug": string(pattern=SLUG_PATTERN, minLength=2, maxLength=40)}),
    "TeamRename": obj({"name": string(minLength=1, maxLength=100, pattern=NO_NUL)}),
    "TeamMember": obj({
        "user_id": UUID, "email": nullable(string()), "role": string(enum=["owner", "admin", "member"]),
        "monthly_credit_cap": nullable(CREDITS),
        "month_spent": nullable(CREDITS),
        "joined_at": DATETIME,
    }),
    "TeamMembers": obj({"members": array(ref("TeamMember"))}),
    "TeamRole": obj({"role": string(enum=["owner", "admin", "member"])}),
    "TeamCap": obj({"monthly_credit_cap": {"anyOf": [AMOUNT_IN, {"type": "null"}]}}),
    "TeamTransfer": obj({"user_id": UUID}),
    "TeamInvitation": obj({
        "id": UUID, "role": string(enum=["admin", "member"]),
        "status": string(enum=["open", "used", "revoked", "expired"]),
        "expires_at": DATETIME, "used_at": nullable(DATETIME), "revoked_at": nullable(DATETIME),
        "created_at": DATETIME,
    }),
    "TeamInvitations": obj({"invitations": array(ref("TeamInvitation"))}),
    "TeamInvitationCreate": obj({"role": string(enum=["admin", "member"]),
                                 "expires_in_days": integer(minimum=1, maximum=30)}, []),
    "TeamInvitationCreated": obj({"invitation": ref("TeamInvitation"),
                                  "token": string("The invitation token, shown once (sbt_...)."),
                                  "warning": string()}),
    "TeamJoin": obj({"token": string(maxLength=200, pattern=NO_NUL)}),
    "TeamDefault": obj({"team": nullable(string("A team slug; empty or null: personal.",
                                                pattern="^(?:[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?)?$"))}),
    "TeamDefaultSaved": obj({"default_team": nullable(string())}),
    "TeamLedgerEntry": obj({
        "id": integer(), "kind": string(enum=["grant", "deduct", "reserve", "settle", "refund", "shortfall"]),
        "delta": CREDITS, "balance_after": CREDITS, "user_id": nullable(UUID), "request_id": nullable(UUID),
        "reason": string(), "uncollected": nullable(CREDITS), "created_at": DATETIME,
    }),
    "TeamWallet": obj({"balance": CREDITS, "balance_micro": MICRO, "entries": array(ref("TeamLedgerEntry")),
                       "next_before": nullable(integer())}),
    "TeamKey": obj({
        "provider": nullable(string()), "last4": string(), "base_url": nullable(string()), "enabled": BOOL,
        "added_by": nullable(UUID), "added_by_email": nullable(string()), "created_at": DATETIME,
    }, description="A team BYOK key: never the key itself."),
    "TeamKeys": obj({"keys": array(ref("TeamKey"))}),
    "TeamKeyEnvelope": obj({"key": ref("TeamKey")}),
    "TeamKeyPut": obj({"api_key": string(minLength=8, maxLength=500, pattern=r"^\s*[!-~]{8,500}\s*$"),
                       "base_url": nullable(string(maxLength=500, pattern=NO_NUL))}, ["api_key"]),
    "TeamRouting": obj({
        "provider_priorities": array(string(), maxItems=50), "fallbacks_enabled": BOOL,
        "allow_dearer_fallbacks": BOOL, "default_provider": nullable(string()),
        "task_overrides": {"type": "object", "additionalProperties": obj({"provider": string(), "model": string()})},
    }, [], description="Fields left out are not set: members keep their own for those."),
    "TeamRoutingEnvelope": obj({"routing": {"type": "object"}}),
    "TeamMemberUsage": obj({"user_id": UUID, "email": nullable(string()), "requests": integer(),
                            "tokens_in": integer(), "tokens_out": integer(), "credits": CREDITS}),
    "TeamUsage": obj({"from": DATE, "to": DATE, "members": array(ref("TeamMemberUsage"))}),
    "AdminTeamList": obj({"teams": array(ref("Team")), "total": integer()}),
    "AdminTeamDetail": obj({"team": ref("Team"), "members": array(ref("TeamMember"))}),
    "AdminTeamGrant": obj({"amount": AMOUNT_IN, "reason": string(maxLength=500, pattern=NO_NUL)}, ["amount"]),
    "AdminTeamGranted": obj({"balance": CREDITS, "balance_micro": MICRO}),
    "AdminTeamUsageRow": obj({"team_id": nullable(UUID), "slug": nullable(string()), "name": nullable(string()),
                              "requests": integer(), "tokens_in": integer(), "tokens_out": integer(),
                              "credits": CREDITS, "credits_micro": MICRO, "errors": integer()},
                             description="One team's totals (team_id null: requests billed to users personally)."),
    "AdminTeamUsage": obj({"from": DATE, "to": DATE, "teams": array(ref("AdminTeamUsageRow"))}),
}


def paths() -> dict[str, Schema]:
    errs = ("401", "503")
    slug = _param("slug", "path", string(minLength=1, pattern="^[^/]+$"), "The team's slug.")
    user = _param("user_id", "path", string(minLength=1, pattern="^[^/]+$"), "A member's user id (UUID).")
    not_found = _json(ref("ApiError"), "No such team that you belong to (`team_not_found`), or no such member "
                                       "(`member_not_found`).")
    forbidden = _json(ref("ApiError"), "Your role does not allow it (`team_forbidden`), or a personal API key "
                                       "(`api_key_forbidden`).")
    conflict = _json(ref("ApiError"), "`team_owner_required`: a team keeps exactly one owner.")
    ok204 = {"204": {"description": "Done."}}

    def write(op_id: str, summary: str, description: str, ok: dict[str, Schema], body: Schema | None = None,
              extra: tuple[str, ...] = ()) -> Schema:
        return _op(op_id, TAG, summary, description, "user",
                   {**ok, "403": forbidden, "404": not_found, "409": conflict, **_errors(*errs, "413", "422", *extra)},
                   body=body)

    def read(op_id: str, summary: str, description: str, ok: dict[str, Schema],
             parameters: list[Schema] | None = None) -> Schema:
        return _op(op_id, TAG, summary, description, "user",
                   {**ok, "403": forbidden, "404": not_found, **_errors(*errs, "422")}, parameters=parameters)

    return {
        "/api/teams": {
            "get": _op("listTeams", TAG, "Your teams", "Teams you belong to, with your role and each balance.",
                       "user", {"200": _json(ref("TeamList"), "Your teams."), **_errors(*errs)}),
            "post": _op("createTeam", TAG, "Create a team", "You become its owner.", "user",
                        {"201": _json(ref("TeamEnvelope"), "The team."), "403": forbidden,
                         "409": _json(ref("ApiError"), "`slug_taken` or `too_many_teams`."),
                         **_errors(*errs, "413", "422")},
                        body=_body(ref("TeamCreate"), "Name and slug.")),
        },
        "/api/teams/join": {
            "post": _op("joinTeam", TAG, "Accept an invitation", "Single use: the token stops working once used.",
                        "user",
                        {"200": _json(ref("TeamEnvelope"), "The team joined."),
                         "400": _json(ref("ApiError"), "`invitation_invalid` (used, revoked, expired or unknown), "
                                                       "or not JSON."),
                         "403": forbidden, "409": _json(ref("ApiError"), "`already_a_member`."),
                         **_errors(*errs, "413", "422")},
                        body=_body(ref("TeamJoin"), "The invitation token.")),
        },
        "/api/teams/default": {
            "put": write("setDefaultTeam", "Your default team",
                         "Requests with no X-Switchboard-Team and no team-bound API key bill this team (null: "
                         "personal).", {"200": _json(ref("TeamDefaultSaved"), "Saved.")},
                         _body(ref("TeamDefault"), "A team slug or null.")),
        },
        "/api/teams/{slug}": {
            "parameters": [slug],
            "get": read("getTeam", "One of your teams", "404 for a team you are not in.",
                        {"200": _json(ref("TeamEnvelope"), "The team.")}),
            "patch": write("renameTeam", "Rename a team", "Owners and admins.",
                           {"200": _json(ref("TeamEnvelope"), "The team.")}, _body(ref("TeamRename"), "The name.")),
        },
        "/api/teams/{slug}/members": {
            "parameters": [slug],
            "get": read("listTeamMembers", "Members", "Roles, caps, and this month's team spending (owners and "
                        "admins: everyone's; a member: their own).", {"200": _json(ref("TeamMembers"), "Members.")}),
        },
        "/api/teams/{slug}/members/{user_id}": {
            "parameters": [slug, user],
            "delete": write("removeTeamMember", "Remove a member",
                            "Owners remove anyone but themselves, admins members only. Refused on their next "
                            "request (`not_a_team_member`).", ok204),
        },
        "/api/teams/{slug}/members/{user_id}/role": {
            "parameters": [slug, user],
            "put": write("setTeamRole", "Set a member's role", "admin or member; ownership moves by transfer.",
                         {"200": _json(ref("TeamMembers"), "Members.")}, _body(ref("TeamRole"), "The role.")),
        },
        "/api/teams/{slug}/members/{user_id}/cap": {
            "parameters": [slug, user],
            "put": write("setTeamMemberCap", "Set a member's monthly cap",
                         "Owners and admins; enforced in the reservation under the team wallet's lock.",
                         {"200": _json(ref("TeamMembers"), "Members.")}, _body(ref("TeamCap"), "Credits or null.")),
        },
        "/api/teams/{slug}/leave": {
            "parameters": [slug],
            "post": write("leaveTeam", "Leave a team", "The owner transfers ownership first.", ok204),
        },
        "/api/teams/{slug}/transfer": {
            "parameters": [slug],
            "post": write("transferTeam", "Transfer ownership", "The owner becomes an admin.",
                          {"200": _json(ref("TeamMembers"), "Members.")},
                          _body(ref("TeamTransfer"), "The new owner.")),
        },
        "/api/teams/{slug}/invitations": {
            "parameters": [slug],
            "get": read("listTeamInvitations", "Invitations", "Owners and admins; never the tokens.",
                        {"200": _json(ref("TeamInvitations"), "Invitations.")}),
            "post": write("createTeamInvitation", "Invite", "A single-use link token, shown once.",
                          {"201": _json(ref("TeamInvitationCreated"), "The invitation and its token.")},
                          _body(ref("TeamInvitationCreate"), "Role and expiry.", required=False)),
        },
        "/api/teams/{slug}/invitations/{invitation_id}": {
            "parameters": [slug, _param("invitation_id", "path", string(minLength=1, pattern="^[^/]+$"),
                                        "The invitation's id.")],
            "delete": write("revokeTeamInvitation", "Revoke an invitation", "Owners and admins.", ok204),
        },
        "/api/teams/{slug}/wallet": {
            "parameters": [slug],
            "get": read("getTeamWallet", "Wallet and ledger",
                        "Balance and one ledger page, newest first (members: grants and their own rows).",
                        {"200": _json(ref("TeamWallet"), "The wallet.")},
                        parameters=[_param("limit", "query", or_empty(integer(minimum=1, maximum=100)),
                                           "Entries per page, 1 to 100 (25)."),
                                    _param("before", "query", or_empty(integer(minimum=1, maximum=2**63 - 1)),
                                           "Only entries older than this id.")]),
        },
        "/api/teams/{slug}/keys": {
            "parameters": [slug],
            "get": read("listTeamKeys", "Team BYOK keys", "Provider, last 4 and who added each; never the key.",
                        {"200": _json(ref("TeamKeys"), "Keys.")}),
        },
        "/api/teams/{slug}/keys/{provider}": {
            "parameters": [slug, _param("provider", "path", string(minLength=1, pattern="^[^/]+$"),
                                        "A provider slug.")],
            "put": write("putTeamKey", "Store a team key", "Owners and admins; encrypted, bound to the team.",
                         {"200": _json(ref("TeamKeyEnvelope"), "The key (last 4 only).")},
                         _body(ref("TeamKeyPut"), "The key.")),
            "delete": write("deleteTeamKey", "Delete a team key", "Owners and admins.", ok204),
        },
        "/api/teams/{slug}/routing": {
            "parameters": [slug],
            "get": read("getTeamRouting", "Team routing", "What members inherit when billed to the team.",
                        {"200": _json(ref("TeamRoutingEnvelope"), "The routing.")}),
            "put": write("putTeamRouting", "Set team routing", "Owners and admins; replaces the whole routing.",
                         {"200": _json(ref("TeamRoutingEnvelope"), "The routing.")},
                         _body(ref("TeamRouting"), "The routing.")),
        },
        "/api/teams/{slug}/api-keys/{key_id}": {
            "parameters": [slug, _param("key_id", "path", string(minLength=1, pattern="^[^/]+$"),
                                        "One of your personal API keys' id.")],
            "put": write("bindApiKeyToTeam", "Bind an API key to the team",
                         "Requests with that key bill the team.", ok204),
            "delete": write("unbindApiKeyFromTeam", "Unbind an API key", "The key bills you again.", ok204),
        },
        "/api/teams/{slug}/usage": {
            "parameters": [slug],
            "get": read("getTeamUsage", "Usage per member",
                        "Requests, tokens and credits billed to the team per member (owners and admins: "
                        "everyone; a member: themselves).", {"200": _json(ref("TeamUsage"), "Usage.")},
                        parameters=[_param("from", "query", or_empty(DATE), "First day."),
                                    _param("to", "query", or_empty(DATE), "Last day.")]),
        },
        "/api/admin/teams": {
            "get": _op("adminListTeams", ADMIN_TAG, "Teams", "Every team, newest first.", "admin",
                       {"200": _json(ref("AdminTeamList"), "Teams."), **_errors("401", "403", "422", "503")},
                       parameters=[_param("q", "query", string(maxLength=100, pattern=NO_NUL),
                                          "Part of a slug or name."),
                                   _param("limit", "query", or_empty(integer(minimum=1, maximum=200)), "1 to 200."),
                                   _param("offset", "query", or_empty(integer(minimum=0, maximum=1000000)),
                                          "Rows to skip.")]),
        },
        "/api/admin/teams/{slug}": {
            "parameters": [slug],
            "get": _op("adminGetTeam", ADMIN_TAG, "A team", "With its members.", "admin",
                       {"200": _json(ref("AdminTeamDetail"), "The team."), **_errors("401", "403", "404", "503")}),
        },
        "/api/admin/analytics/teams": {
            "get": _op("adminTeamAnalytics", "Admin: reports", "Analytics by team",
                       "Requests, tokens, credits and errors per team billed over a range of days.", "admin",
                       {"200": _json(ref("AdminTeamUsage"), "Totals per team."),
                        **_errors("401", "403", "422", "503")},
                       parameters=[_param("from", "query", or_empty(DATE), "First day (default: 29 days before "
                                          "`to`)."),
                                   _param("to", "query", or_empty(DATE), "Last day (default: today, UTC).")]),
        },
        "/api/admin/teams/{slug}/credits": {
            "parameters": [slug],
            "post": _op("adminGrantTeamCredits", ADMIN_TAG, "Grant credits to a team",
                        "Audited (`team.credits.grant`).", "admin",
                        {"200": _json(ref("AdminTeamGranted"), "The new balance."),
                         **_errors("401", "403", "404", "413", "422", "503")},
                        body=_body(ref("AdminTeamGrant"), "Amount and reason.")),
        },
    }

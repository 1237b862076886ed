"""The /v1/chat/completions path: plan the routes, reserve credits, forward with fallback, settle, log.

Member mode reserves the worst case (prompt tokens + max_tokens at the dearest candidate route) before
forwarding and settles on the actual usage; BYOK never touches credits. A receipt travels with every answer."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from webapp.config import Settings
from webapp.crypto import KeyRing
from webapp.db import ApiKeyClaims, Database, check_principal, principal_ids
from webapp.errors import AppError, PaymentRequired, RateLimited
from webapp.notify.events import KeyFailures
from webapp.providers import get_adapter
from webapp.providers.base import UpstreamFailure, UpstreamStream
from webapp.providers.sse import DONE, format_chunk
from webapp.repos import context as context_repo
from webapp.repos.api_keys import KeyScope
from webapp.repos.request_logs import RequestLog
from webapp.services import budget, chat_request, credits, router, tokens
from webapp.services.catalog import CatalogCache
from webapp.services.engines import EngineHealth
from webapp.services.gateway_parts import (
    ChatResult,
    Receipt,
    _StreamBody,
    client_error,
    delivered_text,
    receipt_comment,
    team_refused,
    usage_field,
)
from webapp.services.logwriter import LogWriter
from webapp.services.pricing import TokenSplit, charge, token_split

log = logging.getLogger("switchboard.gateway")
_HELD_MAX = 4096  # callers whose last context a worker keeps (a guess to price from; never trusted unchecked)


def _loggable_key_source(source: str | None) -> str | None:
    return source if source in {"admin_db", "admin_env", "byok_header", "byok_stored"} else None


@dataclass(frozen=True)
class _Pricing:
    plan: router.Plan  # the routes that fit
    priced: list[budget.Priced]
    least: int
    most: int
    tokens_in: int
    allow_dearer: bool


@dataclass(frozen=True)
class _Guess:
    plan: router.Plan
    pricing: _Pricing
    ask: context_repo.ReserveAsk
    held: tuple[str, context_repo.UserContext]  # the context (and its fingerprint) the guess was made in


class Gateway:
    def __init__(self, settings: Settings, db: Database, keyring: KeyRing, catalog: CatalogCache,
                 logs: LogWriter) -> None:
        self.settings, self.db, self.keyring, self.catalog, self.logs = settings, db, keyring, catalog, logs
        self.engines = EngineHealth(settings.engine_probe_seconds)  # keyless local engines: answering now?
        self.key_failures = KeyFailures(db)  # issue 16: stored keys refused with 401/403 -> outbox event
        # Per caller, the context of their last request and its fingerprint: only a guess to price the next
        # reservation from, which Postgres checks against the context it reads in the same statement.
        self._held: dict[tuple[Any, ...], tuple[str, context_repo.UserContext, Any]] = {}

    # -- context -----------------------------------------------------------------------------------------
    def context(self, user: str | dict[str, Any], admission: context_repo.Admission | None = None,
                team: str | None = None, billing: bool = False) -> tuple[context_repo.UserContext, Any]:
        """The user's context; Unauthorized when the user is gone or banned or (given the claims) the token's
        session has ended, checked in the same round trip, before any admission is counted. With a personal API
        key's claims, that round trip resolves the key to its owner (and fills the claims)."""
        begun, catalog = self._begin(user, admission, team, billing)
        return begun.context, catalog

    @staticmethod
    def _caller(user: str | dict[str, Any], team: str | None, billing: bool) -> tuple[Any, ...]:
        if isinstance(user, ApiKeyClaims):
            return ("key", user.digest, team, billing)
        user_id, session_id = principal_ids(user) if isinstance(user, dict) else (str(user), None)
        return ("token", user_id, session_id, team, billing)

    def _begin(self, user: str | dict[str, Any], admission: context_repo.Admission | None, team: str | None,
               billing: bool, guess: _Guess | None = None) -> tuple[context_repo.Begun, Any]:
        caller = self._caller(user, team, billing)
        key = user if isinstance(user, ApiKeyClaims) else None
        user_id, session_id = (None, None) if key is not None else caller[1:3]

        def run() -> context_repo.Begun:
            with self.db.service_statement() as conn:
                return context_repo.begin(conn, user_id, admission, session_id,  # type: ignore[arg-type]
                                          key.digest if key is not None else None, team, billing,
                                          guess.held if guess else None, guess.ask if guess else None)

        # Safe to repeat when the outcome is unknown (connection killed mid-transaction): a read, gateway_admit,
        # whose stream-slot insert tolerates its own request id, and a reservation idempotent by request id.
        begun = credits.retry(run)
        ctx = begun.context
        if key is not None:
            key.accept(ctx.principal)
        else:
            check_principal(ctx.principal)
        catalog = self.catalog.get(ctx.catalog_version)
        self._hold(caller, begun, catalog)
        return begun, catalog

    def _hold(self, caller: tuple[Any, ...], begun: context_repo.Begun, catalog: Any) -> None:
        if len(self._held) >= _HELD_MAX and caller not in self._held:
            with contextlib.suppress(KeyError, StopIteration, RuntimeError):  # another thread evicted it first
                del self._held[next(iter(self._held))]
        self._held[caller] = (begun.fingerprint, begun.context, catalog)

    def _admit(self, user: str | dict[str, Any], request_id: str, stream: bool, team: str | None = None,
               guess: _Guess | None = None) -> tuple[context_repo.Begun, Any]:
        s = self.settings
        admission = context_repo.Admission(s.rate_limit_per_minute, s.max_concurrent_streams,
                                           s.stream_stale_seconds, request_id if stream else None)
        begun, catalog = self._begin(user, admission, team, True, guess)
        ctx = begun.context
        verdict = ctx.admit or {}
        if verdict.get("ok") and ctx.team_refusal:
            if stream:
                self._release_stream(request_id)
            raise team_refused(ctx.team_refusal)
        if not verdict.get("ok"):
            retry = str(verdict.get("retry_after", 1))
            if verdict.get("reason") == "streams":
                raise RateLimited(f"Too many streams at once (at most {s.max_concurrent_streams}).",
                                  code="too_many_streams", headers={"Retry-After": retry})
            raise RateLimited(f"Too many requests (at most {s.rate_limit_per_minute} a minute).",
                              code="rate_limited", headers={"Retry-After": retry})
        return begun, catalog

    def _release_slot(self, receipt: Receipt) -> None:
        if receipt.holds_stream_slot:
            receipt.holds_stream_slot = False
            self._release_stream(receipt.request_id)

    def _release_stream(self, request_id: str) -> None:
        def run() -> None:
            with self.db.service_statement() as conn:
                context_repo.release_stream(conn, request_id)  # type: ignore[arg-type]

        try:
            credits.retry(run)  # an idempotent delete: retried like settle and refund
        except Exception as exc:  # a stale slot expires by itself after stream_stale_seconds
            log.error("releasing stream slot %s failed: %s", request_id, type(exc).__name__)

    def models(self, claims: dict[str, Any], team: str | None = None) -> list[dict[str, Any]]:
        """What this user can call right now, in their mode (with an API key: the key's mode and allow-list;
        billed to a team: with the team's keys)."""
        ctx, catalog = self.context(claims, None, team, billing=True)
        if ctx.team_refusal:
            raise team_refused(ctx.team_refusal)
        mode = router.effective_mode(ctx)
        scope = ctx.api_key
        key_slugs = {catalog.by_id[k.provider_id].slug for k in ctx.keys if k.provider_id in catalog.by_id}
        out = []
        for slug, provider in catalog.providers.items():
            if not router.pin_usable(provider):
                continue
            if mode == "byok" and (slug not in key_slugs or not provider.byok_allowed):
                continue
            if mode == "member" and not self.member_ready(provider, catalog):
                continue
            if mode == "member" and not self.engine_up(provider, catalog):
                continue
            for model in catalog.models_of(slug):
                if router.offered_rate(catalog, slug, model) is None:
                    continue
                if scope is not None and not scope.allows(slug, model):
                    continue
                out.append({"id": f"{slug}/{model}", "object": "model", "created": 0, "owned_by": slug})
        return out

    def model(self, claims: dict[str, Any], model_id: str, team: str | None = None) -> dict[str, Any] | None:
        """One entry of `models` (GET /v1/models/{id}): a `provider/model` id as listed, or a bare model id that a
        listed provider offers (owned by the first such provider in the list); None when the caller cannot use it."""
        listed = self.models(claims, team)
        for entry in listed:
            if entry["id"] == model_id:
                return entry
        for entry in listed:
            if entry["id"].split("/", 1)[1] == model_id:
                return {**entry, "id": model_id}
        return None

    def member_ready(self, provider: Any, catalog: Any) -> bool:
        return router.member_ready(provider, catalog, self.settings)

    def engine_up(self, provider: Any, catalog: Any) -> bool:
        """A keyless local engine (no admin key, loopback or private address) counts only while it answers; a
        provider with a key is not probed (its upstream's health shows in the request log instead)."""
        if router.needs_key(provider, catalog, self.settings):
            return True
        return self.engines.is_up(provider.base_url)

    def planner(self, ctx: context_repo.UserContext, catalog: Any) -> Any:
        """For quotes: (model, task, prompt, max_tokens) -> (the plan `chat` would make in this context, what it
        would reserve in micro-credits for that prompt as one user message with that max_tokens, or None when the
        prompt fits no route's context window). Refusals are the gateway's own errors."""
        allow = ctx.preferences.allow_dearer_fallbacks

        def run(model: str, task: str | None, prompt: str, max_tokens: int) -> tuple[router.Plan, int | None]:
            plan = router.plan(model, task, None, ctx, catalog, self.settings, self.keyring)
            if plan.mode != "member":
                return plan, 0
            limit = min(max_tokens, self.settings.max_tokens_ceiling)
            req = chat_request.parse({"model": model, "messages": [{"role": "user", "content": prompt}],
                                      "max_tokens": limit}, task, max_messages=self.settings.max_messages,
                                     max_tokens_ceiling=self.settings.max_tokens_ceiling)
            fitting, _ = self._fitting(req, plan, allow)
            priced = [budget.Priced(r.rate, r.provider.credit_multiplier, lim) for r, lim in fitting if r.rate]
            if not priced:
                return plan, None
            return plan, budget.reservation_bounds(priced, 1, True, dearest=allow)[1]

        return run

    # -- chat --------------------------------------------------------------------------------------------
    def chat(self, claims: dict[str, Any], body: Any, task_header: str | None,
             byok: router.ByokHeaders | None, team: str | None = None, kind: Any = None) -> ChatResult:
        """One chat completion. `team`: the slug of X-Switchboard-Team (else the key's team or the user's default
        team bills it, when the user is still a member; 403 `not_a_team_member` otherwise)."""
        request_id = str(uuid.uuid4())
        try:
            return self._chat(request_id, claims, body, task_header, byok, team, kind)
        except AppError as exc:  # errors carry their request id too, so a user can quote it
            exc.headers.setdefault("X-Request-Id", request_id)
            raise

    def _chat(self, request_id: str, claims: dict[str, Any], body: Any, task_header: str | None,
              byok: router.ByokHeaders | None, team: str | None = None, kind: Any = None) -> ChatResult:
        started = time.monotonic()
        req = chat_request.parse(body, task_header, max_messages=self.settings.max_messages,
                                 max_tokens_ceiling=self.settings.max_tokens_ceiling)
        # claims: the session is checked too; an API key is resolved to its owner in the same round trip. When
        # this worker holds the caller's context, the reservation priced from it travels in that round trip too,
        # and Postgres makes it only if the context it reads there is still exactly that one.
        guess = self._guess(claims, team, req, byok, request_id)
        begun, catalog = self._admit(claims, request_id, req.stream, team, guess)
        ctx = begun.context
        user_id = str(claims["sub"])
        priced_in_begin = guess is not None and begun.reserved is not None
        try:
            plan = guess.plan if guess is not None and priced_in_begin else router.plan(
                req.model, req.task, byok, ctx, catalog, self.settings, self.keyring)
        except BaseException:
            if req.stream:
                self._release_stream(request_id)
            raise
        receipt = Receipt(request_id, plan.mode, api_key_id=ctx.api_key.id if ctx.api_key else None,
                          team=ctx.team.slug if ctx.team else None, team_id=ctx.team.id if ctx.team else None,
                          holds_stream_slot=req.stream, kind=kind)
        try:
            if plan.mode == "member" and guess is not None and priced_in_begin:
                plan, limits = self._reserved(req, guess.pricing, begun.reserved or {}, receipt)
            elif plan.mode == "member":
                plan, limits = self._reserve(user_id, req, plan, receipt, ctx.preferences.monthly_credit_cap,
                                             ctx.api_key, ctx.preferences.allow_dearer_fallbacks)
            else:
                limits = [None] * len(plan.routes)  # the user's own key: the body is theirs to shape
                receipt.tokens_in = budget.prompt_tokens(req.body, req.messages, plan.routes[0].model)
            if req.stream:
                return self._stream(user_id, req, plan, limits, receipt, started)
            return self._complete(user_id, req, plan, limits, receipt, started)
        except AppError as exc:
            if receipt.fallback_path:  # what was tried, in order: a failed answer says where it failed
                exc.headers["X-Switchboard-Fallback"] = " > ".join(receipt.fallback_path)
            self._fail(user_id, req, plan, receipt, started, exc)
            raise
        except BaseException:
            self._fail(user_id, req, plan, receipt, started, None)
            raise

    def _guess(self, claims: dict[str, Any], team: str | None, req: chat_request.ChatRequest,
               byok: router.ByokHeaders | None, request_id: str) -> _Guess | None:
        """The plan and the reservation this request would get in the context this worker last saw for the caller
        (None when it holds none, or that context plans no member route, or refuses the request: then the usual
        two statements decide, from the context read fresh)."""
        held = self._held.get(self._caller(claims, team, True))
        if held is None:
            return None
        fingerprint, ctx, catalog = held
        try:
            plan = router.plan(req.model, req.task, byok, ctx, catalog, self.settings, self.keyring)
            if plan.mode != "member":
                return None
            pricing = self._price(req, plan, ctx.preferences.allow_dearer_fallbacks)
        except Exception:  # a guess never fails a request: the usual path decides, and raises what it raises
            return None
        return _Guess(plan, pricing, context_repo.ReserveAsk(fingerprint, request_id, pricing.least, pricing.most),
                      (fingerprint, ctx))

    def _price(self, req: chat_request.ChatRequest, plan: router.Plan, allow_dearer: bool) -> _Pricing:
        """Member mode: the routes that fit, priced, and the reservation's bounds (AppError when none fits)."""
        budget.refuse_unpriceable(req.body)
        fitting, counted = self._fitting(req, plan, allow_dearer)
        if not fitting:
            window = max(r.rate.context_window for r in plan.routes if r.rate is not None)
            raise AppError(f"The prompt (about {min(counted.values())} tokens) does not fit the model's context window "
                           f"({window} tokens).", code="context_length_exceeded", status=400, field="messages")
        plan = router.Plan([r for r, _ in fitting], plan.mode, plan.task, plan.requested_model)
        priced = [budget.Priced(r.rate, r.provider.credit_multiplier, lim) for r, lim in fitting if r.rate]
        least, most = budget.reservation_bounds(priced, req.n, req.max_tokens is not None, dearest=allow_dearer)
        return _Pricing(plan, priced, least, most, counted[tokens.encoding_name_for_model(plan.routes[0].model)],
                        allow_dearer)

    def _reserve(self, user_id: str, req: chat_request.ChatRequest, plan: router.Plan, receipt: Receipt,
                 cap: int | None, key: KeyScope | None = None,
                 allow_dearer: bool = False) -> tuple[router.Plan, list[int | None]]:
        """Member mode: price every route, reserve between a short answer and the full limit (the full limit when
        the client set one), and give each route the output limit the reservation pays for. Unless the user
        allows dearer fallbacks, the reservation is for the first route that fits and no fallback costs more."""
        pricing = self._price(req, plan, allow_dearer)
        receipt.tokens_in = pricing.tokens_in
        try:
            receipt.reserved, receipt.limited_by = credits.reserve_flex(
                self.db, user_id, receipt.request_id, pricing.least, pricing.most, cap,
                key.id if key else None, key.monthly_credit_cap if key else None, team=receipt.team_id)
            receipt.holds_reservation = True
        except credits.NotTeamMember:
            raise team_refused("not_a_team_member") from None
        except credits.Unaffordable as exc:
            raise self._refused(exc, req.n, pricing) from None
        return pricing.plan, list(budget.output_limits(receipt.reserved, pricing.priced, req.n))

    def _reserved(self, req: chat_request.ChatRequest, pricing: _Pricing, outcome: dict[str, Any],
                  receipt: Receipt) -> tuple[router.Plan, list[int | None]]:
        """The reservation public.gateway_begin made (or refused) for the guessed pricing."""
        receipt.tokens_in = pricing.tokens_in
        if "refused" in outcome:
            try:
                credits.raise_refusal(str(outcome["refused"]), outcome.get("available"), receipt.team_id)
            except credits.NotTeamMember:
                raise team_refused("not_a_team_member") from None
            except credits.Unaffordable as exc:
                raise self._refused(exc, req.n, pricing) from None
        receipt.reserved, receipt.limited_by = int(outcome["amount"]), outcome.get("limited_by")
        receipt.holds_reservation = True
        return pricing.plan, list(budget.output_limits(receipt.reserved, pricing.priced, req.n))

    def _refused(self, exc: credits.Unaffordable, n: int, pricing: _Pricing) -> AppError:
        reserved_for = pricing.priced if pricing.allow_dearer else pricing.priced[:1]
        return self._unaffordable(exc, n, budget.largest_fit(exc.available, reserved_for, n))

    def _fitting(self, req: chat_request.ChatRequest, plan: router.Plan, allow_dearer: bool
                 ) -> tuple[list[tuple[router.Route, budget.RouteLimit]], dict[str, int]]:
        """Member mode: the routes whose context window holds the prompt, each with its output limit before money,
        and the prompt counted per encoding. Unless dearer fallbacks are allowed, the first fitting route is what
        is reserved for, so no fallback that costs more than it stays."""
        counted: dict[str, int] = {}
        fitting: list[tuple[router.Route, budget.RouteLimit]] = []
        for route in plan.routes:
            encoding = tokens.encoding_name_for_model(route.model)
            if encoding not in counted:
                counted[encoding] = budget.prompt_tokens(req.body, req.messages, route.model)
            assert route.rate is not None
            limit = budget.route_limit(req.max_tokens, self.settings.reserve_default_max_tokens, route.rate,
                                       budget.reserved_prompt(counted[encoding]))
            if limit is not None:
                fitting.append((route, limit))
        if fitting and not allow_dearer:
            fitting = [f for f in fitting if f is fitting[0] or not router.dearer(f[0], fitting[0][0])]
        return fitting, counted

    @staticmethod
    def _unaffordable(exc: credits.Unaffordable, n: int, fits: int) -> AppError:
        left = credits.format_credits(exc.available)
        where = {"insufficient_credits": "the team's balance" if exc.team else "your balance",
                 "api_key_cap_reached": "this API key's monthly cap",
                 "team_member_cap_reached": "your monthly cap in this team"}.get(exc.code, "your monthly cap")
        if fits >= 1:
            hint = f"max_tokens ≤ {fits} would fit" + (f" with n={n}" if n > 1 else "") + "."
        else:
            hint = "not even the prompt fits; shorten it, add credits, or use your own key (BYOK)."
        err = PaymentRequired(f"Not enough credits: {where} has {left} credits left; {hint}", code=exc.code)
        err.headers["X-Switchboard-Max-Tokens-Fit"] = str(max(fits, 0))
        return err

    def _upstream_body(self, req: chat_request.ChatRequest, route: router.Route,
                       limit: int | None) -> dict[str, Any]:
        body = dict(req.body)
        body["model"] = route.model
        meta = body.get("metadata")
        if isinstance(meta, dict) and "task" in meta:
            rest = {k: v for k, v in meta.items() if k != "task"}
            if rest:
                body["metadata"] = rest
            else:
                body.pop("metadata")
        if req.stream:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        if limit is not None:  # member mode: the reservation bounds what the provider may produce
            body = budget.write_limit(body, limit, route.provider.api_style, route.target.base_url)
        return body

    def _try_routes(self, req: chat_request.ChatRequest, plan: router.Plan, limits: list[int | None],
                    receipt: Receipt, stream: bool) -> Any:
        failure: UpstreamFailure | None = None
        for route, limit in zip(plan.routes, limits, strict=True):
            kind = receipt.kind
            adapter = kind.adapter(route) if kind is not None else get_adapter(route.provider.api_style)
            try:
                body = self._upstream_body(req, route, limit)
                result = adapter.open_stream(route.target, body) if stream else adapter.complete(route.target, body)
            except UpstreamFailure as exc:
                failure = exc
                receipt.fallback_path.append(f"{route.provider.slug}:{exc.status or exc.kind}")
                if exc.status in (401, 403):  # issue 16: a stored key refused -> provider_key.failing, once a day
                    self.key_failures.report_route(route, exc.status)
                if not exc.retryable:
                    break
                continue
            receipt.fallback_path.append(f"{route.provider.slug}:ok")
            self._use_route(receipt, route, limit)
            return route, result
        assert failure is not None
        raise self._client_error(failure, plan.routes, receipt.fallback_path)

    @staticmethod
    def _use_route(receipt: Receipt, route: router.Route, limit: int | None) -> None:
        receipt.provider, receipt.model, receipt.key_source = route.provider.slug, route.model, route.key_source
        receipt.multiplier = route.multiplier
        receipt.output_limit = limit

    @staticmethod
    def _client_error(failure: UpstreamFailure, routes: list[router.Route], path: list[str] | None = None) -> AppError:
        return client_error(failure, routes, path)

    def _usage(self, receipt: Receipt, req: chat_request.ChatRequest, route: router.Route, usage: Any,
               delivered: str) -> tuple[int, int]:
        t_in, t_out, receipt.usage_source = budget.settle_usage(
            usage, delivered, receipt.tokens_in, route.model, receipt.output_limit, req.n)
        split = token_split(usage, t_in, t_out)  # cached / cache-write / reasoning parts
        receipt.cached_tokens, receipt.cache_write_tokens, receipt.reasoning_tokens = (
            split.cached, split.cache_write, split.reasoning)
        return t_in, t_out

    def _complete(self, user_id: str, req: chat_request.ChatRequest, plan: router.Plan, limits: list[int | None],
                  receipt: Receipt, started: float) -> ChatResult:
        route, body = self._try_routes(req, plan, limits, receipt, stream=False)
        t_in, t_out = self._usage(receipt, req, route, body.get("usage"), delivered_text(body))
        self._finish(user_id, req, receipt, started, 200, None, route, t_in, t_out)
        body["usage"] = usage_field(body.get("usage"), t_in, t_out, receipt.usage_source)
        return ChatResult(receipt, body=body)

    def _stream(self, user_id: str, req: chat_request.ChatRequest, plan: router.Plan, limits: list[int | None],
                receipt: Receipt, started: float) -> ChatResult:
        route, upstream = self._try_routes(req, plan, limits, receipt, stream=True)
        body = _StreamBody()
        body.gen = self._relay(user_id, req, route, upstream, receipt, started, body)

        def never_started() -> None:
            upstream.close()
            self._end_stream(user_id, req, route, receipt, started, "disconnected", [], None)

        body.on_close_unstarted = never_started
        return ChatResult(receipt, stream=body)

    def _relay(self, user_id: str, req: chat_request.ChatRequest, route: router.Route, upstream: UpstreamStream,
               receipt: Receipt, started: float, body: _StreamBody) -> Iterator[bytes]:
        body.started = True
        delivered: list[str] = []
        usage: dict[str, Any] | None = None
        last_chunk: dict[str, Any] = {}
        outcome = "disconnected"
        failure: UpstreamFailure | None = None
        try:
            for chunk in upstream:
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                    if not chunk.get("choices"):
                        last_chunk = chunk
                        continue
                    if not req.include_usage:
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}) if isinstance(choice, dict) else {}
                    if delta.get("content"):
                        delivered.append(str(delta["content"]))
                    for call in delta.get("tool_calls") or []:
                        if isinstance(call, dict):
                            delivered.append(str((call.get("function") or {}).get("arguments") or ""))
                last_chunk = chunk
                yield format_chunk(chunk)
            outcome = "completed"
        except UpstreamFailure as exc:
            outcome, failure = "upstream_failed", exc
        finally:
            upstream.close()
            if not receipt.holds_reservation:  # member mode: released by the statement that settles
                self._release_slot(receipt)
            if outcome != "completed":
                self._end_stream(user_id, req, route, receipt, started, outcome, delivered, failure)
        if failure is not None:
            err = self._client_error(failure, [route], receipt.fallback_path)
            yield format_chunk({"error": {"message": err.message, "type": err.openai_type, "param": None,
                                          "code": "upstream_stream_interrupted"}})
            yield receipt_comment(receipt)  # refunded in full: its final charge is 0
            yield DONE
            return
        t_in, t_out = self._usage(receipt, req, route, usage, "".join(delivered))
        self._finish(user_id, req, receipt, started, 200, None, route, t_in, t_out)
        if req.include_usage:
            yield format_chunk({
                "id": last_chunk.get("id", "chatcmpl-" + receipt.request_id), "object": "chat.completion.chunk",
                "created": last_chunk.get("created", int(time.time())), "model": last_chunk.get("model", route.model),
                "choices": [], "usage": {"prompt_tokens": t_in, "completion_tokens": t_out,
                                         "total_tokens": t_in + t_out,
                                         "switchboard_estimated": receipt.usage_source != "measured"},
                "switchboard": receipt.as_dict(),
            })
        else:
            # The client did not ask for usage: its final charge still travels, as an SSE comment that every
            # SSE parser (the official SDKs' included) skips.
            yield receipt_comment(receipt)
        yield DONE

    def _end_stream(self, user_id: str, req: chat_request.ChatRequest, route: router.Route, receipt: Receipt,
                    started: float, outcome: str, delivered: list[str], failure: UpstreamFailure | None) -> None:
        """A stream that did not complete: an upstream failure is refunded in full; a client that went away is
        billed for what was delivered to it."""
        try:
            if outcome == "upstream_failed":
                self._finish(user_id, req, receipt, started, 502, "upstream_stream_interrupted", route, None, None)
            else:
                receipt.usage_source = "estimated"
                t_out = tokens.count_text("".join(delivered), route.model)
                self._finish(user_id, req, receipt, started, 499, "client_disconnected", route, receipt.tokens_in,
                             t_out)
        except Exception as exc:
            log.error("closing stream %s failed: %s", receipt.request_id, type(exc).__name__)

    def _fail(self, user_id: str, req: chat_request.ChatRequest, plan: router.Plan, receipt: Receipt,
              started: float, exc: AppError | None) -> None:
        if not receipt.holds_reservation:  # member mode: released by the statement that refunds
            self._release_slot(receipt)
        status, code = (exc.status, exc.code) if exc else (500, "internal_error")
        if exc is None and isinstance(sys.exc_info()[1], psycopg.OperationalError):
            status, code = 503, "database_unavailable"  # what the error handler answers for it
        try:
            self._finish(user_id, req, receipt, started, status, code, None, None, None, plan.routes[0])
        except Exception as err:
            log.error("refund of %s failed: %s", receipt.request_id, type(err).__name__)

    def _finish(self, user_id: str, req: chat_request.ChatRequest, receipt: Receipt, started: float, status: int,
                error_code: str | None, route: router.Route | None, t_in: int | None, t_out: int | None,
                planned: router.Route | None = None) -> None:
        """Close the request: member mode settles (t_in/t_out given) or refunds (None) in the same transaction
        that writes the receipt row; BYOK rows go to the batching writer."""
        actual: int | None = None
        if t_in is not None and t_out is not None:
            receipt.tokens_in, receipt.tokens_out = t_in, t_out
            if receipt.mode == "member" and route is not None and route.rate is not None:
                actual = charge(t_in, t_out, TokenSplit(receipt.cached_tokens, receipt.cache_write_tokens,
                                                        receipt.reasoning_tokens), route.rate,
                                route.provider.credit_multiplier)
        row = self._row(user_id, req, receipt, started, status, error_code, route or planned, route)
        if not receipt.holds_reservation:
            self._release_slot(receipt)
            self.logs.submit(row, route.user_key_id if route else None)
            self._log_line(row)
            return
        release, receipt.holds_stream_slot = receipt.holds_stream_slot, False
        try:
            # One statement: the stream slot released, settled (or refunded) and the receipt row written.
            receipt.credits, receipt.shortfall = credits.close_logged(
                self.db, receipt.request_id, actual, dict(vars(row)), release)
        except psycopg.OperationalError:
            if release:
                self._release_stream(receipt.request_id)  # else it expires after stream_stale_seconds
            raise  # the reservation stays open; `flask credits sweep` refunds it
        except psycopg.Error as exc:
            if release:
                self._release_stream(receipt.request_id)
            # The receipt row itself was refused (e.g. its user was deleted meanwhile): close the money without
            # it and hand the row to the writer, which keeps rows the table refuses.
            log.error("settling %s with its receipt failed: %s", receipt.request_id, type(exc).__name__)
            with contextlib.suppress(psycopg.Error):
                if actual is not None:
                    receipt.credits = credits.settle(self.db, receipt.request_id, actual)
                else:
                    credits.refund(self.db, receipt.request_id)
            row.credits = receipt.credits
            self.logs.submit(row, None)
        row.credits, row.shortfall = receipt.credits, receipt.shortfall
        self._log_line(row)

    @staticmethod
    def _row(user_id: str, req: chat_request.ChatRequest, receipt: Receipt, started: float, status: int,
             error_code: str | None, used: router.Route | None, route: router.Route | None) -> RequestLog:
        return RequestLog(
            request_id=receipt.request_id, user_id=user_id, mode=receipt.mode, status=status,
            provider=receipt.provider or (used.provider.slug if used else None),
            model=receipt.model or (used.model if used else None), task=req.task,
            key_source=_loggable_key_source(receipt.key_source or (used.key_source if used else None)),
            admin_key_id=route.admin_key_id if route else None,
            tokens_in=receipt.tokens_in, tokens_out=receipt.tokens_out, usage_source=receipt.usage_source or None,
            credits=receipt.credits, multiplier=receipt.multiplier if receipt.mode == "member" else None,
            fallback_path=receipt.fallback_path, stream=req.stream, error_code=error_code,
            latency_ms=int((time.monotonic() - started) * 1000), output_limit=receipt.output_limit,
            api_key_id=receipt.api_key_id, team_id=receipt.team_id, cached_tokens=receipt.cached_tokens,
            cache_write_tokens=receipt.cache_write_tokens, reasoning_tokens=receipt.reasoning_tokens,
        )

    @staticmethod
    def _log_line(row: RequestLog) -> None:
        log.info("chat request=%s mode=%s provider=%s model=%s status=%s credits=%s shortfall=%s usage=%s path=%s "
                 "ms=%s", row.request_id, row.mode, row.provider, row.model, row.status, row.credits, row.shortfall,
                 row.usage_source, ",".join(row.fallback_path or []), row.latency_ms)

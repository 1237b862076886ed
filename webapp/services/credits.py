"""Credit maths and the reserve/settle/refund calls. Money is integer micro-credits, never floats:
credits = ceil((tokens_in x input_rate + tokens_out x output_rate) / 1000 x multiplier)."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, NoReturn, TypeVar

import psycopg

from webapp.db import Database
from webapp.errors import PaymentRequired
from webapp.repos import credits as credits_repo

MICRO = 1_000_000
RETRIES = 5


def cost(tokens_in: int, tokens_out: int, input_rate: int, output_rate: int, multiplier: Decimal) -> int:
    """Micro-credits for this usage; rates are micro-credits per 1,000 tokens. Exact decimal, rounded up."""
    raw = (Decimal(tokens_in) * input_rate + Decimal(tokens_out) * output_rate) * Decimal(multiplier) / 1000
    return int(raw.to_integral_value(rounding=ROUND_CEILING))


def format_credits(micro: int) -> str:
    return f"{Decimal(micro) / MICRO:.6f}"


def credits_label(micro: int) -> str:
    """For pages: every micro-credit shown, with thousands separators ("1,234.000001")."""
    return f"{Decimal(micro) / MICRO:,.6f}"


def parse_amount(raw: object, maximum: Decimal, unit: str = "credits") -> tuple[int | None, str | None]:
    """A non-negative decimal with at most 6 decimal places, as millionths: (value, None) or (None, message).
    Every client number is hostile: bools, NaN, infinities, huge exponents and NUL are refused before arithmetic."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None, f"Enter a number of {unit}."
    text = str(raw).strip()
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        return None, f"Enter a number of {unit}, for example 10 or 2.5."
    if not value.is_finite() or value.adjusted() > 15 or value < 0 or value > maximum:
        return None, f"From 0 to {maximum:,} {unit}."
    if value != value.quantize(Decimal(1) / MICRO):
        return None, "At most 6 decimal places."
    return int(value * MICRO), None


def reserve(db: Database, user_id: str, request_id: str, amount: int, cap: int | None) -> int:
    """Reserve `amount` or raise PaymentRequired (balance short or monthly cap reached). Returns the balance.
    Idempotent by request id, so retried like settle and refund when the connection dies mid-call."""

    def run() -> int:
        with db.service_statement() as conn:
            return credits_repo.reserve(conn, user_id, request_id, amount, cap)

    try:
        return retry(run)
    except psycopg.Error as exc:
        state = getattr(exc, "sqlstate", None)
        if state == credits_repo.INSUFFICIENT:
            raise PaymentRequired(
                f"Not enough credits: this request needs up to {format_credits(amount)} credits. "
                "Lower max_tokens, add credits, or switch to your own key (BYOK).",
                code="insufficient_credits",
            ) from None
        if state == credits_repo.CAP_REACHED:
            raise PaymentRequired("This request would pass your monthly credit cap. Raise the cap in settings.",
                                  code="monthly_cap_reached") from None
        raise


T = TypeVar("T")


def retry(fn: Callable[[], T]) -> T:
    """Reserve, settle and refund (and the gateway's admission and stream-slot release) are idempotent by request
    id, so a call whose outcome is unknown (connection lost) is simply made again; a reservation left open anyway
    is closed by `flask credits sweep`."""
    for attempt in range(RETRIES):
        try:
            return fn()
        except psycopg.OperationalError:
            if attempt == RETRIES - 1:
                raise
            time.sleep(0.25 * 2 ** attempt)
    raise AssertionError("unreachable")


class Unaffordable(Exception):
    """Not even the smallest reservation fits. `available` is what the balance (or the monthly cap) had left."""

    def __init__(self, code: str, available: int, team: bool = False) -> None:
        super().__init__(code)
        self.code, self.available, self.team = code, available, team


class NotTeamMember(Exception):
    """The team wallet's reservation found the caller no longer a member (removed since the context check)."""


_UNAFFORDABLE = {credits_repo.INSUFFICIENT: "insufficient_credits", credits_repo.CAP_REACHED: "monthly_cap_reached",
                 credits_repo.KEY_CAP_REACHED: "api_key_cap_reached",
                 credits_repo.TEAM_MEMBER_CAP_REACHED: "team_member_cap_reached"}


def reserve_flex(db: Database, user_id: str, request_id: str, minimum: int, maximum: int,
                 cap: int | None, api_key_id: str | None = None, key_cap: int | None = None,
                 team: str | None = None) -> tuple[int, str | None]:
    """Reserve as much as balance, the user's cap and the API key's cap allow between `minimum` and `maximum`, in
    one locked statement. Returns (amount, what limited it: None, "balance", "monthly_cap" or "api_key_cap");
    raises Unaffordable."""

    def run() -> tuple[int, str | None]:
        with db.service_statement() as conn:
            return credits_repo.reserve_flex(conn, user_id, request_id, minimum, maximum, cap, api_key_id, key_cap,
                                             team)

    try:
        return retry(run)
    except psycopg.Error as exc:
        state = getattr(exc, "sqlstate", None)
        if state in _UNAFFORDABLE or state == credits_repo.NOT_TEAM_MEMBER:
            raise_refusal(str(state), exc.diag.message_detail, team)
        raise


def raise_refusal(state: str, detail: Any, team: str | None) -> NoReturn:
    """The reservation's refusal (its SQLSTATE and DETAIL, the room left) as Unaffordable or NotTeamMember."""
    if state == credits_repo.NOT_TEAM_MEMBER:
        raise NotTeamMember() from None
    if state not in _UNAFFORDABLE:
        raise ValueError(f"not a refusal: {state}")
    raise Unaffordable(_UNAFFORDABLE[state], max(int(detail or "0"), 0), team is not None) from None


def settle_logged(db: Database, request_id: str, actual: int, receipt: dict[str, object]) -> tuple[int, int]:
    """Settle at `actual` and write the request's receipt row in the same transaction: a charge never exists
    without its receipt. Returns (charged, shortfall). Idempotent by request id, so retried."""

    def run() -> tuple[int, int]:
        with db.service_statement() as conn:
            return credits_repo.settle_logged(conn, request_id, actual, receipt)

    return retry(run)


def refund_logged(db: Database, request_id: str, receipt: dict[str, object]) -> int:
    """Refund the whole reservation and write the receipt row in the same transaction."""

    def run() -> int:
        with db.service_statement() as conn:
            return credits_repo.refund_logged(conn, request_id, receipt)

    return retry(run)


def close_logged(db: Database, request_id: str, actual: int | None, receipt: dict[str, object],
                 release_stream: bool = False) -> tuple[int, int]:
    """Settle at `actual` (None: refund in full), write the receipt row and (a stream) release its slot, in one
    transaction: a charge never exists without its receipt. Returns (charged, shortfall). Idempotent, so retried."""

    def run() -> tuple[int, int]:
        with db.service_statement() as conn:
            return credits_repo.close_logged(conn, request_id, actual, receipt, release_stream)

    return retry(run)


def settle(db: Database, request_id: str, actual: int) -> int:
    def run() -> int:
        with db.service_statement() as conn:
            return credits_repo.settle(conn, request_id, actual)

    return retry(run)


def refund(db: Database, request_id: str) -> int:
    def run() -> int:
        with db.service_statement() as conn:
            return credits_repo.refund(conn, request_id)

    return retry(run)


def sweep(db: Database, older_than_seconds: int) -> int:
    """Refund reservations still open after `older_than_seconds` (their worker died). Returns how many."""
    with db.as_service() as conn:
        rows = conn.execute("select request_id::text from public.credit_reservations where status = 'reserved'"
                            " and created_at < now() - make_interval(secs => %s)", [older_than_seconds]).fetchall()
    for (request_id,) in rows:
        refund(db, request_id)
    return len(rows)

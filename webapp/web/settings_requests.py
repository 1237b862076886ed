"""The signed-in user's Requests page (every request of a period, a keyset page at a time, each linking to its
receipt) and the CSV downloads of the settings page: usage totals and every request. Registered on the settings
blueprint, so its sign-in guard applies."""

from __future__ import annotations

from flask import Response, make_response, render_template, request
from flask_login import current_user
from jinja2_fragments.flask import render_block

from webapp.errors import ValidationError
from webapp.services import csv_export, date_ranges, usage_export, user_requests
from webapp.services import usage as usage_service
from webapp.web.settings_page import _svc, bp

TEMPLATE = "settings/requests.html"


def _api_key() -> str | None:
    """The API-key filter: anything but a key id shows every request (as the usage section does)."""
    try:
        return user_requests.parse_api_key(request.args.get("api_key", "")[:64])
    except ValidationError:
        return None


@bp.get("/settings/requests")
def requests() -> Response:
    period = date_ranges.parse(request.args, strict=False)
    errors = dict(period.errors)
    page = None
    if not errors:
        args = {k: request.args.get(k, "")[:200] for k in ("before", "after", "limit")}
        try:
            page = user_requests.page(_svc().db, current_user.claims, period, {**args, "api_key": _api_key()})
        except ValidationError as exc:  # a cursor or limit edited by hand: say so, and offer the first page
            errors = exc.errors
    ctx = {"p": page, "period": period, "errors": errors, "api_key": _api_key(),
           "range_values": date_ranges.form_values(request.args, period), "presets": date_ranges.PRESETS}
    status = 422 if errors else 200
    if request.headers.get("HX-Request"):
        return make_response(render_block(TEMPLATE, "requests", **ctx), status)
    return make_response(render_template(TEMPLATE, **ctx), status)


@bp.get("/settings/requests.csv")
def requests_csv() -> Response:
    period = date_ranges.parse(request.args)  # a bad range: the 422 error page (a download link never sends one)
    rows = user_requests.export_rows(_svc().db, current_user.claims, period, _api_key())
    return csv_export.response(rows, csv_export.filename("requests", period))


@bp.get("/settings/usage.csv")
def usage_csv() -> Response:
    period = date_ranges.parse(request.args)
    data = usage_service.summary(_svc().db, current_user.claims, period.start, period.end, ["day", "provider"],
                                 _api_key())
    return csv_export.response(usage_export.usage_rows(data), csv_export.filename("usage", period))

"""Development only: the messages the local SMTP sink received (`make run` sets MAIL_SINK_DIR), for admins.
Registered only when SWITCHBOARD_ENV=development and the sink is in use."""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, render_template

from webapp.auth.guards import admin_page_required

bp = Blueprint("dev_mail", __name__)
_NAME = re.compile(r"^[0-9T]{15}-[0-9a-f]{8}\.eml$")
LIMIT = 200


def _folder() -> Path:
    return Path(current_app.extensions["switchboard"].settings.mail_sink_dir)


def _parse(path: Path) -> EmailMessage:
    with path.open("rb") as fh:
        return BytesParser(policy=policy.default).parse(fh)  # type: ignore[return-value]


@bp.get("/admin/dev/mail")
@admin_page_required
def index() -> Any:
    files = sorted((p for p in _folder().glob("*.eml") if _NAME.match(p.name)), reverse=True)[:LIMIT]
    rows = []
    for path in files:
        msg = _parse(path)
        rows.append({"name": path.name, "to": str(msg.get("To", "")), "subject": str(msg.get("Subject", "")),
                     "date": str(msg.get("Date", ""))})
    return render_template("admin/dev_mail.html", rows=rows, folder=str(_folder()), message=None)


@bp.get("/admin/dev/mail/<name>")
@admin_page_required
def show(name: str) -> Any:
    path = _folder() / name
    if not _NAME.match(name) or not path.is_file():
        abort(404)
    msg = _parse(path)
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    message = {"name": name, "headers": [(k, str(v)) for k, v in msg.items()],
               "text": text.get_content() if text is not None else "",
               "html": html.get_content() if html is not None else ""}
    return render_template("admin/dev_mail.html", rows=None, folder=str(_folder()), message=message)

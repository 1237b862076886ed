"""Email: a notice rendered from templates/email/<type>.txt and .html (the text template's first line is
`Subject: ...`), sent over SMTP as SMTP_URL says (smtps, STARTTLS, or plain to a loopback sink). The SMTP password
is never logged; failures are reported by class and reply code only."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from webapp.config import Settings, SmtpConfig

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "email"
SMTP_TIMEOUT = 30.0


class MailError(Exception):
    """A send that failed. `permanent`: the server refused for good (5xx); otherwise worth retrying."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def credits(micro: Any) -> str:
    """Micro-credits as credits with the trailing zeros dropped ("12.5", "0.000001")."""
    try:
        value = Decimal(int(micro)) / 1_000_000
    except (TypeError, ValueError):
        return "?"
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return text or "0"


def credits_label(micro: Any) -> str:
    """"1 credit", "2.5 credits"."""
    shown = credits(micro)
    return f"{shown} credit" if shown == "1" else f"{shown} credits"


def _env() -> Environment:
    # .html escaped, .txt as written (plain text has nothing to escape)
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["credits"] = credits
    env.filters["credits_label"] = credits_label
    return env


_ENV = _env()


def template_name(event_type: str) -> str:
    return event_type.replace(".", "_")


def render(event_type: str, context: dict[str, Any]) -> Rendered:
    name = template_name(event_type)
    text = _ENV.get_template(f"{name}.txt").render(context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"templates/email/{name}.txt must start with a Subject: line")
    subject = " ".join(first.removeprefix("Subject: ").split())  # one line, never a header injection
    html = _ENV.get_template(f"{name}.html").render({**context, "subject": subject})
    return Rendered(subject, body.lstrip("\n"), html)


def compose(settings: Settings, to: str, rendered: Rendered, message_id: str) -> EmailMessage:
    """The message; its Message-ID is derived from the delivery id, so a resend after a crash is recognisable."""
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = to
    msg["Subject"] = rendered.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = settings.mail_from.rpartition("@")[2].rstrip(">") or "switchboard.local"
    msg["Message-ID"] = f"<{message_id}@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg


def send(smtp: SmtpConfig, msg: EmailMessage) -> None:
    """Hand one message to the SMTP server; MailError when it is not accepted."""
    context = ssl.create_default_context(cafile=smtp.ca_file or None)  # verifies the certificate and the host name
    try:
        if smtp.tls == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=SMTP_TIMEOUT, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=SMTP_TIMEOUT)
        with client:
            if smtp.tls == "starttls":
                client.starttls(context=context)  # required: no silent fall back to clear text
            if smtp.username:
                client.login(smtp.username, smtp.password)
            client.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        raise MailError(f"SMTP {exc.smtp_code}", permanent=500 <= exc.smtp_code < 600) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _ in exc.recipients.values()})
        raise MailError(f"SMTP recipient refused {codes}", permanent=all(c >= 500 for c in codes)) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise MailError(type(exc).__name__, permanent=False) from None

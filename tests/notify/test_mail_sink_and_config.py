"""SMTP_URL and MAIL_FROM are checked at start-up and the password never printed; the local sink `make run` starts
writes what it receives as .eml files, which the development-only admin page lists and shows (escaped)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.notify.conftest import free_port
from tests.support.admin import web_sign_in
from webapp import create_app
from webapp.config import ConfigError, Settings, SmtpConfig, load_settings
from webapp.notify import sink


def test_smtp_url_forms_and_refusals(test_env: dict[str, str]) -> None:
    s = load_settings({**test_env, "SMTP_URL": "smtps://mailer%40example.com:s3cr%2Ft@smtp.example.com"})
    assert s.smtp is not None
    assert (s.smtp.tls, s.smtp.host, s.smtp.port, s.smtp.username, s.smtp.password) == (
        "ssl", "smtp.example.com", 465, "mailer@example.com", "s3cr/t")
    assert "s3cr" not in repr(s) and "s3cr" not in repr(s.smtp)
    s = load_settings({**test_env, "SMTP_URL": "smtp://u:p@smtp.example.com"})
    assert s.smtp is not None and (s.smtp.tls, s.smtp.port) == ("starttls", 587)
    assert load_settings(test_env).smtp is None  # no SMTP_URL: email off, nothing leaves the machine
    for bad in ("smtp://smtp.example.com?starttls=false", "http://smtp.example.com", "smtps://h?starttls=false",
                "smtp://h?verify=no", "smtp://h:99999"):
        with pytest.raises(ConfigError, match="SMTP_URL"):
            load_settings({**test_env, "SMTP_URL": bad})
    with pytest.raises(ConfigError, match="SMTP_CA_FILE"):
        load_settings({**test_env, "SMTP_URL": "smtps://h", "SMTP_CA_FILE": "/nonexistent/ca.pem"})
    with pytest.raises(ConfigError, match="MAIL_FROM"):
        load_settings({**test_env, "MAIL_FROM": "not an address"})


def _send(port: int, to: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@switchboard.test", to, subject
    msg.set_content("plain <part>")
    msg.add_alternative("<p onclick=x>html part</p>", subtype="html")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(msg)


def test_the_sink_keeps_mail_and_admins_read_it_in_development(settings: Settings, make_user: Any,
                                                               tmp_path: Path) -> None:
    port = free_port()
    controller = sink.serve(tmp_path, "127.0.0.1", port)
    try:
        _send(port, "someone@example.test", "Hello <sink>")
    finally:
        controller.stop()
    [eml] = list(tmp_path.glob("*.eml"))
    app = create_app(settings.with_overrides(env="development", mail_sink_dir=str(tmp_path)))
    try:
        client = app.test_client()
        web_sign_in(client, make_user(admin=True))
        page = client.get("/admin/dev/mail").get_data(as_text=True)
        assert "Hello &lt;sink&gt;" in page and "someone@example.test" in page
        one = client.get(f"/admin/dev/mail/{eml.name}").get_data(as_text=True)
        assert "plain &lt;part&gt;" in one and "<iframe" in one and " sandbox " in one
        assert "<p onclick=x>" not in one  # the HTML part only inside the sandboxed srcdoc, escaped
        assert client.get("/admin/dev/mail/..%2F..%2Fetc%2Fpasswd").status_code == 404
        member = app.test_client()
        web_sign_in(member, make_user())
        assert member.get("/admin/dev/mail").status_code == 403
    finally:
        app.extensions["switchboard"].db.close()


def test_no_mail_page_without_the_sink_or_outside_development(settings: Settings, tmp_path: Path) -> None:
    for overrides in ({"env": "production", "mail_sink_dir": str(tmp_path)}, {"env": "development"}):
        app = create_app(settings.with_overrides(**overrides))
        try:
            assert "dev_mail.index" not in app.view_functions
        finally:
            app.extensions["switchboard"].db.close()


def test_the_settings_page_says_what_the_email_switch_sends(settings: Settings, make_user: Any) -> None:
    for smtp in (None, SmtpConfig("127.0.0.1", 2525, "none")):
        configured = smtp is not None
        app = create_app(settings.with_overrides(smtp=smtp))
        try:
            client = app.test_client()
            me = make_user()
            web_sign_in(client, me)
            page = client.get("/settings").get_data(as_text=True)
            assert f"Email to {me.email} when your balance falls below" in page
            assert "Off: none of these are sent." in page
            assert ("no outgoing email configured" in page) is not configured
        finally:
            app.extensions["switchboard"].db.close()

"""The worker's SMTP client against real aiosmtpd servers with TLS: STARTTLS (required, with the login only after
it), implicit TLS (smtps), a certificate the client does not trust, and a server that offers no STARTTLS — where
the message is not sent in clear text and the password never leaves."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.notify.conftest import SmtpRecorder, free_port
from webapp.config import Settings, SmtpConfig
from webapp.notify import mail

USER, PASSWORD = "mailer@switchboard.test", "smtp-pass-9f3c"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("smtp-tls")
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def _server_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


class Logins:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.seen.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=(data.login.decode(), data.password.decode()) == (USER, PASSWORD))


def _serve(**kwargs: Any) -> Iterator[tuple[SmtpRecorder, Logins]]:
    recorder, logins = SmtpRecorder(port=free_port()), Logins()
    controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port, authenticator=logins, **kwargs)
    controller.start()
    try:
        yield recorder, logins
    finally:
        controller.stop()


def _message() -> Any:
    return mail.compose(Settings(mail_from="Switchboard <notices@switchboard.test>"), "someone@example.test",
                        mail.Rendered("TLS check", "plain", "<p>html</p>"), "tls-check")


def test_starttls_is_required_and_the_login_happens_inside_it(cert: tuple[Path, Path]) -> None:
    for recorder, logins in _serve(tls_context=_server_context(cert), require_starttls=True, auth_required=True):
        mail.send(SmtpConfig("127.0.0.1", recorder.port, "starttls", USER, PASSWORD, str(cert[0])), _message())
        assert [m["Subject"] for m in recorder.messages] == ["TLS check"]
        assert logins.seen == [(USER, PASSWORD)]


# aiosmtpd counts only STARTTLS as TLS for AUTH (it warns on every connection); here the whole connection is TLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_smtps_speaks_tls_from_the_first_byte(cert: tuple[Path, Path]) -> None:
    for recorder, logins in _serve(ssl_context=_server_context(cert), auth_required=True, auth_require_tls=False):
        mail.send(SmtpConfig("127.0.0.1", recorder.port, "ssl", USER, PASSWORD, str(cert[0])), _message())
        assert len(recorder.messages) == 1 and logins.seen == [(USER, PASSWORD)]


def test_an_untrusted_certificate_stops_the_send(cert: tuple[Path, Path]) -> None:
    for recorder, logins in _serve(tls_context=_server_context(cert), require_starttls=True, auth_required=True):
        with pytest.raises(mail.MailError) as info:
            mail.send(SmtpConfig("127.0.0.1", recorder.port, "starttls", USER, PASSWORD), _message())
        assert not info.value.permanent and PASSWORD not in str(info.value)
        assert recorder.messages == [] and logins.seen == []


def test_no_starttls_offered_means_no_clear_text_fallback(cert: tuple[Path, Path]) -> None:
    for recorder, logins in _serve(auth_require_tls=False):
        with pytest.raises(mail.MailError):
            mail.send(SmtpConfig("127.0.0.1", recorder.port, "starttls", USER, PASSWORD, str(cert[0])), _message())
        assert recorder.messages == [] and logins.seen == []

"""SMTP delivery over STARTTLS and implicit TLS, with authentication and a private CA."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest

from mailflow.localmail import SmtpServer

from .test_retro import at


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, standing for an organisation's private CA."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing: apt-get install -y openssl (or bash .ci/setup)")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder / "cert.pem", folder / "key.pem"


def relay(localmail, certificate, implicit: bool) -> SmtpServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    server = SmtpServer(
        localmail.dovecot.lmtp_port, localmail.is_user, auth=("relay-user", "relay-secret"),
        tls=context, implicit_tls=implicit,
    )  # fmt: skip
    server.start()
    return server


@pytest.mark.parametrize(("security", "implicit"), [("starttls", False), ("tls", True)])
def test_delivery_through_an_authenticated_tls_relay(
    programme, localmail, certificate, security, implicit
):
    server = relay(localmail, certificate, implicit)
    try:
        p = programme({"alpha": 1}, smtp={
            "port": server.port, "security": security, "username": "relay-user",
            "ca_file": str(certificate[0]),
        })  # fmt: skip
        assert "sent 1" in p.tick(at("09:00")).output
    finally:
        server.stop()
    assert len(server.deliveries) == 1
    assert len(p.inbox(p.defis["alpha"][0])) == 1


def test_an_unknown_certificate_keeps_mail_queued(programme, localmail, certificate):
    server = relay(localmail, certificate, implicit=False)
    try:
        untrusted = programme(
            {"alpha": 1},
            smtp={"port": server.port, "security": "starttls", "username": "relay-user"},
        )
        result = untrusted.run("tick", "--at", at("09:00"))
        assert result.exit_code == 1 and "certificate is refused" in result.output
        assert "1 en attente d'envoi" in untrusted.run("status", "--week", "2026-W48").output
    finally:
        server.stop()
    assert server.deliveries == []


def test_a_wrong_login_keeps_mail_queued(programme, localmail, certificate):
    server = relay(localmail, certificate, implicit=False)
    try:
        wrong = programme({"alpha": 1}, smtp={
            "port": server.port, "security": "starttls", "username": "someone-else",
            "ca_file": str(certificate[0]),
        })  # fmt: skip
        result = wrong.run("tick", "--at", at("09:00"))
        assert result.exit_code == 1 and "login refused for someone-else" in result.output
        assert "1 en attente d'envoi" in wrong.run("status", "--week", "2026-W48").output
    finally:
        server.stop()
    assert server.deliveries == []

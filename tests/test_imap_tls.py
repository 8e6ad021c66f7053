"""IMAP over TLS against the loopback Dovecot, whose certificate a private CA signed.

The harness's CA (made with openssl) signed a certificate for 127.0.0.1 only: connecting to
``localhost`` meets a certificate for the wrong host, and without ``ca_file`` (or with
another CA) the certificate is unknown. Each refusal is one line saying what to change.
"""

from __future__ import annotations

import ssl

import pytest

from mailflow.errors import MailServerError
from mailflow.receiving import imap

from .test_retro import at


def over_tls(localmail, security, **more):
    port = localmail.dovecot.imaps_port if security == "tls" else localmail.imap_port
    return {"security": security, "port": port, "ca_file": str(localmail.certificates.ca), **more}


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_the_mailbox_is_read_over_tls_with_the_private_ca(programme, localmail, security):
    p = programme({"alpha": 1}, imap=over_tls(localmail, security))
    with imap.session(p.config.imap) as client:
        socket = client._imap.sock
        assert isinstance(socket, ssl.SSLSocket) and socket.version() in ("TLSv1.2", "TLSv1.3")
    p.tick(at("09:00"))
    a0 = p.defis["alpha"][0]
    p.mutt(a0, "Alice", p.localmail.fetch(a0)[0], "Victoires :\nle chiffrement marche")
    p.wait_shared(1)
    assert "ingested 1 new messages" in p.tick(at("10:00")).output


@pytest.mark.parametrize("security", ["tls", "starttls"])
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"host": "localhost"}, "Hostname mismatch, certificate is not valid for 'localhost'"),
        ({"ca_file": None}, "unable to get local issuer certificate"),
        ({"ca_file": "stranger"}, "unable to get local issuer certificate"),
    ],
)
def test_a_certificate_for_another_host_or_from_an_unknown_ca_is_refused(
    make_config, localmail, security, change, reason
):
    settings = over_tls(localmail, security, **change)
    if settings["ca_file"] is None:
        del settings["ca_file"]
    elif settings["ca_file"] == "stranger":
        settings["ca_file"] = str(localmail.certificates.stranger_ca)
    config = make_config(imap=settings)
    with pytest.raises(MailServerError) as refused:
        imap.connect(config.imap)
    message = str(refused.value)
    assert message.startswith(f"IMAP {config.imap.host}:{config.imap.port}: the server's ")
    assert f"certificate is refused ({reason}" in message
    assert "check [imap] host, or give the CA that signed it with [imap] ca_file" in message
    assert "\n" not in message


def test_tls_spoken_to_the_plain_port_says_which_setting_to_change(make_config, localmail):
    config = make_config(imap=over_tls(localmail, "tls", port=localmail.imap_port))
    with pytest.raises(MailServerError, match=r'does not speak TLS on this port.*"starttls"'):
        imap.connect(config.imap)


def test_doctor_and_tick_report_a_refused_certificate_in_one_line(programme, localmail):
    p = programme({"alpha": 1}, imap=over_tls(localmail, "tls", host="localhost"))
    doctor = p.run("doctor").output
    [line] = [x for x in doctor.splitlines() if "certificate is refused" in x]
    assert line.startswith("FAIL IMAP: IMAP localhost")
    assert "FAIL alias: not checked: fix the IMAP login first" in doctor
    assert "Hostname mismatch" in line
    result = p.run("tick", "--at", at("09:00"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the mailbox could not be read: IMAP localhost" in result.output

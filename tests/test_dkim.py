"""Commands authorised by mailflow's own DKIM check, against forgeries that reach the mailbox.

The staff's domain publishes its DKIM key in a DNS stub on loopback (``dns_server``); the
server in front of the mailbox adds no Authentication-Results of its own, as in the
attack run that issue 14 reports. Every forged command is stored, refused, and reported to
the staff; none is executed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import sqlite3
import uuid

import pytest

from mailflow.localmail.dnsstub import DnsStub, sign
from mailflow.receiving import dkimcheck

from .conftest import text_of

MX = "mx.programme.test"
TEXT = "La session de janvier aura lieu à Lyon."


@pytest.fixture(scope="module")
def dns_stub():
    stub = DnsStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def signed_programme(programme, dns_stub):
    """A programme checking DKIM itself; the staff's domain has its key published."""

    def make(trusted=(), **security):
        p = programme({"alpha": 1}, security={
            "verify_dkim": True, "dns_server": dns_stub.address,
            "trusted_authserv_ids": list(trusted), **security,
        })  # fmt: skip
        p.key = dns_stub.add_dkim_key(domain_of(p.staff[0]))
        return p

    return make


def domain_of(address: str) -> str:
    return address.split("@")[1]


def command_mail(p, sender=None, subject="Annonce", body=TEXT, headers="") -> bytes:
    sender = sender or p.staff[0]
    return (
        f"{headers}From: Soizic <{sender}>\r\nTo: {p.config.addresses.alias}\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@{domain_of(sender)}>\r\n"
        f"Date: {email.utils.format_datetime(dt.datetime.now(dt.UTC))}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + body + "\r\n"
    ).encode()


def signed(p, raw: bytes, **options) -> bytes:
    return sign(raw, domain_of(p.staff[0]), p.key, **options)


def outcome(p, count: int):
    p.wait_shared(count)
    p.tick("2026-11-26T10:00:00+01:00")
    db = sqlite3.connect(p.config.database)
    announcements = db.execute("select count(*) from announcements").fetchone()[0]
    commands = db.execute("select status, outcome from commands order by message").fetchall()
    return announcements, commands


def refusal_notice(p) -> str:
    [notice] = [m for m in p.inbox(p.staff[1]) if "Commande refusée" in str(m["Subject"])]
    return text_of(notice)


def test_a_command_signed_by_the_staff_domain_is_obeyed(signed_programme):
    p = signed_programme()
    p.swaks(signed(p, command_mail(p)), p.staff[0])
    announcements, commands = outcome(p, 1)
    assert announcements == 1 and [s for s, _ in commands] == ["done"]
    assert any("Annonce ajoutée" in text_of(m) for m in p.inbox(p.staff[0]))


def test_a_header_only_forgery_with_no_mx_header_is_refused(signed_programme):
    p = signed_programme()  # no trusted server: the MX adds no header of its own
    forged = f"Authentication-Results: {MX}; dkim=pass header.d={domain_of(p.staff[0])}\r\n"
    p.swaks(command_mail(p, headers=forged), p.staff[0])
    assert outcome(p, 1) == (0, [("refused", "dkim_none: no DKIM-Signature; "
                                  "[security] trusted_authserv_ids is empty")])  # fmt: skip
    assert "ne porte pas de signature DKIM" in refusal_notice(p)


def test_a_forged_header_naming_the_trusted_server_is_contradicted(signed_programme):
    # The id of the MX is trusted, but the MX adds nothing: the header is the sender's own.
    p = signed_programme(trusted=[MX])
    forged = f"Authentication-Results: {MX}; dkim=pass header.d={domain_of(p.staff[0])}\r\n"
    p.swaks(command_mail(p, headers=forged), p.staff[0])
    announcements, [(status, detail)] = outcome(p, 1)
    assert (announcements, status) == (0, "refused")
    assert detail.startswith("dkim_contradicted: the receiving server's header says dkim=pass")
    assert "en-tête probablement falsifié" in refusal_notice(p)


def test_a_signature_over_a_modified_body_is_refused(signed_programme):
    p = signed_programme()
    raw = signed(p, command_mail(p, body="Rappel : la session de janvier."))
    p.swaks(raw.replace(b"Rappel : la session de janvier.", TEXT.encode()), p.staff[0])
    announcements, [(status, detail)] = outcome(p, 1)
    assert (announcements, status) == (0, "refused")
    assert detail.startswith("dkim_fail: signature 1: body hash mismatch")
    assert "ne se vérifie pas" in refusal_notice(p)


def test_a_signature_by_another_domain_is_refused(signed_programme, dns_stub):
    p = signed_programme()
    evil = f"evil-{uuid.uuid4().hex[:6]}.test"
    raw = sign(command_mail(p), evil, dns_stub.add_dkim_key(evil))  # valid, but not theirs
    p.swaks(raw, p.staff[0])
    announcements, [(status, detail)] = outcome(p, 1)
    assert (announcements, status) == (0, "refused")
    assert detail.startswith(f"not_aligned: signature by {evil}, not {domain_of(p.staff[0])}")


def test_a_replayed_signed_command_is_executed_once(signed_programme):
    p = signed_programme()
    # Signed as some servers do, without the Message-ID: a replay can give it a new one.
    unsigned_id = [b"from", b"to", b"subject", b"date", b"content-type"]
    raw = signed(p, command_mail(p), include_headers=unsigned_id)
    p.swaks(raw, p.staff[0])
    assert outcome(p, 1)[0] == 1
    p.swaks(raw, p.staff[0])  # the same bytes again: the same message, stored once
    fresh_id = f"<{uuid.uuid4().hex}@replay.test>".encode()
    p.swaks(re.sub(rb"Message-ID: <[^>]+>", b"Message-ID: " + fresh_id, raw), p.staff[0])
    p.swaks(b"Message-ID: <second@replay.test>\r\n" + raw, p.staff[0])  # one more, above
    announcements, commands = outcome(p, 4)
    assert announcements == 1
    assert [s for s, _ in commands] == ["done", "refused", "refused"]
    assert commands[1][1].startswith("replayed: the same DKIM signature as message ")
    assert commands[2][1].startswith("dkim_fail: the header has more than one message-id")
    notice = refusal_notice(p)
    assert "déjà été exécutée" in notice and "Et 1 autre commande refusée" not in notice


@pytest.mark.parametrize("trick", ["second subject", "unsigned subject", "partial body"])
def test_signatures_that_leave_the_command_open_are_refused(signed_programme, trick):
    p = signed_programme()
    if trick == "second subject":  # a harmless signed mail, a command subject added above
        raw = b"Subject: Annonce\r\n" + signed(p, command_mail(p, subject="Bonjour"))
    elif trick == "unsigned subject":
        raw = signed(p, command_mail(p, subject="Bonjour"), include_headers=[b"from", b"to"])
        raw = raw.replace(b"Subject: Bonjour", b"Subject: Annonce")
    else:  # l= lets anyone append to the body
        raw = signed(p, command_mail(p, body="Bonjour"), length=True) + TEXT.encode() + b"\r\n"
    p.swaks(raw, p.staff[0])
    announcements, [(status, detail)] = outcome(p, 1)
    assert (announcements, status) == (0, "refused")
    assert detail.startswith("dkim_fail: ")


def test_the_trusted_header_still_authorises_when_the_mx_adds_it(signed_programme):
    p = signed_programme(trusted=[MX])
    header = f"Authentication-Results: {MX}; spf=pass smtp.mailfrom={p.staff[0]}\r\n"
    p.swaks(command_mail(p, headers=header), p.staff[0])  # unsigned, SPF by the MX
    assert outcome(p, 1)[0] == 1


def test_dns_that_does_not_answer_is_said_so(signed_programme, localmail):
    from mailflow.localmail import free_port

    p = signed_programme(dns_server=f"127.0.0.1:{free_port()}")  # nothing listens there
    p.swaks(signed(p, command_mail(p)), p.staff[0])
    announcements, [(status, detail)] = outcome(p, 1)
    assert (announcements, status) == (0, "refused")
    assert detail.startswith("dkim_temperror: DNS failed for mail._domainkey.")
    assert "n'a pas pu être lue dans le DNS" in refusal_notice(p)


def test_dns_server_addresses():
    assert dkimcheck.dns_address("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert dkimcheck.dns_address("192.0.2.1") == ("192.0.2.1", 53)
    assert dkimcheck.dns_address("[::1]:5300") == ("::1", 5300)
    assert dkimcheck.dns_address("::1") == ("::1", 53)
    for wrong in ("dns.example.test", "127.0.0.1:http", "[::1]5300", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            dkimcheck.dns_address(wrong)
    resolver = dkimcheck.resolver("127.0.0.1:5353")
    assert (resolver.nameservers, resolver.port) == (["127.0.0.1"], 5353)


def test_doctor_warns_when_the_trusted_server_adds_no_header(programme):
    p = programme({"alpha": 1}, security={"trusted_authserv_ids": [MX]})
    assert "ok   commands: mx.programme.test's results trusted (no mail in INBOX yet" in (
        p.run("doctor").output
    )
    p.swaks(command_mail(p, headers=f"Authentication-Results: {MX}; spf=pass\r\n"), p.staff[0])
    p.swaks(command_mail(p), p.staff[0])  # arrived without the trusted server's header
    p.wait_shared(2)
    lines = p.run("doctor").output.splitlines()
    [line] = [x for x in lines if x.startswith("WARN commands: ")]
    assert "1 of the last 2 messages in INBOX carry no Authentication-Results from " in line
    assert "set verify_dkim = true" in line


def test_doctor_says_how_commands_are_authorised_with_dkim_alone(signed_programme):
    p = signed_programme()
    lines = p.run("doctor").output.splitlines()
    assert "ok   commands: authorised by mailflow's own DKIM check (no trusted server)" in lines

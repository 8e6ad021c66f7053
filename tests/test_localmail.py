"""The loopback servers the suite relies on behave like real ones."""

from __future__ import annotations

import email
import smtplib

import pytest


def test_smtp_delivers_into_the_recipients_mailbox(localmail, new_address):
    sender, rcpt = new_address("sender"), new_address("rcpt")
    raw = (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: =?utf-8?q?R=C3=A9tro?=\r\n"
        "Message-ID: <roundtrip@localmail.test>\r\n\r\nBonjour\r\n"
    ).encode()
    localmail.send(raw, [rcpt], sender)
    [received] = localmail.wait_for(rcpt, 1)
    msg = email.message_from_bytes(received)
    assert msg["Message-ID"] == "<roundtrip@localmail.test>"
    assert "Bonjour" in msg.get_payload()


def test_smtp_refuses_unknown_recipients_with_550(localmail, new_address):
    sender = new_address("sender")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        localmail.send(b"Subject: x\r\n\r\nx\r\n", ["nobody@nowhere.test"], sender)
    assert refused.value.recipients["nobody@nowhere.test"][0] == 550


def test_scripted_temporary_failure_then_recovery(localmail, new_address):
    sender, rcpt = new_address("sender"), new_address("rcpt")
    localmail.smtp.fail_next("451 4.3.2 try again later")
    with pytest.raises(smtplib.SMTPDataError) as failed:
        localmail.send(b"Subject: x\r\n\r\nx\r\n", [rcpt], sender)
    assert failed.value.smtp_code == 451
    localmail.send(b"Subject: y\r\n\r\ny\r\n", [rcpt], sender)
    assert len(localmail.wait_for(rcpt, 1)) == 1


def test_append_and_read_back_without_marking_read(localmail, new_address):
    user = new_address()
    localmail.append(user, [b"Subject: a\r\n\r\na\r\n", b"Subject: b\r\n\r\nb\r\n"], "Archive")
    assert len(localmail.fetch(user, "Archive")) == 2
    client = localmail.imap(user)
    try:
        client.select_folder("Archive")
        assert client.search("UNSEEN") != []
    finally:
        client.logout()

"""Delivery per recipient, against the real servers: temporary refusals retried for one
address alone, refused and bounced addresses suppressed, one plain notice a day."""

from __future__ import annotations

import datetime as dt
import email
import re
from collections import Counter

import pytest

from mailflow.localmail import clients
from mailflow.receiving.parse import parse_message
from mailflow.sending.message import build_message
from mailflow.sending.render import Rendered
from mailflow.store.db import open_db
from mailflow.store.outgoing import Outgoing, queue

from .conftest import CORPUS, text_of
from .test_alias import MX, command
from .test_retro import at

NEXT_FRIDAY = "2026-12-04"


def copies(p, address):
    """How many copies of each Message-ID a mailbox holds."""
    return Counter(m["Message-ID"] for m in p.inbox(address))


def envelopes(localmail, message_id):
    """The recipients the SMTP server accepted, per transaction, for one Message-ID."""
    return [
        sorted(d.rcpt_tos)
        for d in localmail.smtp.deliveries
        if str(email.message_from_bytes(d.data)["Message-ID"]).strip() == message_id.strip()
    ]


def notices(p, staff=0):
    return [m for m in p.inbox(p.staff[staff]) if "non distribué" in str(m["Subject"])]


def assert_plain(text):
    for forbidden in ("[", '"', "d-", "retro:", "{", "}"):
        assert forbidden not in text, f"{forbidden!r} in the notice:\n{text}"


def roster_line(p, address):
    return next(line for line in p.run("roster").output.splitlines() if address in line)


@pytest.mark.parametrize(
    "answer",
    [
        "451 4.7.1 Greylisted, try again later",
        "452 4.5.3 Too many recipients",
        "552 5.5.3 Too many recipients",  # an old server's way of saying 452 (RFC 5321)
    ],
)
def test_a_temporary_refusal_of_one_member_is_retried_for_that_member_alone(
    programme, localmail, answer
):
    p = programme({"alpha": 2})
    a0, a1 = p.defis["alpha"]
    localmail.smtp.refuse(a1, answer)
    try:
        assert "sent 0, to retry 1, failed 0" in p.tick(at("09:00")).output
        assert "to retry 0" in p.tick(at("09:00")).output  # not due before its backoff
    finally:
        localmail.smtp.clear_failures()
    [request_id] = copies(p, a0)
    assert p.inbox(a1) == []
    assert "sent 1" in p.tick(at("09:02")).output
    for _ in range(2):
        p.tick(at("09:10"))
    assert copies(p, a0) == {request_id: 1} and copies(p, a1) == {request_id: 1}
    # The same bytes went to the greylisted address alone; the other one got them once.
    assert envelopes(localmail, request_id) == [[a0], [a1]]
    assert notices(p) == []  # it was delivered: nothing to tell the staff


def test_a_refusal_and_a_temporary_one_in_the_same_envelope(programme, localmail):
    """Every recipient refused at RCPT: each still gets its own outcome."""
    p = programme({"alpha": 2})
    a0, a1 = p.defis["alpha"]
    localmail.smtp.refuse(a0, "451 4.7.1 Greylisted")
    localmail.smtp.refuse(a1, "550 5.1.1 <a1>: Recipient address rejected: User unknown")
    try:
        assert "to retry 1" in p.tick(at("09:00")).output
    finally:
        localmail.smtp.clear_failures()
    p.tick(at("09:02"))
    [request_id] = copies(p, a0)
    assert p.inbox(a1) == []
    assert envelopes(localmail, request_id) == [[a0]]
    assert "plus de mail" in roster_line(p, a1) and "plus de mail" not in roster_line(p, a0)


def test_a_refused_member_is_left_out_until_the_staff_reactivate_it(programme, localmail):
    p = programme({"alpha": 2}, security={"trusted_authserv_ids": [MX]})
    a0, a1 = p.defis["alpha"]
    localmail.smtp.refuse(a1, "550 5.1.1 <a1>: Recipient address rejected: User unknown")
    try:
        p.tick(at("09:00"))
    finally:
        localmail.smtp.clear_failures()  # the server would take it now: mailflow must not try
    [request] = p.inbox(a0)
    assert p.inbox(a1) == []
    for time in ("12:00", "12:00", "14:00"):
        p.tick(at(time))
    reminders = [m["Message-ID"] for m in p.inbox(a0)[1:]]
    assert len(reminders) == 2
    for message_id in reminders:
        assert envelopes(localmail, message_id) == [[a0]]
    assert p.inbox(a1) == []
    line = roster_line(p, a1)
    assert "plus de mail depuis le ven. 27 nov. 2026 09:00" in line and "550 5.1.1" in line
    status = p.run("status", "--week", "2026-W48").output
    assert f"Plus de mail à {a1} (Alpha) depuis le ven. 27 nov. 2026 09:00" in status

    [notice] = notices(p)
    text = text_of(notice)
    assert_plain(text)
    assert a1 in text and "défi Alpha" in text and "Refusée par le serveur d'envoi" in text
    assert "550 5.1.1" in text and str(request["Subject"]) in text
    assert "Plus aucun mail ne lui sera envoyé" in text and "réactiver adresse" in text
    assert a0 not in text
    assert notice["Date"].endswith("+0100")
    assert len(notices(p, staff=1)) == 1

    command(p, p.staff[0], "Adresse corrigée", f"courriel : {a1}")
    p.wait_shared(1)
    p.tick(at("16:00"))
    [reply] = [m for m in p.inbox(p.staff[0]) if "Fait" in str(m["Subject"])]
    assert f"L'adresse {a1} recevra de nouveau les mails du programme" in text_of(reply)
    assert "plus de mail" not in roster_line(p, a1)
    p.tick(at("09:00", NEXT_FRIDAY))
    assert len(p.inbox(a1)) == 1 and len(p.inbox(a0)) == 4
    assert len(notices(p)) == 1


def test_the_next_day_notice_tells_what_failed_after_the_first(programme, localmail):
    p = programme({"alpha": 1, "beta": 1}, security={"trusted_authserv_ids": [MX]})
    (a0,), (b0,) = p.defis["alpha"], p.defis["beta"]
    localmail.smtp.refuse(a0, "550 5.1.1 <a0>: Recipient address rejected: User unknown")
    try:
        p.tick(at("09:00"))
        localmail.smtp.refuse(b0, "550 5.1.1 <b0>: Recipient address rejected: User unknown")
        p.tick(at("12:00"))  # beta's reminder is refused after the day's notice went
    finally:
        localmail.smtp.clear_failures()
    [first] = notices(p)
    assert a0 in text_of(first) and b0 not in text_of(first)
    p.tick(at("14:00"))  # both défis have no address left: their reminders are not sent
    assert len(notices(p)) == 1
    p.tick(at("09:00", "2026-11-28"))
    second = notices(p)[1]
    text = text_of(second)
    assert_plain(text)
    assert b0 in text and a0 not in text.split("Ces mails")[0]
    assert "« Rappel : rétrospective de la semaine 48 (Alpha) », pour le défi Alpha" in text
    assert "Il n'est pas parti" in text

    # A staff member says the address is fixed: the next Friday's request reaches it.
    command(p, p.staff[0], "Réactiver adresse", f"adresse mail : {a0}\n\nMerci")
    p.wait_shared(1)
    p.tick(at("10:00", "2026-11-28"))
    [reply] = [m for m in p.inbox(p.staff[0]) if "Fait" in str(m["Subject"])]
    assert f"L'adresse {a0} recevra de nouveau" in text_of(reply)
    assert "plus de mail" not in roster_line(p, a0)
    p.tick(at("09:00", NEXT_FRIDAY))
    assert len(p.inbox(a0)) == 1
    assert len(p.inbox(b0)) == 1  # the first request only: it is still suppressed


def test_reactivating_an_address_that_is_not_suppressed_says_so(programme):
    p = programme({"alpha": 1}, security={"trusted_authserv_ids": [MX]})
    a0 = p.defis["alpha"][0]
    command(p, p.staff[0], "reactivate address", f"address: {a0}")
    p.wait_shared(1)
    p.tick("2026-11-25T10:00:00+01:00")
    [reply] = [m for m in p.inbox(p.staff[0]) if "non exécutée" in str(m["Subject"])]
    assert f"l'adresse {a0} n'est pas suspendue" in text_of(reply)


def delayed(raw_request, address):
    """A Postfix "delayed mail" report: the relay is still trying (4.x.x), nothing final."""
    bounce = clients.bounce(raw_request, address).decode()
    bounce = bounce.replace("Action: failed\r\nStatus: 5.1.1", "Action: delayed\r\nStatus: 4.4.7")
    bounce = bounce.replace(
        "Undelivered Mail Returned to Sender", "Delayed Mail (still being retried)"
    )
    return re.sub(r"550 5\.1\.1", "451 4.4.7", bounce).encode()


@pytest.mark.parametrize(
    ("stem", "status"),
    [
        ("53-postfix-dsn-bounce", "5.1.1"),
        ("54-exchange-ndr-en", "5.1.10"),
        ("55-exchange-ndr-fr", "5.1.1"),
        ("56-gmail-dsn-bounce", "5.1.1"),
        ("57-exim-bounce-auto-submitted", "5.2.2"),
    ],
)
def test_bounces_of_the_corpus_carry_their_status(stem, status):
    parsed = parse_message((CORPUS / f"{stem}.eml").read_bytes())
    assert (parsed.automatic, parsed.bounce_status) == ("bounce", status)


def test_a_delay_notice_and_a_bounce_without_report_part():
    request = (CORPUS / "01-gmail-fr-top-posted.eml").read_bytes()
    late = parse_message(delayed(request, "camille@bulletins.test"))
    assert (late.automatic, late.bounced_recipient, late.bounce_status) == (
        "bounce", "camille@bulletins.test", "4.4.7",
    )  # fmt: skip
    qmail = (
        b"From: MAILER-DAEMON@mx.example.test\r\nTo: p@programme.test\r\n"
        b"Subject: failure notice\r\nMessage-ID: <q1@mx.example.test>\r\n\r\n"
        b"Hi. This is the qmail-send program at mx.example.test.\r\n"
        b"<hugo@bulletins.test>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n"
    )
    parsed = parse_message(qmail)
    assert (parsed.bounced_recipient, parsed.bounce_status) == ("hugo@bulletins.test", "5.1.1")


def test_a_hard_bounce_suppresses_an_address_and_a_delay_notice_does_not(
    programme, localmail, new_address
):
    p = programme({"alpha": 2})
    a0, a1 = p.defis["alpha"]
    p.tick(at("09:00"))
    request = p.localmail.fetch(a1)[0]
    outsider = new_address("outsider")
    p.swaks(clients.bounce(request, a1), "")
    p.swaks(delayed(request, a0), "")
    p.swaks(clients.bounce(request, outsider), "")  # not an address mailflow wrote to
    p.wait_shared(3)
    p.tick(at("10:00"))
    roster = p.run("roster").output
    assert (
        "plus de mail depuis le ven. 27 nov. 2026 10:00 (revenu en erreur, 5.1.1)"
        in roster_line(p, a1)
    )
    assert "plus de mail" not in roster_line(p, a0) and outsider not in roster
    p.tick(at("12:00"))
    reminder = p.inbox(a0)[1]
    assert envelopes(localmail, reminder["Message-ID"]) == [[a0]]
    assert len(p.inbox(a1)) == 1
    [notice] = notices(p)
    text = text_of(notice)
    assert_plain(text)
    assert a1 in text and "Un avis de non-remise est revenu (statut 5.1.1)" in text
    assert a0 not in text and outsider not in text


def test_a_roster_that_no_longer_lists_an_address_lifts_its_suppression(
    programme, localmail, new_address
):
    p = programme({"alpha": 2})
    a1 = p.defis["alpha"][1]
    localmail.smtp.refuse(a1, "550 5.1.1 User unknown")
    try:
        p.tick(at("09:00"))
    finally:
        localmail.smtp.clear_failures()
    assert "plus de mail" in roster_line(p, a1)
    corrected = new_address("alpha1")
    path = p.config.roster
    path.write_text(path.read_text().replace(a1, corrected))
    p.tick(at("10:00"))
    assert "plus de mail" not in p.run("roster").output
    path.write_text(path.read_text().replace(corrected, a1))  # the old address comes back
    p.tick(at("12:00"))
    assert len(p.inbox(a1)) == 1  # the reminder: it is tried again


def test_an_address_whose_retries_run_out_is_reported_once_in_english(programme, localmail):
    p = programme({"alpha": 2}, mailflow={"language": "en"})
    a0, a1 = p.defis["alpha"]
    engine = p.engine()
    start = dt.datetime(2026, 11, 25, 8, tzinfo=dt.UTC)  # a Wednesday: no step mails alpha
    rendered = Rendered("Programme news", "Hello Alpha,\n\nNews.\n")
    message_id = f"<news-{a0.split('@')[0]}@{p.config.addresses.message_id_domain}>"
    raw = build_message(
        rendered, sender=p.config.addresses.sender, sender_name="Programme", to=[a0, a1],
        reply_to=p.shared, message_id=message_id, date=start,
    )  # fmt: skip
    mail = Outgoing("news:1:send:d-alpha", "news", "1", "send", "d-alpha", (a0, a1),
                    p.config.addresses.sender, message_id, "Programme news", raw)  # fmt: skip
    queue(engine.db, mail, start)
    localmail.smtp.refuse(a1, "451 4.7.1 Greylisted")
    try:
        now = start
        for wait in (0, 60, 300, 900, 3600, 3 * 3600, 6 * 3600):
            now += dt.timedelta(seconds=wait)
            engine.tick(now, fetch=False)
    finally:
        localmail.smtp.clear_failures()
    engine.tick(now + dt.timedelta(hours=1), fetch=False)
    assert copies(p, a0) == {message_id: 1} and p.inbox(a1) == []
    db = open_db(p.config.database)
    assert db.execute("select status from outbox where key = ?", [mail.key]).fetchone() == ("sent",)
    [notice] = [m for m in p.inbox(p.staff[0]) if "not delivered" in str(m["Subject"])]
    text = text_of(notice)
    assert_plain(text)
    assert f"{a1}, team Alpha" in text and "for more than 10 hours (451 4.7.1 Greylisted)" in text
    assert "“Programme news”" in text and "the next ones will be sent as usual" in text
    assert "plus de mail" not in roster_line(p, a1)


def test_the_notice_itself_leaves_out_a_suppressed_staff_address(programme, localmail):
    p = programme({"alpha": 1})
    s0, s1 = p.staff
    a0 = p.defis["alpha"][0]
    localmail.smtp.refuse(a0, "550 5.1.1 User unknown")
    localmail.smtp.refuse(s0, "550 5.1.1 User unknown")
    try:
        p.tick(at("09:00"))  # the notice about a0 is refused for s0
    finally:
        localmail.smtp.clear_failures()
    p.tick(at("09:00", "2026-11-28"))  # the one about s0 goes to s1 alone
    assert notices(p, staff=0) == []
    first, second = notices(p, staff=1)
    assert a0 in text_of(first)
    assert f"{s0}, Staff, équipe du programme" in text_of(second)
    assert envelopes(localmail, second["Message-ID"]) == [[s1]]

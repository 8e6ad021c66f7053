"""The staff alias against real servers: commands by mail, refusals, help requests, no loops."""

from __future__ import annotations

import datetime as dt
import email.message
import email.policy
import email.utils
import sqlite3
import uuid

import pytest

from mailflow.localmail import clients
from mailflow.receiving import authresults

from .conftest import text_of

MX = "mx.programme.test"


def passing(sender: str) -> str:
    domain = sender.split("@")[1]
    return f"{MX}; dkim=pass header.d={domain} header.s=mail; spf=pass smtp.mailfrom={sender}"


def command(p, sender, subject, body="", results: list[str] | None = None, to=None, extra=""):
    """Send a mail to the alias as the receiving server delivers it (with its results)."""
    headers = "".join(
        f"Authentication-Results: {r}\r\n"
        for r in (results if results is not None else [passing(sender)])
    )
    raw = (
        f"{headers}From: Staff <{sender}>\r\nTo: {to or p.config.addresses.alias}\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@{sender.split('@')[1]}>\r\n"
        f"Date: {email.utils.format_datetime(dt.datetime.now(dt.UTC))}\r\n{extra}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n"
    ).encode()
    p.swaks(raw, sender)


def settle(p, count: int, at: str) -> None:
    p.wait_shared(count)
    p.tick(at)


def replies(p, address):
    return [
        m
        for m in p.inbox(address)
        if m["Subject"] and ("Fait" in m["Subject"] or "non exécutée" in m["Subject"])
    ]


@pytest.fixture
def staffed(programme):
    def make(defis=None, **overrides):
        overrides.setdefault("security", {})["trusted_authserv_ids"] = [MX]
        return programme(defis or {"alpha": 1, "beta": 1}, **overrides)

    return make


def test_help_lists_every_command(staffed):
    p = staffed()
    command(p, p.staff[0], "aide")
    settle(p, 1, "2026-11-25T10:00:00+01:00")
    [reply] = replies(p, p.staff[0])
    text = text_of(reply)
    for keyword in ("événement", "annuler événement", "sauter semaine", "annonce", "qui manque",
                    "renvoyer récapitulatif", "traité"):  # fmt: skip
        assert f"* {keyword}" in text


def test_event_command_creates_then_changes_an_event(staffed, tmp_path):
    p = staffed()
    s0 = p.staff[0]
    command(p, s0, "Nouvel événement", (
        "id : atelier-design\ntitre : Atelier design des services\ndate : 17/12/2026\n"
        "début : 14h\nfin : 17h30\nlieu : Tiers-lieu, salle 2\npublic : entrepreneurs\n"
        "ordre du jour : 14h présentation\n15h ateliers en groupes\n\nSoizic"
    ))  # fmt: skip
    settle(p, 1, "2026-12-01T10:00:00+01:00")
    [created] = replies(p, s0)
    assert "Fait" in str(created["Subject"]) and "L'événement est créé" in text_of(created)
    assert "le jeudi 17 décembre 2026, de 14h à 17h30" in text_of(created)
    db = sqlite3.connect(p.config.database)
    row = db.execute(
        "select title, place, audience, agenda, sequence, source from events"
    ).fetchone()
    assert row == ("Atelier design des services", "Tiers-lieu, salle 2", "entrepreneurs",
                   "14h présentation\n15h ateliers en groupes", 0, "mail")  # fmt: skip

    # A week before, the entrepreneurs are invited (not the staff).
    p.tick("2026-12-10T10:00:00+01:00")
    a0 = p.defis["alpha"][0]
    assert [str(m["Subject"]) for m in p.inbox(a0)][
        -1
    ] == "Dans une semaine : Atelier design des services"
    # The staff move it: the invited get an update.
    command(p, s0, "modifier événement", "id: atelier-design\ndébut: 9h30\nfin: 12h")
    settle(p, 2, "2026-12-10T11:00:00+01:00")
    assert "modifié" in text_of(replies(p, s0)[-1])
    update = p.inbox(a0)[-1]
    assert "Modifié : Atelier design des services" in str(update["Subject"])
    assert "de 9h30 à 12h" in text_of(update)
    assert db.execute("select sequence from events").fetchone() == (1,)


def test_cancel_event_command(staffed, tmp_path):
    p = staffed()
    command(
        p,
        p.staff[0],
        "événement",
        "id: pot\ntitre: Pot de fin d'année\ndate: 2026-12-18\ndébut: 18h",
    )
    settle(p, 1, "2026-12-01T10:00:00+01:00")
    command(p, p.staff[0], "Annuler événement", "id: pot")
    settle(p, 2, "2026-12-01T11:00:00+01:00")
    assert "est annulé" in text_of(replies(p, p.staff[0])[-1])
    db = sqlite3.connect(p.config.database)
    assert db.execute("select status from events where id = 'pot'").fetchone() == ("cancelled",)
    p.tick("2026-12-11T10:00:00+01:00")
    subjects = [str(m["Subject"]) for m in p.inbox(p.defis["alpha"][0])]
    assert not any("Pot" in s for s in subjects)  # no reminder of a cancelled event


def test_skip_week_command(staffed):
    p = staffed()
    command(p, p.staff[0], "Sauter semaine", "semaine : 2026-W49\nraison : séminaire")
    settle(p, 1, "2026-12-01T10:00:00+01:00")
    assert "Il n'y aura pas de rétrospective hebdomadaire la semaine 2026-W49" in text_of(
        replies(p, p.staff[0])[0]
    )
    for time in ("09:00", "12:00", "15:00"):
        p.tick(f"2026-12-04T{time}:00+01:00")
    assert p.inbox(p.defis["alpha"][0]) == [] and p.inbox(p.config.addresses.cohort) == []
    p.tick("2026-12-11T09:00:00+01:00")
    assert len(p.inbox(p.defis["alpha"][0])) == 1  # the next week happens


def test_announcement_goes_into_the_next_digest_once(staffed):
    p = staffed()
    command(
        p,
        p.staff[0],
        "Annonce",
        "La session de janvier aura lieu à Lyon.\nPensez à réserver vos billets !",
    )
    settle(p, 1, "2026-11-26T10:00:00+01:00")
    assert "Annonce ajoutée au prochain récapitulatif" in text_of(replies(p, p.staff[0])[0])
    p.tick("2026-11-27T09:00:00+01:00")
    p.tick("2026-11-27T15:00:00+01:00")
    first = text_of(p.inbox(p.config.addresses.cohort)[0])
    assert "ANNONCES" in first and "aura lieu à Lyon.\n  Pensez à réserver" in first
    p.tick("2026-12-04T09:00:00+01:00")
    p.tick("2026-12-04T15:00:00+01:00")
    assert "Lyon" not in text_of(p.inbox(p.config.addresses.cohort)[1])


def test_missing_command_lists_the_défis_without_news(staffed):
    p = staffed({"alpha": 1, "beta": 1, "gamma": 1})
    p.tick("2026-11-27T09:00:00+01:00")
    a0 = p.defis["alpha"][0]
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "A", "Victoires :\nbien"), a0)
    g0 = p.defis["gamma"][0]  # gamma's only member says it is away: not "without news"
    p.swaks(fresh_mail(g0, p.shared, "Absent jusqu'au 4 décembre", "Bonjour,\n\nGaston"), g0)
    p.wait_shared(2)
    p.tick("2026-11-27T10:00:00+01:00")
    command(p, p.staff[0], "Qui manque ?")
    settle(p, 3, "2026-11-27T11:00:00+01:00")
    text = text_of(replies(p, p.staff[0])[0])
    assert "semaine 2026-W48 : 1 sur 3 ont répondu" in text
    without_news, away = text.split("Absents :")
    assert "* Beta" in without_news and "Gamma" not in without_news and "Alpha" not in text
    assert "* Gamma (jusqu'au vendredi 4 décembre inclus)" in away


def fresh_mail(sender: str, to: str, subject: str, body: str) -> bytes:
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = "Fri, 27 Nov 2026 09:30:00 +0100"
    msg["Message-ID"] = email.utils.make_msgid(domain="client.test")
    msg.set_content(body)
    return msg.as_bytes()


def test_resend_digest_command(staffed):
    p = staffed()
    p.tick("2026-11-27T09:00:00+01:00")
    p.tick("2026-11-27T15:00:00+01:00")
    command(p, p.staff[0], "Renvoyer récapitulatif", "semaine : 2026-W48")
    settle(p, 1, "2026-11-30T10:00:00+01:00")
    subjects = [str(m["Subject"]) for m in p.inbox(p.staff[0])]
    assert "Renvoi : Les nouvelles des défis, semaine 48" in subjects  # marked as a resend
    assert "renvoyé à " + p.staff[0] in text_of(replies(p, p.staff[0])[0])
    command(p, p.staff[0], "Renvoyer le récapitulatif", "semaine: 2026-W48\ndestinataire: promo")
    settle(p, 2, "2026-11-30T11:00:00+01:00")
    assert len(p.inbox(p.config.addresses.cohort)) == 2


def test_a_wrong_argument_gets_a_clear_error_and_changes_nothing(staffed):
    p = staffed()
    command(p, p.staff[0], "événement", "id: x\ntitre: Sans date")
    command(p, p.staff[0], "événement", "id: y\ntitre: T\ndate: 32/13/2026")
    command(p, p.staff[0], "événement", "id: réunion\ntitre: T\ndate: 2026-12-10")
    settle(p, 3, "2026-12-01T10:00:00+01:00")
    texts = sorted(text_of(m) for m in replies(p, p.staff[0]))
    assert any("il manque la ligne « date : … »" in t for t in texts)
    assert any("« 32/13/2026 » n'est pas une date" in t for t in texts)
    assert any("l'identifiant « réunion » ne doit contenir que" in t for t in texts)
    db = sqlite3.connect(p.config.database)
    assert db.execute("select count(*) from events").fetchone() == (0,)
    assert db.execute("select status from commands").fetchall() == [("failed",)] * 3


@pytest.mark.parametrize(
    ("who", "results", "reason"),
    [
        ("staff", None, "ne porte pas de résultat d'authentification"),
        ("staff", "fail", "ni DKIM ni SPF"),
        ("staff", "untrusted", "ne viennent pas d'un serveur de confiance"),
        ("staff", "forged-below", "ni DKIM ni SPF"),
        ("staff", "other-domain", "ne correspond pas au domaine"),
    ],
)
def test_commands_are_refused_and_reported_unless_staff_and_authenticated(
    staffed, who, results, reason
):
    p = staffed()
    sender = p.defis["alpha"][0] if who == "member" else p.staff[0]
    headers = {
        "pass": [passing(sender)],
        None: [],
        "fail": [
            f"{MX}; dkim=fail header.d={sender.split('@')[1]}; spf=softfail smtp.mailfrom={sender}"
        ],
        "untrusted": [f"evil.test; dkim=pass header.d={sender.split('@')[1]}"],
        "forged-below": [f"{MX}; dkim=none; spf=fail smtp.mailfrom={sender}", passing(sender)],
        "other-domain": [
            f"{MX}; dkim=pass header.d=elsewhere.test; spf=pass smtp.mailfrom=x@elsewhere.test"
        ],
    }[results]
    command(p, sender, "Annonce", "Réunion annulée, tout le monde à la maison !", headers)
    settle(p, 1, "2026-11-26T10:00:00+01:00")
    db = sqlite3.connect(p.config.database)
    assert db.execute("select count(*) from announcements").fetchone() == (0,)
    assert db.execute("select status from commands").fetchone() == ("refused",)
    [report] = [m for m in p.inbox(p.staff[1]) if "Commande refusée" in str(m["Subject"])]
    assert reason in text_of(report) and sender in text_of(report)
    assert replies(p, sender) == []  # a possibly forged sender is not answered


def test_a_forged_command_inside_a_défi_reply_is_never_executed(staffed):
    p = staffed()
    p.tick("2026-11-27T09:00:00+01:00")
    a0 = p.defis["alpha"][0]
    forged = clients.gmail(
        p.localmail.fetch(a0)[0], a0, "A", "annonce\ntexte : Le programme est terminé !"
    )
    forged = forged.replace(b"Subject: Re:", b"Subject: annonce Re:", 1)
    p.swaks(f"Authentication-Results: {passing(p.staff[0])}\r\n".encode() + forged, a0)
    command(
        p,
        a0,
        "annonce",
        "texte : Le programme est terminé !",
        [passing(p.staff[0])],
        extra=f"Cc: {p.shared}\r\n",
    )
    settle(p, 2, "2026-11-27T10:00:00+01:00")
    assert sqlite3.connect(p.config.database).execute(
        "select count(*) from announcements"
    ).fetchone() == (0,)
    p.tick("2026-11-27T15:00:00+01:00")
    assert "terminé" not in text_of(p.inbox(p.config.addresses.cohort)[0]).split("LES DÉFIS")[0]


def test_help_requests_are_reminded_until_a_staff_member_answers(staffed):
    p = staffed(mailflow={})
    a0 = p.defis["alpha"][0]
    raw = (
        f"From: Alice <{a0}>\r\nTo: {p.config.addresses.alias}\r\n"
        "Subject: Besoin d'un contact à la CNIL\r\n"
        f"Message-ID: <help-1@{a0.split('@')[1]}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\n"
        "Bonjour, auriez-vous un contact au service juridique de la CNIL ?\r\n"
    ).encode()
    p.swaks(raw, a0)
    settle(p, 1, "2026-11-23T10:00:00+01:00")
    for day in ("24", "25", "26"):
        p.tick(f"2026-11-{day}T09:30:00+01:00")
    waiting = [m for m in p.inbox(p.staff[0]) if "en attente" in str(m["Subject"])]
    assert len(waiting) == 1 and waiting[0]["Date"].datetime.day == 26  # two days after
    assert "Besoin d'un contact à la CNIL" in text_of(waiting[0]) and "Alpha" in text_of(waiting[0])
    # A staff member answers the défi with the alias in copy: settled.
    reply = (
        f"Authentication-Results: {passing(p.staff[1])}\r\n"
        f"From: Staff <{p.staff[1]}>\r\nTo: {a0}\r\n"
        f"Cc: {p.config.addresses.alias}\r\nSubject: Re: Besoin d'un contact à la CNIL\r\n"
        f"In-Reply-To: <help-1@{a0.split('@')[1]}>\r\nMessage-ID: <answer-1@x.test>\r\n"
        "\r\nVoici le contact.\r\n"
    ).encode()
    p.swaks(reply, p.staff[1])
    settle(p, 2, "2026-11-26T12:00:00+01:00")
    p.tick("2026-11-27T09:30:00+01:00")
    assert len([m for m in p.inbox(p.staff[0]) if "en attente" in str(m["Subject"])]) == 1
    row = (
        sqlite3.connect(p.config.database)
        .execute("select answered_by from help_requests")
        .fetchone()
    )
    assert row == (p.staff[1],)


def test_an_out_of_office_answering_a_reminder_gets_no_reply(staffed):
    p = staffed({"alpha": 1})
    p.tick("2026-11-27T09:00:00+01:00")
    p.tick("2026-11-27T12:00:00+01:00")
    a0 = p.defis["alpha"][0]
    reminder = p.localmail.fetch(a0)[1]
    p.swaks(clients.out_of_office(reminder, a0, "Alice"), a0)
    p.swaks(
        clients.out_of_office(reminder, a0, "Alice").replace(
            b"To: ", b"Cc: " + p.config.addresses.alias.encode() + b"\r\nTo: ", 1
        ),
        a0,
    )
    settle(p, 2, "2026-11-27T13:00:00+01:00")
    p.tick("2026-11-27T14:00:00+01:00")
    # The request and the first reminder: nothing in answer to the robot, and no second
    # reminder, the out-of-office saying she is away until 7 December.
    assert len(p.inbox(a0)) == 2
    kinds = sqlite3.connect(p.config.database).execute("select kind from inbound").fetchall()
    assert kinds == [("auto_reply",), ("auto_reply",)]


@pytest.mark.parametrize(
    ("header", "ok", "reason"),
    [
        (f"{MX}; dkim=pass header.d=programme.test", True, "pass"),
        (f"{MX}; dkim=pass header.d=mail.programme.test", True, "pass"),
        (f"{MX}; spf=pass smtp.mailfrom=bounce@programme.test; dkim=fail", True, "pass"),
        (f"{MX}; dmarc=pass (p=quarantine) header.from=programme.test", True, "pass"),
        (f"{MX}; dkim=pass header.d=gmail.test", False, "not_aligned"),
        (f"{MX}; dkim=neutral (body hash did not verify) header.d=programme.test", False, "fail"),
        (f"{MX.upper()} 1; dkim=pass header.i=@programme.test", True, "pass"),
        (f"{MX}; dmarc=pass header.from=evil.test", False, "not_aligned"),
        (
            f'{MX}; spf=fail smtp.mailfrom="x;dkim=pass header.d=programme.test"@evil.test',
            False,
            "fail",
        ),
        (f"{MX} (a; b (c)); dkim=pass (good; (nested)) header.d=programme.test", True, "pass"),
    ],
)
def test_authentication_results_parsing(header, ok, reason):
    verdict = authresults.check((header,), "soizic@programme.test", (MX,))
    assert (verdict.ok, verdict.reason) == (ok, reason)


def test_commands_in_english_work_too(staffed):
    p = staffed({"alpha": 1, "beta": 1})
    p.tick("2026-11-27T09:00:00+01:00")
    command(p, p.staff[0], "mailflow: who is missing", "week: 2026-W48")
    command(p, p.staff[0], "Skip week", "week: 2026-W50\nreason: seminar")
    settle(p, 2, "2026-11-27T10:00:00+01:00")
    texts = " ".join(text_of(m) for m in replies(p, p.staff[0]))
    assert (
        "semaine 2026-W48 : 0 sur 2 ont répondu" in texts
    )  # the replies speak the config's language
    assert "la semaine 2026-W50" in texts


def test_a_staff_address_hidden_in_an_encoded_display_name_is_not_staff(staffed):
    p = staffed()
    staff = p.staff[0]
    name = "=?utf-8?q?Soizic_=3C" + staff.replace("@", "=40") + "=3E?="
    # The attacker's own domain passes DMARC at the trusted server: still not staff.
    raw = (
        f"Authentication-Results: {MX}; dmarc=pass header.from=evil.test; dkim=pass"
        " header.d=evil.test\r\n"
        f"From: {name} <attacker@evil.test>\r\nTo: {p.config.addresses.alias}\r\n"
        "Subject: Annonce\r\nMessage-ID: <spoof@evil.test>\r\n\r\nLa session est annulée.\r\n"
    ).encode()
    p.swaks(raw, "attacker@evil.test")
    settle(p, 1, "2026-11-26T10:00:00+01:00")
    db = sqlite3.connect(p.config.database)
    # Not staff: no command at all, only a message to the alias for the staff to read.
    assert db.execute("select count(*) from commands").fetchone() == (0,)
    assert db.execute("select sender from help_requests").fetchall() == [("attacker@evil.test",)]
    assert db.execute("select count(*) from announcements").fetchone() == (0,)


def test_several_from_addresses_are_refused(staffed):
    p = staffed()
    raw = (
        f"Authentication-Results: {passing(p.staff[0])}\r\n"
        f"From: {p.staff[0]}, attacker@evil.test\r\nTo: {p.config.addresses.alias}\r\n"
        "Subject: Annonce\r\nMessage-ID: <two@evil.test>\r\n\r\nTexte.\r\n"
    ).encode()
    p.swaks(raw, p.staff[0])
    settle(p, 1, "2026-11-26T10:00:00+01:00")
    db = sqlite3.connect(p.config.database)
    assert db.execute("select status, outcome from commands").fetchone()[0] == "refused"
    assert "several_senders" in db.execute("select outcome from commands").fetchone()[0]


def test_a_subject_that_only_starts_with_a_keyword_is_no_command(staffed):
    p = staffed()
    a0 = p.defis["alpha"][0]
    command(p, a0, "Aide pour notre mise en production", "Bonjour, pouvez-vous nous aider ?")
    command(p, p.staff[0], "Skip la réunion de demain ?", "On la décale ?")
    settle(p, 2, "2026-11-26T10:00:00+01:00")
    db = sqlite3.connect(p.config.database)
    assert db.execute("select count(*) from commands").fetchone() == (0,)
    assert db.execute("select count(*) from skipped_occurrences").fetchone() == (0,)
    assert db.execute("select sender from help_requests").fetchall() == [(a0,)]


def test_an_answer_with_the_alias_in_copy_is_still_an_answer(staffed):
    p = staffed({"alpha": 1})
    p.tick("2026-11-27T09:00:00+01:00")
    a0 = p.defis["alpha"][0]
    reply = clients.gmail(p.localmail.fetch(a0)[0], a0, "A", "Victoires :\nen copie de l'équipe")
    reply = reply.replace(b"To: ", b"Cc: " + p.config.addresses.alias.encode() + b"\r\nTo: ", 1)
    p.swaks(reply, a0)
    settle(p, 1, "2026-11-27T10:00:00+01:00")
    row = sqlite3.connect(p.config.database).execute("select kind, status from inbound").fetchone()
    assert row == ("answer", "counted")


def test_a_planning_event_changed_by_mail_keeps_the_change_after_a_restart(staffed, tmp_path):
    planning = tmp_path / "planning.toml"
    planning.write_text(
        '[[event]]\nid = "session-12"\ntitle = "Session"\nstart = 2026-12-10T09:30:00\n'
        'end = 2026-12-10T17:30:00\nplace = "Tiers-lieu"\n'
    )
    p = staffed(events={"planning": str(planning)})
    p.tick("2026-12-03T10:00:00+01:00")  # invitations sent
    command(p, p.staff[0], "événement", "id: session-12\nlieu: DINUM, salle 3")
    command(p, p.staff[0], "événement", "id: session-12\ndébut: 14h\nfin: 17h")
    settle(p, 2, "2026-12-03T11:00:00+01:00")
    # Two changes in one tick: one update, about the event as it now is.
    updates = [m for m in p.inbox(p.defis["alpha"][0]) if "Modifié" in str(m["Subject"])]
    assert (
        len(updates) == 1
        and "de 14h à 17h" in text_of(updates[0])
        and "DINUM" in text_of(updates[0])
    )
    # A restart reads the planning file again: the staff's version stands, no new update.
    p.tick("2026-12-04T10:00:00+01:00")
    db = sqlite3.connect(p.config.database)
    assert db.execute("select place, source from events").fetchone() == ("DINUM, salle 3", "mail")
    assert len([m for m in p.inbox(p.defis["alpha"][0]) if "Modifié" in str(m["Subject"])]) == 1


def test_refused_commands_get_at_most_one_staff_notice_per_sender_and_day(staffed):
    p = staffed()
    forger = p.staff[0]
    fake = [f"{MX}; dkim=fail header.d={forger.split('@')[1]}; spf=fail"]
    for n in range(3):
        command(p, forger, "annonce", f"Fausse annonce {n}", results=fake)
    settle(p, 3, "2026-11-27T10:00:00+01:00")
    command(p, forger, "annonce", "Encore une", results=fake)
    settle(p, 4, "2026-11-27T11:00:00+01:00")
    refused = [m for m in p.inbox(p.staff[1]) if "Commande refusée" in str(m["Subject"])]
    assert len(refused) == 1  # not four
    command(p, forger, "annonce", "Le lendemain", results=fake)
    settle(p, 5, "2026-11-28T10:00:00+01:00")
    refused = [m for m in p.inbox(p.staff[1]) if "Commande refusée" in str(m["Subject"])]
    assert len(refused) == 2
    # The two after the first notice on the first day, and the one of 11:00.
    assert "Et 3 autres commandes refusées" in text_of(refused[1])
    db = sqlite3.connect(p.config.database)
    assert db.execute("select count(*) from commands where status = 'refused'").fetchone()[0] == 5

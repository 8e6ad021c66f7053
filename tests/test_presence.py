"""Who is away and answering early, against real Dovecot and aiosmtpd.

An out-of-office with a return date keeps its sender out of reminders through that day; a
défi whose members are all away is listed away in the digest, not without news; a member's
own "absente du … au …" is confirmed and obeyed, "de retour" ends it, a stranger's is
not obeyed; an answer sent on Thursday evening counts for Friday.
"""

from __future__ import annotations

import datetime as dt
import email.message
import email.policy
import email.utils
import json
import sqlite3
from zoneinfo import ZoneInfo

import pytest

from mailflow.errors import ConfigError
from mailflow.localmail import clients
from mailflow.programme.opening import opens_at
from mailflow.programme.workflow import load_workflow
from mailflow.receiving.presence import Statement, statement

from .conftest import ROOT, text_of


def at(day: str, time: str) -> str:
    return f"{day}T{time}:00+01:00"


def sent_at(day: str, time: str) -> dt.datetime:
    return dt.datetime.fromisoformat(at(day, time))


def fresh(sender: str, name: str, to: str, subject: str, body: str, when: dt.datetime) -> bytes:
    """A new mail (no thread), as Thunderbird writes one."""
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr((name, sender))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(when)
    msg["Message-ID"] = email.utils.make_msgid(domain=sender.split("@")[1])
    msg["User-Agent"] = "Mozilla Thunderbird"
    msg.set_content(body)
    return msg.as_bytes()


def out_of_office(request: bytes, sender: str, name: str, text: str, when: dt.datetime) -> bytes:
    """Exchange's automatic reply, saying ``text``."""
    raw = clients.out_of_office(request, sender, name, date=when)
    msg = email.message_from_bytes(raw, policy=email.policy.SMTP)
    msg.set_content(text, cte="quoted-printable")
    return msg.as_bytes()


def reminded(p, address: str) -> int:
    return sum("Rappel" in str(m["Subject"]) for m in p.inbox(address))


def test_an_out_of_office_keeps_its_sender_out_of_reminders_through_its_day(programme):
    p = programme({"alpha": 2, "beta": 1, "gamma": 1})
    a0, a1 = p.defis["alpha"]
    b0, c0 = p.defis["beta"][0], p.defis["gamma"][0]
    p.tick(at("2026-11-27", "09:00"))
    when = sent_at("2026-11-27", "09:05")
    text = "Bonjour,\n\nJe suis absente jusqu'au jeudi 10 décembre inclus.\n\nAlice"
    p.swaks(out_of_office(p.localmail.fetch(a0)[0], a0, "Alice Alpha", text, when), a0)
    text = "Bonjour,\n\nJe suis en congé, de retour le lundi 30 novembre.\n\nBenoît"
    p.swaks(out_of_office(p.localmail.fetch(b0)[0], b0, "Benoît Beta", text, when), b0)
    p.wait_shared(2)
    p.tick(at("2026-11-27", "12:00"))
    # Alpha's other member is reminded, beta (all away) and Alice are not; gamma is.
    assert [reminded(p, m) for m in (a0, a1, b0, c0)] == [0, 1, 0, 1]
    assert [len(p.inbox(m)) for m in (a0, b0)] == [1, 1]  # the request; no answer to a robot
    p.tick(at("2026-11-27", "15:00"))
    digest = text_of(p.inbox(p.config.addresses.cohort)[0])
    away, missing = digest.index("ABSENTS"), digest.index("SANS NOUVELLES")
    assert (
        "* Beta : toute l'équipe est absente jusqu'au dimanche 29 novembre 2026 inclus"
        in (digest[away:missing])
    )
    assert "* Alpha" in digest[missing:] and "* Gamma" in digest[missing:]
    assert "Beta" not in digest[missing:] and "0 défi sur 3 a répondu" in digest
    assert "Absents" in text_of(p.inbox(p.config.addresses.cohort)[0], "html")

    # Still away on Friday 4 December: the request goes, no reminder; Benoît is back.
    p.tick(at("2026-12-04", "09:00"))
    p.tick(at("2026-12-04", "12:00"))
    assert [reminded(p, m) for m in (a0, a1, b0)] == [0, 2, 1]
    assert len(p.inbox(a0)) == 2  # both requests
    status = p.run("status", "--week", "2026-W49").output
    assert f"{a0} (Alpha) : absent·e jusqu'au jeudi 10 décembre inclus, d'après sa" in status
    assert b0 not in status.split("Absences :")[1]  # over

    # Friday 11 December is the day after her last day: reminded again.
    p.tick(at("2026-12-11", "09:00"))
    p.tick(at("2026-12-11", "12:00"))
    assert [reminded(p, m) for m in (a0, a1)] == [1, 3]


def test_absent_by_mail_from_a_member_and_not_from_a_stranger(programme, new_address):
    p = programme({"alpha": 1, "beta": 1})
    a0, b0 = p.defis["alpha"][0], p.defis["beta"][0]
    stranger = new_address("stranger")
    thursday = sent_at("2026-11-26", "10:00")
    mine = fresh(a0, "Alice Alpha", p.shared, "Absente du 27/11 au 04/12",
                 "Bonjour,\n\nBonne semaine à vous !\n\nAlice", thursday)  # fmt: skip
    p.swaks(mine, a0)
    p.swaks(fresh(stranger, "X", p.shared, "Congés", "absent jusqu'au 12 janvier", thursday),
            stranger)  # fmt: skip
    p.wait_shared(2)
    p.tick(at("2026-11-26", "10:00"))
    [confirmation] = p.inbox(a0)
    assert str(confirmation["Subject"]) == "Absence notée jusqu'au vendredi 4 décembre"
    body = text_of(confirmation)
    assert "du vendredi 27 novembre 2026 jusqu'au vendredi 4 décembre 2026 inclus" in body
    assert "les rappels reprendront le samedi 5 décembre" in body
    assert "jusqu'au vendredi 4 décembre 2026" in text_of(confirmation, "html")
    original = email.message_from_bytes(mine, policy=email.policy.default)
    assert confirmation["In-Reply-To"] == original["Message-ID"]
    assert confirmation["Auto-Submitted"] == "auto-generated"
    assert p.inbox(stranger) == []  # a stranger's absence is neither obeyed nor answered
    db = sqlite3.connect(p.config.database)
    rows = db.execute("select sender, kind, status, data from inbound order by message").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (a0, "absence", "recorded"), (stranger, "unknown_sender", "recorded"),
    ]  # fmt: skip
    assert json.loads(rows[1][3])["refused"] == "not in the roster"
    assert db.execute("select address from absences").fetchall() == [(a0,)]

    p.tick(at("2026-11-27", "09:00"))
    p.tick(at("2026-11-27", "12:00"))
    assert [len(p.inbox(m)) for m in (a0, b0)] == [2, 2]  # alpha: the request, no reminder
    status = p.run("status", "--week", "2026-W48").output
    assert (
        f"{a0} (Alpha) : absent·e du vendredi 27 novembre jusqu'au vendredi 4 décembre inclus,"
        " annoncée par mail" in status
    )
    assert stranger in status.split("À lire par l'équipe")[1]  # listed to the staff

    # Back early, in answer to the request: confirmed, and reminded again.
    p.swaks(clients.gmail(p.localmail.fetch(a0)[1], a0, "Alice Alpha", "De retour !",
                          date=sent_at("2026-11-27", "12:30")), a0)  # fmt: skip
    p.wait_shared(3)
    p.tick(at("2026-11-27", "13:00"))
    assert str(p.inbox(a0)[2]["Subject"]) == "Bon retour !"
    p.tick(at("2026-11-27", "14:00"))
    assert reminded(p, a0) == 1 and len(p.inbox(a0)) == 4
    assert db.execute("select kind, status from inbound where message = 3").fetchone() == (
        "absence", "recorded",
    )  # fmt: skip


def test_an_absence_without_a_readable_day_is_asked_again_in_english(programme):
    p = programme({"alpha": 1}, languages={"alpha": "en"})
    a0 = p.defis["alpha"][0]
    when = sent_at("2026-11-26", "10:00")
    p.swaks(fresh(a0, "Alice", p.shared, "Re: news", "Hi,\n\nAway next week\n", when), a0)
    p.wait_shared(1)
    p.tick(at("2026-11-26", "10:00"))
    [answer] = p.inbox(a0)
    assert str(answer["Subject"]) == "Absence: which days?"
    assert '"away until January 12"' in text_of(answer)
    db = sqlite3.connect(p.config.database)
    assert db.execute("select kind, status from inbound").fetchall() == [("absence", "unclear")]
    assert db.execute("select count(*) from absences").fetchone() == (0,)


def test_an_answer_on_thursday_evening_counts_for_friday(programme):
    p = programme({"alpha": 1, "beta": 1, "gamma": 1})
    a0, b0, c0 = (p.defis[d][0] for d in ("alpha", "beta", "gamma"))
    p.tick(at("2026-11-27", "09:00"))
    p.tick(at("2026-11-27", "15:00"))
    # Thursday 11:00, before answers open: beta's reply is a late answer for week 48.
    p.swaks(clients.gmail(p.localmail.fetch(b0)[0], b0, "Bob", "Victoires :\nen retard",
                          date=sent_at("2026-12-03", "11:00")), b0)  # fmt: skip
    p.wait_shared(1)
    p.tick(at("2026-12-03", "11:00"))
    # Thursday 18:00: alpha replies to last week's request, gamma writes a fresh mail.
    reply = clients.gmail(p.localmail.fetch(a0)[0], a0, "Alice Alpha",
                          "Victoires :\nle pilote tourne en avance\n\nBesoins :\nun juriste",
                          date=sent_at("2026-12-03", "18:00"))  # fmt: skip
    p.swaks(reply, a0)
    p.swaks(fresh(c0, "Chloé", p.shared, "Notre rétro", "Victoires :\nrecette finie",
                  sent_at("2026-12-03", "18:00")), c0)  # fmt: skip
    p.wait_shared(3)
    p.tick(at("2026-12-03", "18:00"))
    receipt = p.inbox(a0)[1]
    assert "semaine 49" in str(receipt["Subject"])
    assert "compte pour la rétrospective du vendredi 4 décembre 2026" in text_of(receipt)
    html = text_of(receipt, "html")
    assert "le pilote tourne en avance" in html and "vendredi 4 décembre 2026" in html
    sent = email.message_from_bytes(reply, policy=email.policy.default)
    assert receipt["In-Reply-To"] == sent["Message-ID"]
    assert receipt["References"].split() == [*sent["References"].split(), sent["Message-ID"]]
    assert "vendredi 4 décembre 2026" in text_of(p.inbox(c0)[1])

    for time in ("09:00", "12:00", "14:00", "15:00"):
        p.tick(at("2026-12-04", time))
    # The request goes to everyone; only beta, whose answer counted for last week, is reminded.
    assert [reminded(p, m) for m in (a0, b0, c0)] == [0, 2, 0]
    digest = text_of(p.inbox(p.config.addresses.cohort)[1])
    blocks, late = digest.index("LES DÉFIS"), digest.index("ARRIVÉES APRÈS")
    assert "le pilote tourne en avance" in digest[blocks:late]
    assert "recette finie" in digest[blocks:late]
    assert "en retard" in digest[late:] and "2 défis sur 3 ont répondu" in digest
    exported = json.loads(p.run("export", "--format", "json").output)
    assert [(r["respondent"], r["occurrence"], r["status"]) for r in exported] == [
        ("beta", "2026-W48", "late"), ("alpha", "2026-W49", "counted"),
        ("gamma", "2026-W49", "counted"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("subject", "text", "expected"),
    [
        (
            "Absente du 21/12 au 03/01",
            "",
            Statement("away", dt.date(2027, 1, 3), dt.date(2026, 12, 21)),
        ),
        (
            "Re: Rétro",
            "Bonjour,\n\nabsent jusqu'au 12 janvier\n\nMarc",
            Statement("away", dt.date(2027, 1, 12)),
        ),
        (
            "x",
            "Je serai absente du 21 au 31 décembre.",
            Statement("away", dt.date(2026, 12, 31), dt.date(2026, 12, 21)),
        ),
        ("Away until January 12", "", Statement("away", dt.date(2027, 1, 12))),
        (
            "x",
            "Hello team,\nI'll be off from 21/12 to 3/1",
            Statement("away", dt.date(2027, 1, 3), dt.date(2026, 12, 21)),
        ),
        ("De retour", "", Statement("back")),
        ("Re: Rétro", "I'm back!", Statement("back")),
        ("x", "absent la semaine prochaine", Statement("unclear")),
        ("x", "absent jusqu'au 12 novembre 2026", Statement("unclear")),  # over already
        # An out-of-office's present tense, an answer's sentence: no statement.
        ("x", "Je suis absente jusqu'au 4 décembre inclus, avec un accès limité.", None),
        ("x", "Victoires :\nabsente jusqu'au 3 janvier, mais la V2 est en ligne", None),
        ("x", "De retour de la conférence : super accueil.", None),
        (
            "x",
            "Absente cette semaine, mais voici nos nouvelles : la V2 est en ligne, le comité "
            "a validé la suite et nous recrutons un développeur pour janvier, enfin.",
            None,
        ),
        ("Absent jusqu'au 12 janvier", "Victoires :\nla V2", None),  # headed: an answer
    ],
)
def test_what_a_mail_says_of_its_author_presence(subject, text, expected):
    headed = text.startswith("Victoires :\nla")
    assert statement(subject, text, dt.date(2026, 12, 10), headed) == expected


def test_answers_open_at_a_weekday_and_time_before_the_day(tmp_path):
    retro = load_workflow(ROOT / "workflows" / "retro.toml")
    assert retro.opens == (3, dt.time(12))
    paris = ZoneInfo("Europe/Paris")
    friday, thursday = dt.date(2026, 12, 4), dt.datetime(2026, 12, 3, 12, tzinfo=paris)
    assert opens_at(retro, friday, paris) == thursday
    assert opens_at(retro, dt.date(2026, 12, 3), paris) == thursday  # a holiday-moved Thursday
    text = (ROOT / "workflows" / "retro.toml").read_text()
    for wrong in ("jeudi 12:00", "thursday noon", "thursday 25:00"):
        path = tmp_path / "retro.toml"
        path.write_text(text.replace('opens = "thursday 12:00"', f'opens = "{wrong}"'))
        with pytest.raises(ConfigError, match=r"collect\.opens: expected a weekday and a time"):
            load_workflow(path)
    path.write_text(text.replace('opens = "thursday 12:00"\n', ""))
    assert load_workflow(path).opens is None  # right after the previous digest

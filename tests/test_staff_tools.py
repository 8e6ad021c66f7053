"""The staff's own tools do what the staff mean, against the real servers.

A resend is the digest that went out, as it went out; stand-up notes leave no answer
out; a staff member's plain mail is not their answer; a member's "Aide : …" is a
request for help, not a refused command.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import sqlite3

from mailflow.localmail import clients

from .conftest import ROOT, text_of
from .test_alias import MX, command, replies, settle
from .test_events import PLANNING, only


def friday(p, day: str) -> None:
    for time in ("09:00", "12:00", "14:00", "15:00"):
        p.tick(f"{day}T{time}:00+01:00")


def body(message) -> str:
    """A mail's text and HTML, as a reader sees them."""
    return text_of(message) + text_of(message, "html")


def staffed(programme, defis=None, **overrides):
    overrides.setdefault("security", {})["trusted_authserv_ids"] = [MX]
    return programme(defis or {"alpha": 1, "beta": 1}, **overrides)


def test_resend_without_a_week_sends_the_last_digest_as_it_went_out(programme):
    p = staffed(programme)
    a0 = p.defis["alpha"][0]
    p.tick("2026-12-11T09:00:00+01:00")
    request = p.localmail.fetch(a0)[0]
    p.swaks(clients.gmail(request, a0, "Alice", "Besoins :\nun accès VPN"), a0)
    p.wait_shared(1)
    friday(p, "2026-12-11")  # week 50
    # After the digest: a late answer for week 50, and an announcement for the next one.
    p.swaks(clients.gmail(request, a0, "Alice", "Besoins :\nun accès VPN et un badge"), a0)
    command(p, p.staff[0], "Annonce", "La session de janvier aura lieu à Lyon.")
    p.wait_shared(3)
    p.tick("2026-12-14T09:00:00+01:00")
    # Monday: "resend" with no week, to the cohort.
    command(p, p.staff[0], "Renvoyer récapitulatif", "destinataire : promo")
    settle(p, 4, "2026-12-14T10:00:00+01:00")
    cohort = p.config.addresses.cohort
    original, again = p.inbox(cohort)
    assert "Renvoi" in str(again["Subject"]) and str(original["Subject"]) in str(again["Subject"])
    assert "semaine 50" in str(again["Subject"])  # never week 51, whose digest has not gone
    assert body(again) == body(original)  # what went out, not a rebuild
    assert "Lyon" not in body(again) and "badge" not in body(again)
    assert (
        again["Reply-To"] == original["Reply-To"] and again["Message-ID"] != original["Message-ID"]
    )
    # The announcement and the late answer still go, once, in the next digest.
    friday(p, "2026-12-18")
    following = body(p.inbox(cohort)[2])
    assert following.count("Lyon") == 2 and "badge" in following  # text and HTML parts


def test_resend_of_a_week_whose_digest_has_not_gone_is_refused(programme):
    p = staffed(programme)
    friday(p, "2026-12-11")
    p.tick("2026-12-14T09:00:00+01:00")
    command(p, p.staff[0], "Renvoyer récapitulatif", "semaine : 2026-W51\ndestinataire : promo")
    settle(p, 1, "2026-12-14T10:00:00+01:00")
    [reply] = replies(p, p.staff[0])
    assert "non exécutée" in str(reply["Subject"])
    assert "2026-W51 n'est pas encore parti" in text_of(reply) and "2026-W50" in text_of(reply)
    assert len(p.inbox(p.config.addresses.cohort)) == 1


def test_previewing_a_week_that_never_ran_says_so_first(programme):
    p = staffed(programme)
    friday(p, "2026-12-11")
    sent = p.run("digest", "--week", "2026-W50", "--preview").output
    assert sent.splitlines()[0].startswith("(Ce récapitulatif est parti le ven. 11 déc. 2026")
    never = p.run("digest", "--week", "2026-W49", "--preview").output
    assert never.splitlines()[0].startswith("(Pas envoyé : la demande de 2026-W49 n'est pas partie")


def test_an_answer_after_the_notes_is_in_the_next_notes(programme, tmp_path):
    planning = tmp_path / "planning.toml"
    january = PLANNING.replace("session-2026-12", "session-2027-01").replace(
        "2026-12-10", "2027-01-14"
    )
    planning.write_text(PLANNING + january)
    workflows = only(tmp_path, "retro", "standup")
    p = programme(
        {"alpha": 1}, mailflow={"workflows": str(workflows)}, events={"planning": str(planning)}
    )
    a0 = p.defis["alpha"][0]
    p.tick("2026-12-04T09:00:00+01:00")
    p.tick("2026-12-08T09:30:00+01:00")  # the notes of the 10 December session
    # Alpha answers on the 9th, after its notes went out, before the session.
    request = p.localmail.fetch(a0)[0]
    p.swaks(clients.gmail(request, a0, "Alice", "Victoires :\nla démo du 9"), a0)
    p.wait_shared(1)
    p.tick("2026-12-09T12:00:00+01:00")
    p.tick("2027-01-12T09:30:00+01:00")  # the notes of the 14 January session
    notes = [m for m in p.inbox(a0) if "stand-up" in str(m["Subject"])]
    assert len(notes) == 2
    assert "la démo du 9" not in text_of(notes[0]) and "la démo du 9" in text_of(notes[1])


def test_a_staff_members_plain_mail_is_not_their_gazette_answer(programme, tmp_path):
    workflows = tmp_path / "only-gazette"
    workflows.mkdir()
    shutil.copy(ROOT / "workflows" / "gazette.toml", workflows)
    p = programme({"alpha": 1}, mailflow={"workflows": str(workflows)})
    s0, s1 = p.staff
    p.tick("2026-11-23T10:00:00+01:00")  # the gazette's request, to each staff member
    raw = (
        f"From: Staff One <{s1}>\r\nTo: {p.config.addresses.alias}\r\n"
        "Subject: Point sur le bootcamp\r\nMessage-ID: <plain.1@staff.test>\r\n\r\n"
        "Bonjour, où en est-on du bootcamp ?\r\n"
    ).encode()
    p.swaks(raw, s1, p.shared)
    p.wait_shared(1)
    p.tick("2026-11-26T10:00:00+01:00")  # the reminder
    assert [len(p.inbox(s)) for s in (s0, s1)] == [2, 2]  # both still reminded
    db = sqlite3.connect(p.config.database)
    assert db.execute("select count(*) from inbound where kind = 'answer'").fetchone() == (0,)


def test_a_members_help_subject_is_a_help_request_not_a_refused_command(programme):
    p = staffed(programme)
    a0 = p.defis["alpha"][0]
    raw = (
        f"From: Alice <{a0}>\r\nTo: {p.config.addresses.alias}\r\n"
        "Subject: Aide : accès à la plateforme\r\nMessage-ID: <aide.1@alpha.test>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Bonjour, nous n'arrivons plus à nous connecter.\r\n"
    ).encode()
    p.swaks(raw, a0, p.shared)
    # A member writing the bare keyword is asking for help too.
    p.swaks(raw.replace(b"Aide : acc\xc3\xa8s \xc3\xa0 la plateforme", b"Aide").replace(
        b"aide.1", b"aide.2"), a0, p.shared)  # fmt: skip
    p.wait_shared(2)
    p.tick("2026-12-01T10:00:00+01:00")  # a Tuesday
    staff = [m for s in p.staff for m in p.inbox(s)]
    assert not [m for m in staff if "refusée" in str(m["Subject"])]
    db = sqlite3.connect(p.config.database)
    assert db.execute("select subject from help_requests order by message").fetchall() == [
        ("Aide : accès à la plateforme",),
        ("Aide",),
    ]
    assert db.execute("select count(*) from commands").fetchone() == (0,)
    p.tick("2026-12-04T09:30:00+01:00")  # Friday's desk mail: a request of Tuesday
    [desk] = [m for m in p.inbox(p.staff[0]) if "en attente" in str(m["Subject"])]
    assert "accès à la plateforme" in text_of(desk) and "il y a 3 jours" in text_of(desk)


def test_the_resend_is_one_mime_message_a_client_reads(programme):
    """The resend's bytes parse as the original's: same parts, same charset."""
    p = staffed(programme)
    friday(p, "2026-12-11")
    command(p, p.staff[0], "Renvoyer récapitulatif")
    settle(p, 1, "2026-12-14T10:00:00+01:00")
    again = next(m for m in p.inbox(p.staff[0]) if "Renvoi" in str(m["Subject"]))
    raw = again.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert [part.get_content_type() for part in parsed.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]


def test_status_keeps_an_answer_whatever_comes_after_it(programme, new_address):
    p = programme({"alpha": 1, "beta": 1})
    a0, b0 = p.defis["alpha"][0], p.defis["beta"][0]
    p.tick("2026-11-27T09:00:00+01:00")
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], a0, "Alice", "Victoires :\nune"), a0)
    p.swaks(clients.gmail(p.localmail.fetch(b0)[0], b0, "Bruno", "Victoires :\ndeux"), b0)
    p.wait_shared(2)
    friday(p, "2026-11-27")
    # After the digest: a non-member writes for alpha; beta corrects its on-time answer.
    outsider = new_address("collegue")
    p.swaks(clients.gmail(p.localmail.fetch(a0)[0], outsider, "X", "Victoires :\nmoi"), outsider)
    p.swaks(clients.gmail(p.localmail.fetch(b0)[0], b0, "Bruno", "Victoires :\ntrois"), b0)
    p.wait_shared(4)
    p.tick("2026-11-27T16:00:00+01:00")
    status = p.run("status", "--week", "2026-W48").output
    lines = status.splitlines()
    alpha = lines.index(next(line for line in lines if "Alpha" in line))
    beta = next(line for line in lines if "Beta" in line)
    assert "[x]" in lines[alpha]
    assert f"et un message de {outsider} : pas membre du défi, non compté" in lines[alpha + 1]
    assert "[x]" in beta and beta.endswith(", corrigée après le récapitulatif")  # not late

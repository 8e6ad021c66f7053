"""Events against real servers: invitations, updates, cancellations, stand-up notes."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar

from mailflow.localmail import clients

from .conftest import ROOT, text_of

PARIS = ZoneInfo("Europe/Paris")

PLANNING = """
[[event]]
id = "session-2026-12"
kind = "session"
title = "Session collective de décembre"
start = 2026-12-10T09:30:00
end = 2026-12-10T17:30:00
place = "Tiers-lieu, 20 avenue de Ségur, Paris"
theme = "Mesurer l'impact"
agenda = "9h30 stand-up des défis"
audience = "everyone"
"""

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Agenda de la promo//FR
BEGIN:VEVENT
UID:seminaire-hiver-2027@agenda.programme.test
DTSTAMP:20261101T120000Z
DTSTART;VALUE=DATE:20270114
DTEND;VALUE=DATE:20270116
SUMMARY:Séminaire d'hiver
LOCATION:Domaine de la Forêt, Fontainebleau
CATEGORIES:SEMINAR
X-MAILFLOW-AUDIENCE:entrepreneurs
END:VEVENT
END:VCALENDAR
"""


def only(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(ROOT / "workflows" / f"{name}.toml", folder)
    return folder


def at(day: str, time: str = "10:00") -> str:
    return dt.datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=PARIS).isoformat()


def invitation(msg) -> icalendar.Calendar:
    part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    calendar = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    calendar.method_param = part.get_param("method")
    return calendar


def vevent(msg) -> icalendar.Event:
    return next(iter(invitation(msg).walk("VEVENT")))


def test_reminders_with_invitations_an_update_and_a_cancellation(programme, tmp_path, new_address):
    planning = tmp_path / "planning.toml"
    planning.write_text(PLANNING)
    calendar = tmp_path / "agenda.ics"
    calendar.write_text(ICS)
    p = programme({"alpha": 1, "beta": 1},
                  mailflow={"workflows": str(only(tmp_path, "events"))},
                  events={"planning": str(planning), "calendar": str(calendar)})  # fmt: skip
    a0, b0 = p.defis["alpha"][0], p.defis["beta"][0]
    everyone = [a0, b0, *p.staff]

    # A month, ticked every day at 10:00 (and at 9:00, when nothing is due).
    day = dt.date(2026, 11, 30)
    while day <= dt.date(2026, 12, 8):
        p.tick(at(day.isoformat(), "09:00"))
        p.tick(at(day.isoformat()))
        day += dt.timedelta(days=1)
    # One week before, at 10:00 Paris time, to everyone: the session's invitation.
    for address in everyone:
        [reminder] = p.inbox(address)
        assert reminder["Date"].datetime == dt.datetime(2026, 12, 3, 10, tzinfo=PARIS)
        assert "Dans une semaine : Session collective de décembre" in str(reminder["Subject"])
        event = vevent(reminder)
        assert invitation(reminder).method_param == "REQUEST"
        assert str(event["UID"]) == "session-2026-12@" + p.config.addresses.message_id_domain
        assert event["SEQUENCE"] == 0
        assert event.decoded("DTSTART") == dt.datetime(2026, 12, 10, 9, 30, tzinfo=PARIS)
        assert event["DTSTART"].params["TZID"] == "Europe/Paris"
        assert str(event["LOCATION"]) == "Tiers-lieu, 20 avenue de Ségur, Paris"
        assert any(p.get_filename() == "invite.ics" for p in reminder.walk())
        assert str(event["ATTENDEE"]) == f"mailto:{address}"
    assert "Tiers-lieu" in text_of(p.inbox(a0)[0]) and "de 9h30 à 17h30" in text_of(p.inbox(a0)[0])

    # The session moves to the afternoon, in another place: an update, SEQUENCE 1.
    planning.write_text(
        PLANNING.replace("09:30:00", "14:00:00").replace(
            "Tiers-lieu, 20 avenue de Ségur", "DINUM, 20 avenue de Ségur"
        )
    )
    p.tick(at("2026-12-08", "16:00"))
    update = p.inbox(a0)[1]
    assert "Modifié : Session collective de décembre" in str(update["Subject"])
    assert invitation(update).method_param == "REQUEST"
    assert vevent(update)["SEQUENCE"] == 1
    assert vevent(update).decoded("DTSTART") == dt.datetime(2026, 12, 10, 14, tzinfo=PARIS)
    assert "DINUM" in str(vevent(update)["LOCATION"])

    # The day before: the reminder carries the current details.
    p.tick(at("2026-12-09"))
    reminder = p.inbox(a0)[2]
    assert "Demain : Session collective" in str(reminder["Subject"])
    assert vevent(reminder)["SEQUENCE"] == 1 and "de 14h à 17h30" in text_of(reminder)

    # Removed from the planning: cancelled, SEQUENCE 2, METHOD:CANCEL.
    planning.write_text("")
    p.tick(at("2026-12-09", "18:00"))
    cancel = p.inbox(a0)[3]
    assert "Annulé : Session collective de décembre" in str(cancel["Subject"])
    assert invitation(cancel).method_param == "CANCEL"
    assert str(invitation(cancel)["METHOD"]) == "CANCEL"
    assert vevent(cancel)["SEQUENCE"] == 2 and str(vevent(cancel)["STATUS"]) == "CANCELLED"
    for time in ("10:00", "18:00"):
        p.tick(at("2026-12-10", time))
    assert len(p.inbox(a0)) == 4  # nothing more for a cancelled event

    # The ICS seminar, for the entrepreneurs only: a week before, all day, two days.
    p.tick(at("2027-01-07"))
    seminar = p.inbox(a0)[4]
    assert "Séminaire d'hiver" in str(seminar["Subject"])
    assert vevent(seminar).decoded("DTSTART") == dt.date(2027, 1, 14)
    assert vevent(seminar).decoded("DTEND") == dt.date(2027, 1, 16)
    assert "Du jeudi 14 janvier 2027 au vendredi 15 janvier 2027" in text_of(seminar)
    assert all("Séminaire" not in str(m["Subject"]) for m in p.inbox(p.staff[0]))


def test_the_digest_lists_the_key_dates_of_the_coming_weeks(programme, tmp_path):
    planning = tmp_path / "planning.toml"
    planning.write_text(PLANNING)
    p = programme({"alpha": 1}, mailflow={"workflows": str(only(tmp_path, "retro"))},
                  events={"planning": str(planning)})  # fmt: skip
    p.tick("2026-11-27T09:00:00+01:00")
    p.tick("2026-11-27T15:00:00+01:00")
    digest = text_of(p.inbox(p.config.addresses.cohort)[0])
    dates = digest[digest.index("DATES CLÉS") :]
    assert "jeudi 10 décembre : Session collective de décembre (Tiers-lieu" in dates


def test_standup_notes_hold_exactly_that_défis_answers_not_in_earlier_notes(programme, tmp_path):
    planning = tmp_path / "planning.toml"
    planning.write_text(
        PLANNING.replace("session-2026-12", "session-2026-11").replace("2026-12-10", "2026-11-19")
        + PLANNING
    )
    workflows = only(tmp_path, "retro", "standup")
    p = programme(
        {"alpha": 1, "beta": 1},
        mailflow={"workflows": str(workflows)},
        events={"planning": str(planning)},
    )
    a0, b0 = p.defis["alpha"][0], p.defis["beta"][0]

    def answer_week(friday: str, alpha: str, beta: str) -> None:
        p.tick(f"{friday}T09:00:00+01:00")
        for member, text in ((a0, alpha), (b0, beta)):
            request = [
                r
                for r in p.localmail.fetch(member)
                if b"Subject: =?utf-8?q?R=C3=A9trospective" in r
            ][-1]
            p.swaks(clients.gmail(request, member, "X", f"Victoires :\n{text}"), member)
        p.wait_shared(count_answers[0] + 2)
        count_answers[0] += 2
        p.tick(f"{friday}T15:00:00+01:00")

    count_answers = [0]
    answer_week("2026-11-13", "alpha avant la session de novembre", "beta semaine 46")
    p.tick("2026-11-17T09:30:00+01:00")  # the notes of the 19 November session
    [november] = [m for m in p.inbox(a0) if "stand-up" in str(m["Subject"])]
    assert "avant la session de novembre" in text_of(november)
    answer_week("2026-11-20", "alpha semaine 47", "beta semaine 47")
    answer_week("2026-11-27", "alpha semaine 48", "beta semaine 48")
    answer_week("2026-12-04", "alpha semaine 49", "beta semaine 49")
    # Two working days before the 10 December session, at 9:30.
    p.tick("2026-12-08T09:30:00+01:00")
    notes = [m for m in p.inbox(a0) if "stand-up" in str(m["Subject"])][1:]
    assert len(notes) == 1
    assert notes[0]["Date"].datetime == dt.datetime(2026, 12, 8, 9, 30, tzinfo=PARIS)
    text = text_of(notes[0])
    for week in ("47", "48", "49"):
        assert f"alpha semaine {week}" in text
    assert "avant la session de novembre" not in text and "beta" not in text
    assert text.index("alpha semaine 47") < text.index("alpha semaine 49")


def test_a_wrong_planning_value_is_named(programme, tmp_path):
    planning = tmp_path / "planning.toml"
    planning.write_text(PLANNING.replace('audience = "everyone"', 'audience = "tout le monde"'))
    p = programme({"alpha": 1}, events={"planning": str(planning)})
    result = p.run("tick", "--at", "2026-12-01T10:00:00+01:00")
    assert result.exit_code == 1
    assert (
        "planning.toml: event \"session-2026-12\".audience: expected one of 'entrepreneurs'"
        in result.output
    )


def test_the_events_command_shows_the_planning(programme, tmp_path):
    planning = tmp_path / "planning.toml"
    planning.write_text(PLANNING.replace("2026-12-10", "2036-12-10"))
    p = programme({"alpha": 1}, events={"planning": str(planning)})
    result = p.run("events")
    assert result.exit_code == 0, result.output
    assert (
        "Le mercredi 10 décembre 2036, de 9h30 à 17h30 : Session collective de décembre\n"
        "  [session-2026-12] session collective, pour tout le monde" in result.output
    )
    assert "Tiers-lieu, 20 avenue de Ségur, Paris" in result.output


def test_events_are_read_from_an_ics_url(programme, tmp_path):
    import http.server
    import threading

    (tmp_path / "agenda.ics").write_text(ICS)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/agenda.ics"
        p = programme({"alpha": 1}, mailflow={"workflows": str(only(tmp_path, "events"))},
                      events={"calendar": url})  # fmt: skip
        p.tick(at("2027-01-07"))
    finally:
        server.shutdown()
        server.server_close()
    [invitation_mail] = p.inbox(p.defis["alpha"][0])
    assert "Séminaire d'hiver" in str(invitation_mail["Subject"])
    assert str(vevent(invitation_mail)["UID"]) == "seminaire-hiver-2027@agenda.programme.test"

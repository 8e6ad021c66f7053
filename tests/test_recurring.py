"""Recurring calendar events against real servers: one reminder per occurrence, at the right
local time across DST, each a valid iMIP invitation to that day; a moved occurrence gets an
update, a removed one a cancellation of that day only."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import icalendar
import pytest

from mailflow.errors import MailflowError
from mailflow.programme.events import load_ics

from .conftest import text_of
from .test_events import invitation, only, vevent

PARIS = ZoneInfo("Europe/Paris")
UID = "sessions-2027@agenda.programme.test"
VTIMEZONE = """BEGIN:VTIMEZONE
TZID:Europe/Paris
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
"""
# As Nextcloud exports "the second Thursday of each month, six times": January to June
# 2027, February cancelled (EXDATE). Daylight saving time starts on 28 March 2027.
SERIES = f"""BEGIN:VEVENT
UID:{UID}
DTSTAMP:20261201T120000Z
DTSTART;TZID=Europe/Paris:20270114T093000
DTEND;TZID=Europe/Paris:20270114T173000
RRULE:FREQ=MONTHLY;BYDAY=2TH;COUNT=6
EXDATE;TZID=Europe/Paris:20270211T093000{{exdates}}
SUMMARY:Session collective
LOCATION:Tiers-lieu, Paris
CATEGORIES:SESSION
END:VEVENT
"""
# The April session moved to the 15th, in the afternoon.
MOVED = f"""BEGIN:VEVENT
UID:{UID}
RECURRENCE-ID;TZID=Europe/Paris:20270408T093000
DTSTAMP:20261201T120000Z
DTSTART;TZID=Europe/Paris:20270415T140000
DTEND;TZID=Europe/Paris:20270415T173000
SUMMARY:Session collective
LOCATION:Tiers-lieu, Paris
CATEGORIES:SESSION
SEQUENCE:1
END:VEVENT
"""
SESSIONS = [dt.date(2027, 1, 14), dt.date(2027, 3, 11), dt.date(2027, 4, 8),
            dt.date(2027, 5, 13), dt.date(2027, 6, 10)]  # fmt: skip


def feed(moved: bool = False, exdates: str = "") -> str:
    series = SERIES.replace("{exdates}", exdates)
    return (
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Nextcloud calendar//FR\n"
        f"{VTIMEZONE}{series}{MOVED if moved else ''}END:VCALENDAR\n"
    )


def paris(day: dt.date, time: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(time), tzinfo=PARIS)


def test_expansion_gives_one_event_per_occurrence_with_stable_ids(tmp_path):
    path = tmp_path / "agenda.ics"
    path.write_text(feed(moved=True))
    now = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    found = load_ics(str(path), PARIS, now=now)
    assert [e.starts for e in found] == [
        paris(SESSIONS[0], "09:30"), paris(SESSIONS[1], "09:30"),
        paris(dt.date(2027, 4, 15), "14:00"), paris(SESSIONS[3], "09:30"),
        paris(SESSIONS[4], "09:30"),
    ]  # fmt: skip
    assert {e.uid for e in found} == {UID}
    assert len({e.id for e in found}) == 5
    moved = found[2]
    # The override is the occurrence it replaces, not the series: same id as unmoved.
    assert moved.recurrence_id == "20270408T073000Z"
    path.write_text(feed())
    unmoved = load_ics(str(path), PARIS, now=now)
    assert [e.id for e in unmoved] == [e.id for e in found]
    assert unmoved[2].starts == paris(SESSIONS[2], "09:30")
    # The window: from a month ago to a year ahead.
    later = load_ics(str(path), PARIS, now=dt.datetime(2027, 6, 1, tzinfo=dt.UTC))
    assert [e.local_day(PARIS) for e in later] == SESSIONS[3:]


def test_webcal_urls_are_read_over_https(programme):
    p = programme({"alpha": 1}, events={"calendar": "webcal://127.0.0.1:9/agenda.ics"})
    assert p.config.events.calendar == "webcal://127.0.0.1:9/agenda.ics"  # not a file path
    # Nothing listens on port 9: the error names the address read, over https.
    with pytest.raises(MailflowError, match=r"calendar https://127\.0\.0\.1:9/agenda\.ics: cannot"):
        load_ics(p.config.events.calendar, PARIS)


def check_invitation(msg, address, organizer, starts, ends, recurrence, sequence):
    cal = invitation(msg)
    # Round-tripped through icalendar: what a client reads of it.
    cal = icalendar.Calendar.from_ical(cal.to_ical())
    event = next(iter(cal.walk("VEVENT")))
    assert str(cal["METHOD"]) == "REQUEST" and invitation(msg).method_param == "REQUEST"
    assert [str(z["TZID"]) for z in cal.walk("VTIMEZONE")] == ["Europe/Paris"]
    assert str(event["UID"]) == UID
    assert event.decoded("RECURRENCE-ID") == recurrence
    assert event["RECURRENCE-ID"].params["TZID"] == "Europe/Paris"
    assert event["SEQUENCE"] == sequence
    assert event.decoded("DTSTART") == starts and event.decoded("DTEND") == ends
    assert event["DTSTART"].params["TZID"] == "Europe/Paris"
    assert "RRULE" not in event  # that day only
    attendee = event["ATTENDEE"]
    assert str(attendee) == f"mailto:{address}"
    assert attendee.params["RSVP"] == "TRUE" and attendee.params["PARTSTAT"] == "NEEDS-ACTION"
    assert str(event["ORGANIZER"]) == f"mailto:{organizer}"


def test_a_monthly_series_gives_one_invitation_per_session_an_update_and_a_cancel(
    programme, tmp_path
):
    calendar = tmp_path / "agenda.ics"
    calendar.write_text(feed())
    p = programme({"alpha": 1}, mailflow={"workflows": str(only(tmp_path, "events"))},
                  events={"calendar": str(calendar)})  # fmt: skip
    a0 = p.defis["alpha"][0]
    organizer = p.config.addresses.reply_to

    def reminders() -> list:
        return [m for m in p.inbox(a0) if "Dans une semaine" in str(m["Subject"])]

    for number, day in enumerate(SESSIONS):
        p.tick(paris(day - dt.timedelta(days=7), "10:00").isoformat())
        if day == SESSIONS[2]:
            # After its invitation, the April session moves to the 15th, 14:00.
            calendar.write_text(feed(moved=True))
            p.tick(paris(dt.date(2027, 4, 2), "09:00").isoformat())
            [update] = [m for m in p.inbox(a0) if "Modifié" in str(m["Subject"])]
            check_invitation(update, a0, organizer, paris(dt.date(2027, 4, 15), "14:00"),
                             paris(dt.date(2027, 4, 15), "17:30"),
                             paris(SESSIONS[2], "09:30"), 1)  # fmt: skip
            assert "le jeudi 15 avril 2027, de 14h à 17h30" in text_of(update).lower()
            assert "les réponses données jusqu'ici ne comptent plus" in text_of(update)
            assert "ne comptent plus" in text_of(update, "html")
        assert len(reminders()) == number + 1
    sent = reminders()
    for msg, day in zip(sent, SESSIONS, strict=True):
        # At 10:00 Paris time, a week before, in winter and in summer.
        assert msg["Date"].datetime == paris(day - dt.timedelta(days=7), "10:00")
        check_invitation(msg, a0, organizer, paris(day, "09:30"), paris(day, "17:30"),
                         paris(day, "09:30"), 0)  # fmt: skip
        assert "de 9h30 à 17h30" in text_of(msg)
        assert "Répondez-y" in text_of(msg, "html")
    assert [m["Date"].datetime.utcoffset() for m in sent] == [
        dt.timedelta(hours=h) for h in (1, 1, 2, 2, 2)
    ]
    # The June session is then removed from the feed: its cancellation alone.
    calendar.write_text(feed(moved=True, exdates="\nEXDATE;TZID=Europe/Paris:20270610T093000"))
    p.tick(paris(dt.date(2027, 6, 4), "09:00").isoformat())
    [cancel] = [m for m in p.inbox(a0) if "Annulé" in str(m["Subject"])]
    cal = icalendar.Calendar.from_ical(invitation(cancel).to_ical())
    event = next(iter(cal.walk("VEVENT")))
    assert str(cal["METHOD"]) == "CANCEL" and invitation(cancel).method_param == "CANCEL"
    assert str(event["UID"]) == UID and str(event["STATUS"]) == "CANCELLED"
    assert event.decoded("RECURRENCE-ID") == paris(SESSIONS[4], "09:30")
    assert event["SEQUENCE"] == 1
    assert "annulé" in text_of(cancel, "html")
    # The events as JSON: each occurrence, the moved and the cancelled ones too.
    listed = json.loads(p.run("events", "--all", "--format", "json").output)
    mine = [e for e in listed if e["uid"] == UID]
    assert [(e["starts"], e["status"], e["recurrence_id"]) for e in mine] == [
        ("2027-01-14T09:30:00+01:00", "confirmed", "20270114T083000Z"),
        ("2027-03-11T09:30:00+01:00", "confirmed", "20270311T083000Z"),
        ("2027-04-15T14:00:00+02:00", "confirmed", "20270408T073000Z"),
        ("2027-05-13T09:30:00+02:00", "confirmed", "20270513T073000Z"),
        ("2027-06-10T09:30:00+02:00", "cancelled", "20270610T073000Z"),
    ]
    assert mine[0]["attendance"] == {
        "accepted": 0, "declined": 0, "tentative": 0, "no_answer": 3, "invited": 3,
    }  # fmt: skip
    assert vevent(sent[0])["SUMMARY"] == "Session collective"

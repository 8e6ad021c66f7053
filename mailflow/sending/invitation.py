"""iCalendar invitations (RFC 5545/5546) that Gmail, Outlook and Thunderbird show as such.

One VEVENT with the event's stable UID and current SEQUENCE, times in the programme's
time zone with its VTIMEZONE, METHOD:REQUEST for an invitation or an update and
METHOD:CANCEL for a cancellation. An occurrence of a series is that occurrence alone: the
series' UID and the occurrence's RECURRENCE-ID, so that a client shows (or removes) that
day only. The attendee is asked to answer (``RSVP=TRUE``) to the organizer, the mailbox
mailflow reads. The mail carries it twice, as mail clients expect: a
``text/calendar; method=…`` alternative of the text, and an ``invite.ics`` attachment.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import icalendar

from ..programme.events import Event
from ..store.states import EventStatus
from .render import Attachment


def calendar(
    event: Event,
    *,
    method: str,
    organizer: str,
    organizer_name: str,
    attendee: str | None,
    tz: ZoneInfo,
    stamp: dt.datetime,
) -> bytes:
    """The iCalendar object for one event; ``method`` is REQUEST or CANCEL; ``organizer``
    is where replies go."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//mailflow//mailflow//FR")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    vevent = icalendar.Event()
    vevent.add("uid", event.uid)
    recurrence = event.recurrence(tz)
    if recurrence is not None:
        vevent.add("recurrence-id", recurrence)
    vevent.add("sequence", event.sequence)
    vevent.add("dtstamp", stamp.astimezone(dt.UTC))
    if event.all_day:
        vevent.add("dtstart", event.starts.astimezone(tz).date())
        vevent.add("dtend", event.ends.astimezone(tz).date())
    else:
        vevent.add("dtstart", event.starts.astimezone(tz))
        vevent.add("dtend", event.ends.astimezone(tz))
    vevent.add("summary", event.title)
    if event.place:
        vevent.add("location", event.place)
    description = "\n\n".join(x for x in (event.theme, event.agenda) if x)
    if description:
        vevent.add("description", description)
    vevent.add("categories", [event.kind.upper()])
    cancelled = method == "CANCEL" or event.status == EventStatus.CANCELLED
    vevent.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    vevent.add("transp", "OPAQUE")
    organizer_value = icalendar.vCalAddress(f"mailto:{organizer}")
    organizer_value.params["cn"] = icalendar.vText(organizer_name or organizer)
    vevent.add("organizer", organizer_value)
    if attendee:
        person = icalendar.vCalAddress(f"mailto:{attendee}")
        person.params.update(
            {"role": "REQ-PARTICIPANT", "partstat": "NEEDS-ACTION", "rsvp": "TRUE"}
        )
        vevent.add("attendee", person)
    cal.add_component(vevent)
    if not event.all_day or isinstance(recurrence, dt.datetime):
        cal.subcomponents.insert(0, _vtimezone(tz.key, event.starts.year))
    return bytes(cal.to_ical())


@lru_cache(maxsize=16)
def _vtimezone(key: str, year: int) -> icalendar.Timezone:
    """The VTIMEZONE of ``key`` around ``year``: its transitions from the year before to the
    year after, which every client needs to place the event, and no more (icalendar's
    default spans 1970-2038: a hundred transitions, and 20 ms to compute, per mail)."""
    return icalendar.Timezone.from_tzid(
        key, first_date=dt.date(year - 1, 1, 1), last_date=dt.date(year + 2, 1, 1)
    )


def attachments(ics: bytes, method: str) -> tuple[Attachment, ...]:
    """The two parts that make a mail an invitation (inline alternative and invite.ics)."""
    return (
        Attachment(ics, "text", "calendar", params=(("method", method),), inline=True),
        Attachment(ics, "application", "ics", filename="invite.ics"),
    )

"""Events: collective sessions, the bootcamp, seminars, anything with a date and a place.

Read from the planning file and, optionally, an ICS file or URL (``[events]`` in the
config); created or changed by staff commands too. Kept in SQLite: a change of date,
hours, place, title or status increments the event's ``sequence`` (iCalendar's
SEQUENCE) and is recorded in ``event_changes``, from which updates and cancellations are
sent. An event that disappears from its source is cancelled, not forgotten. An event
changed or cancelled by a command keeps the command's version: its source no longer
overrides it. A change of time resets the answers to its invitation (``attendance``).

A recurring event of a calendar (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides) is
expanded by ``recurring-ical-events`` over ``WINDOW`` around the present: each occurrence
is an event of its own, with the series' UID and its ``recurrence_id`` (the original start,
in UTC), from which its id is made; so a moved occurrence is the same event, changed, and
a removed one is cancelled alone.

The planning file::

    [[event]]
    id = "session-2026-12"              # letters, digits, dashes
    kind = "session"                    # session, bootcamp, seminar, other
    title = "Session collective de décembre"
    start = 2026-12-10T09:30:00         # local time; a date alone for all-day events
    end = 2026-12-10T17:30:00
    place = "Tiers-lieu, 20 avenue de Ségur, Paris"
    theme = "Mesurer l'impact"
    agenda = "9h30 stand-up des défis…"
    audience = "everyone"               # entrepreneurs, mentors, staff, everyone
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..config import CALENDAR_SCHEMES
from ..errors import ConfigError, MailflowError
from ..store import attendance as attendance_store
from ..store import events as store
from ..store.db import Database, transaction
from ..store.states import Change, EventStatus
from ..tomltable import ID, Table

log = logging.getLogger(__name__)

KINDS = ("session", "bootcamp", "seminar", "other")
AUDIENCES = ("entrepreneurs", "mentors", "staff", "everyone")
SIGNIFICANT = ("title", "starts", "ends", "all_day", "place", "status")
TIMING = ("starts", "ends", "all_day")  # a change of these resets the answers
# The occurrences of recurring calendar events kept: from a month ago to a year ahead.
WINDOW = (dt.timedelta(days=31), dt.timedelta(days=366))
_TIMING_CHANGE = re.compile(r"(?:^|; )(?:" + "|".join(TIMING) + r"): ")


@dataclass(frozen=True)
class Event:
    id: str
    uid: str
    kind: str
    title: str
    starts: dt.datetime
    ends: dt.datetime
    all_day: bool = False
    place: str = ""
    theme: str = ""
    agenda: str = ""
    audience: str = "everyone"
    source: str = "planning"
    status: str = EventStatus.CONFIRMED
    sequence: int = 0
    recurrence_id: str = ""  # an occurrence of a series: its original start (see ``recurrence``)

    def local_day(self, tz: ZoneInfo) -> dt.date:
        return self.starts.astimezone(tz).date()

    def fingerprint(self) -> str:
        data = {k: str(v) for k, v in asdict(self).items() if k not in ("sequence", "source")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def as_context(self, tz: ZoneInfo) -> dict[str, object]:
        starts, ends = self.starts.astimezone(tz), self.ends.astimezone(tz)
        # An all-day event ends at midnight after its last day (iCalendar's exclusive end).
        last_day = (ends - dt.timedelta(days=1)).date() if self.all_day else ends.date()
        return {
            "id": self.id, "kind": self.kind, "title": self.title, "starts": starts,
            "ends": ends, "last_day": last_day, "all_day": self.all_day,
            "days": (last_day - starts.date()).days + 1, "place": self.place,
            "theme": self.theme, "agenda": self.agenda, "audience": self.audience,
            "status": self.status, "sequence": self.sequence, "uid": self.uid,
            "recurrence_id": self.recurrence_id,
        }  # fmt: skip

    def recurrence(self, tz: ZoneInfo) -> dt.datetime | dt.date | None:
        """The RECURRENCE-ID of an occurrence of a series (local time, or a day), else None."""
        if not self.recurrence_id:
            return None
        if len(self.recurrence_id) == 8:
            return dt.datetime.strptime(self.recurrence_id, "%Y%m%d").date()
        moment = dt.datetime.strptime(self.recurrence_id, "%Y%m%dT%H%M%SZ")
        return moment.replace(tzinfo=dt.UTC).astimezone(tz)


def _moment(t: Table, key: str, tz: ZoneInfo, end: bool = False) -> tuple[dt.datetime, bool]:
    value = t.raw(key)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)), False
    if isinstance(value, dt.date):
        day = value + dt.timedelta(days=1) if end else value
        return dt.datetime.combine(day, dt.time(0), tzinfo=tz), True
    t.fail(key, "a date (2026-12-10) or a local date-time (2026-12-10T09:30:00)", value)


def load_planning(path: Path, tz: ZoneInfo, domain: str) -> list[Event]:
    """The events of a planning file; a wrong value is a ``ConfigError`` naming it."""
    root = Table.from_file(path)
    events = []
    for t in root.tables("event"):
        event_id = t.string("id", pattern=ID)
        t.identify(event_id)
        starts, all_day = _moment(t, "start", tz)
        ends, _ = _moment(t, "end", tz, end=True) if t.has("end") else (starts, all_day)
        if ends < starts:
            t.fail("end", "an end after the start", str(t.raw("end")))
        events.append(
            Event(
                id=event_id,
                uid=f"{event_id}@{domain}",
                kind=t.string("kind", "session", choices=KINDS),
                title=t.string("title"),
                starts=starts,
                ends=ends if ends > starts else starts + dt.timedelta(days=1),
                all_day=all_day,
                place=t.string("place", ""),
                theme=t.string("theme", ""),
                agenda=t.string("agenda", ""),
                audience=t.string("audience", "everyone", choices=AUDIENCES),
            )
        )
        t.done()
    root.done()
    ids = [e.id for e in events]
    for event_id in ids:
        if ids.count(event_id) > 1:
            raise ConfigError("event.id", "ids used once", event_id, str(path))
    return events


def is_url(location: str) -> bool:
    """Whether a calendar is read from the web (``webcal://`` is ``https://``)."""
    return location.startswith(CALENDAR_SCHEMES)


def _read_ics(location: str) -> bytes:
    if location.startswith("webcal://"):
        # webcal:// only tells a browser to hand the feed to a calendar: it is served over https.
        location = "https://" + location.removeprefix("webcal://")
    if is_url(location):
        import urllib.request  # only where a calendar is read from the web

        try:
            with urllib.request.urlopen(location, timeout=30) as response:
                return bytes(response.read())
        except OSError as e:
            raise MailflowError(f"calendar {location}: cannot be read ({e})") from e
    try:
        return Path(location).read_bytes()
    except OSError as e:
        raise MailflowError(f"calendar {location}: cannot be read ({e.strerror})") from e


def _ics_moment(value: object, tz: ZoneInfo) -> tuple[dt.datetime, bool]:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)), False
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(0), tzinfo=tz), True
    raise ValueError(f"not a date: {value!r}")


def recurrence_key(value: object, tz: ZoneInfo) -> str:
    """The stored form of a RECURRENCE-ID: ``20270114T083000Z`` (UTC), or ``20270114``."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=tz)
        return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    raise ValueError(f"not a date: {value!r}")


def load_ics(
    location: str, tz: ZoneInfo, default_audience: str = "everyone",
    now: dt.datetime | None = None,
) -> list[Event]:  # fmt: skip
    """The events of an iCalendar file or URL, recurring ones expanded over ``WINDOW``
    around ``now``; unreadable events are skipped, logged."""
    import icalendar
    import recurring_ical_events

    try:
        calendar = icalendar.Calendar.from_ical(_read_ics(location))
    except ValueError as e:
        raise MailflowError(f"calendar {location}: not iCalendar data ({e})") from e
    now = now or dt.datetime.now(dt.UTC)
    try:
        expanded = recurring_ical_events.of(calendar, skip_bad_series=True).between(
            now - WINDOW[0], now + WINDOW[1]
        )
    except Exception as e:  # the library's errors have no common base; none must stop a tick
        raise MailflowError(f"calendar {location}: its events cannot be expanded ({e})") from e
    events = []
    for component in expanded:
        try:
            events.append(_ics_event(component, tz, default_audience))
        except (KeyError, ValueError) as e:
            log.warning("calendar %s: an event skipped (%s)", location, e)
    return sorted(events, key=lambda e: (e.starts, e.id))


def _ics_event(component: Any, tz: ZoneInfo, default_audience: str) -> Event:
    uid = str(component["UID"])
    starts, all_day = _ics_moment(component.decoded("DTSTART"), tz)
    if "DTEND" in component:
        ends, _ = _ics_moment(component.decoded("DTEND"), tz)
    elif "DURATION" in component:
        ends = starts + component.decoded("DURATION")
    else:
        ends = starts + dt.timedelta(days=1 if all_day else 0)
    recurrence = ""
    if "RECURRENCE-ID" in component:
        recurrence = recurrence_key(component.decoded("RECURRENCE-ID"), tz)
    digest = hashlib.sha256(uid.encode()).hexdigest()[:12]
    categories = [str(c).lower() for c in _categories(component)]
    kind = next((c for c in categories if c in KINDS), "other")
    audience = str(component.get("X-MAILFLOW-AUDIENCE", default_audience)).lower()
    return Event(
        id=f"ics-{digest}-{recurrence.lower()}" if recurrence else f"ics-{digest}",
        uid=uid,
        kind=kind,
        title=str(component.get("SUMMARY", "")),
        starts=starts,
        ends=ends,
        all_day=all_day,
        place=str(component.get("LOCATION", "")),
        agenda=str(component.get("DESCRIPTION", "")),
        audience=audience if audience in AUDIENCES else default_audience,
        source="ics",
        status=EventStatus.CANCELLED
        if str(component.get("STATUS", "")).upper() == "CANCELLED"
        else EventStatus.CONFIRMED,
        recurrence_id=recurrence,
    )


def _categories(component: object) -> list[str]:
    value = component.get("CATEGORIES")  # type: ignore[attr-defined]
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    names: list[str] = []
    for item in values:
        names += [str(c) for c in getattr(item, "cats", [item])]
    return names


def _row(event: Event) -> tuple[object, ...]:
    """The event as stored (``store.events.COLUMNS``)."""
    return (
        event.id, event.uid, event.kind, event.title, _utc(event.starts),
        _utc(event.ends), int(event.all_day), event.place, event.theme, event.agenda,
        event.audience, event.source, event.status, event.sequence, event.recurrence_id,
    )  # fmt: skip


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def _from_row(row: tuple[object, ...]) -> Event:
    return Event(
        id=str(row[0]), uid=str(row[1]), kind=str(row[2]), title=str(row[3]),
        starts=dt.datetime.fromisoformat(str(row[4])), ends=dt.datetime.fromisoformat(str(row[5])),
        all_day=bool(row[6]), place=str(row[7]), theme=str(row[8]), agenda=str(row[9]),
        audience=str(row[10]), source=str(row[11]), status=str(row[12]), sequence=int(str(row[13])),
        recurrence_id=str(row[14]),
    )  # fmt: skip


def stored_events(db: Database, after: dt.datetime | None = None) -> list[Event]:
    """Every stored event by start; with ``after``, the confirmed ones ending after it."""
    if after is None:
        return [_from_row(r) for r in store.every_event(db)]
    return [_from_row(r) for r in store.confirmed(db, ends_after=_utc(after))]


def get_event(db: Database, event_id: str) -> Event | None:
    row = store.event_row(db, event_id)
    return _from_row(row) if row is not None else None


def _differences(old: Event, new: Event) -> list[str]:
    return [
        f"{k}: {getattr(old, k)} → {getattr(new, k)}"
        for k in SIGNIFICANT
        if getattr(old, k) != getattr(new, k)
    ]


def save_event(db: Database, event: Event) -> str | None:
    """Insert or update one event; returns the change recorded, None when nothing changed."""
    stored = get_event(db, event.id)
    if stored is not None and stored.fingerprint() == event.fingerprint():
        return None
    change, detail = Change.CREATED, ""
    if stored is not None:
        differences = _differences(stored, event)
        sequence = stored.sequence + (1 if differences else 0)
        event = replace(event, sequence=sequence)
        if event.status == EventStatus.CANCELLED and stored.status != EventStatus.CANCELLED:
            change = Change.CANCELLED
        else:
            change = Change.CHANGED if differences else Change.EDITED
        detail = "; ".join(differences)
    store.save_event(db, _row(event), event.fingerprint())
    if change != Change.EDITED:
        store.record_change(db, event.id, event.sequence, change, detail)
    if stored is not None and rescheduled(detail):
        attendance_store.reset(db, event.id)  # as calendar clients do: everyone answers anew
    return change


def rescheduled(detail: str) -> bool:
    """Whether the detail of changes (``_differences``, joined) tells of a change of time."""
    return bool(_TIMING_CHANGE.search(detail))


def sync_events(
    db: Database, events: list[Event], sources: set[str], now: dt.datetime
) -> list[str]:
    """Make the stored events of ``sources`` match ``events``; returns the changes made.

    A future event that left its source is cancelled (its attendees will be told).
    """
    changes = []
    incoming = {e.id for e in events}
    with transaction(db):
        for event in events:
            stored = get_event(db, event.id)
            if stored is not None and stored.source == "mail" and event.source != "mail":
                continue  # the staff changed it by mail: their version stands
            change = save_event(db, event)
            if change:
                changes.append(f"{event.id}: {change}")
        for row in store.confirmed(db, sources=sorted(sources)):
            stored = _from_row(row)
            if stored.id not in incoming and stored.ends > now:
                save_event(db, replace(stored, status=EventStatus.CANCELLED))
                changes.append(f"{stored.id}: {Change.CANCELLED}")
    return changes


def upcoming(db: Database, start: dt.datetime, end: dt.datetime) -> list[Event]:
    """Confirmed events that overlap ``start``–``end``, by start."""
    rows = store.confirmed(db, ends_after=_utc(start), starts_before=_utc(end))
    return [_from_row(r) for r in rows]

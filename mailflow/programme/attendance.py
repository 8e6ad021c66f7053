"""Who comes: the answers to events' invitations (iMIP replies), per occurrence and attendee.

An invitation asks for an answer (``RSVP=TRUE``); the attendee's calendar sends a REPLY
that parse reads as ``calendar_reply``. It is recorded for the event occurrence it names
(its UID, and its RECURRENCE-ID for an occurrence of a series) with the partstat, the
reply's date and the attendee's comment. The latest reply of an attendee counts. A reply
from an address that was not sent the invitation is recorded and flagged for the staff. A
change of the event's time resets the answers (``events.save_event``). The headcount is
what the staff see: in the mail the day before (the ``attendance`` step kind), by the
command "présences", and in ``mailflow events --attendance``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..store import attendance as store
from ..store.db import Database
from ..store.desk import add_flag
from ..store.states import Flag
from .events import Event, stored_events
from .kinds import Kind, register
from .roster import Roster, stored_roster

if TYPE_CHECKING:
    from ..receiving.parse import ParsedMessage
    from ..sending.compose import Mailer
    from .steps import Occurrence
    from .workflow import Step

log = logging.getLogger(__name__)

PARTSTATS = ("accepted", "declined", "tentative")
# A RECURRENCE-ID without a time zone mailflow knows (a floating time, or one of
# Outlook's Windows zone names) is matched to the nearest occurrence within this.
_FLOATING = dt.timedelta(hours=14)


def occurrence_id(event: Event) -> str:
    """The occurrence id of an event in event workflows (their runs and outbox)."""
    return f"ev-{event.id}"


def record_reply(db: Database, message: int, parsed: ParsedMessage, now: dt.datetime) -> None:
    """Record an iMIP reply for the occurrence it answers; an unknown event is only logged."""
    reply = parsed.calendar_reply or {}
    partstat = reply.get("partstat", "")
    sender = (parsed.author or parsed.from_address or "").lower()
    attendee = reply.get("attendee", "").lower() or sender
    replied = _replied_at(parsed.date, now)
    event_id = _answered(db, reply, replied)
    if event_id is None or partstat not in PARTSTATS:
        log.info("message %s: a reply to an unknown event (%s)", message, reply.get("uid"))
        return
    invited = store.invited(db, f"ev-{event_id}")
    if attendee not in invited and sender in invited:
        attendee = sender  # an alias of the invited address answered
    comment = (parsed.text or "").strip()
    store.record(db, event_id, attendee, partstat, comment, replied, message, attendee in invited)
    if attendee not in invited:
        detail = f"answered the invitation to {event_id} ({partstat}) without being invited"
        add_flag(db, attendee, Flag.UNINVITED, detail, now, message=message)


def _replied_at(date: str | None, now: dt.datetime) -> dt.datetime:
    """The reply's own date (never after its arrival), else its arrival."""
    if not date:
        return now
    moment = dt.datetime.fromisoformat(date)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return min(moment, now)


def _answered(db: Database, reply: dict[str, str], replied: dt.datetime) -> str | None:
    """The id of the event occurrence a reply answers, None when no stored event has its UID."""
    found = store.series(db, reply.get("uid", ""))
    if len(found) <= 1:
        return found[0][0] if found else None
    value = reply.get("recurrence_id", "")
    if value:
        matched = _by_recurrence(found, value, reply.get("recurrence_tz", ""))
        if matched is not None:
            return matched
    # No RECURRENCE-ID (a reply to the whole series): the next occurrence, as it was then.
    coming = [row for row in found if dt.datetime.fromisoformat(row[2]) > replied]
    return (coming or found[-1:])[0][0]


def _by_recurrence(found: list[tuple[str, str, str]], value: str, tzid: str) -> str | None:
    value = value.strip().upper()
    if len(value) == 8:  # a day
        return next((row[0] for row in found if row[1][:8] == value), None)
    try:
        moment = dt.datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")
    except ValueError:
        return None
    exact = value.endswith("Z")
    zone = _zone(tzid)
    if exact:
        moment = moment.replace(tzinfo=dt.UTC)
    elif zone is not None:
        moment, exact = moment.replace(tzinfo=zone), True
    else:
        moment = moment.replace(tzinfo=dt.UTC)  # compared within ``_FLOATING``
    best: tuple[dt.timedelta, str] | None = None
    for event_id, recurrence, _ in found:
        if len(recurrence) != 16:
            continue
        original = dt.datetime.strptime(recurrence, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        gap = abs(original - moment)
        if (gap == dt.timedelta(0) or (not exact and gap <= _FLOATING)) and (
            best is None or gap < best[0]
        ):
            best = (gap, event_id)
    return best[1] if best else None


def _zone(tzid: str) -> ZoneInfo | None:
    if not tzid:
        return None
    try:
        return ZoneInfo(tzid.strip('"'))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def headcount(
    db: Database, event: Event, tz: ZoneInfo, roster: Roster | None = None
) -> dict[str, Any]:
    """Who accepted, declined, is tentative, did not answer (invited, no reply), with the
    comments; and ``counts`` of each. Replies from uninvited addresses are marked."""
    roster = roster or stored_roster(db)
    names = _names(roster)
    invited = store.invited(db, occurrence_id(event))
    groups: dict[str, list[dict[str, Any]]] = {p: [] for p in PARTSTATS}
    answered = set()
    messages = []
    for attendee, partstat, comment, replied_at, message in store.latest(db, event.id):
        answered.add(attendee)
        if message is not None:
            messages.append(message)
        groups[partstat].append({
            **_person(names, attendee), "comment": comment, "invited": attendee in invited,
            "replied_at": dt.datetime.fromisoformat(replied_at).astimezone(tz),
        })  # fmt: skip
    no_answer = [
        {**_person(names, a), "comment": "", "invited": True, "replied_at": None}
        for a in sorted(invited - answered)
    ]
    counts = {p: len(groups[p]) for p in PARTSTATS} | {"no_answer": len(no_answer)}
    counts["invited"] = len(invited)
    return {**groups, "no_answer": no_answer, "counts": counts, "messages": messages}


def next_announced(db: Database, now: dt.datetime) -> Event | None:
    """The next confirmed event not over whose invitations went out, else the next one."""
    coming = stored_events(db, now)
    return next((e for e in coming if store.invited(db, occurrence_id(e))), None) or next(
        iter(coming), None
    )


def _names(roster: Roster) -> dict[str, tuple[str, str]]:
    """(name, défi or role) of every address of the roster."""
    found: dict[str, tuple[str, str]] = {}
    for m in roster.mentors:
        found[m.address] = (m.name, "")
    for s in roster.staff:
        found[s.address] = (s.name, s.role)
    for d in roster.defis:
        for member in d.members:
            found[member.address] = (member.name, d.name)
    return found


def _person(names: dict[str, tuple[str, str]], address: str) -> dict[str, Any]:
    name, group = names.get(address, ("", ""))
    return {"address": address, "name": name or address, "group": group}


def headcounts(db: Database, events: list[Event], tz: ZoneInfo) -> dict[str, dict[str, Any]]:
    """The headcount of each event, by id (the roster read once)."""
    roster = stored_roster(db)
    return {e.id: headcount(db, e, tz, roster) for e in events}


@register
class Attendance(Kind):
    """An event's headcount to the staff (the day before): who comes, who does not, who
    did not answer, with the comments."""

    name = "attendance"
    audiences = ("staff", "alias")
    events_only = True
    reads_answers = True  # the replies of the morning count

    def context(
        self, db: Database, mailer: Mailer, occ: Occurrence, step: Step,
        now: dt.datetime,
    ) -> dict[str, Any]:  # fmt: skip
        assert occ.event is not None
        return {"attendance": headcount(db, occ.event, mailer.config.timezone)}

    def empty(self, step: Step, context: dict[str, Any]) -> str:
        counts = context["attendance"]["counts"]
        if not counts["invited"] and not any(counts[p] for p in PARTSTATS):
            return "no invitation went out, no answer came"
        return ""

    def shown(
        self, db: Database, step: Step, context: dict[str, Any],
        mails: list[Any], now: dt.datetime,
    ) -> dict[str, tuple[int, ...]]:  # fmt: skip
        # The replies it shows need not be listed again as mail to read.
        return {"listed_at": tuple(context["attendance"]["messages"])}

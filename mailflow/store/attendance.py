"""Queries of the answers to invitations (``attendance``) and of who was invited.

An answer is kept per event occurrence (``events.id``) and attendee; every answer stays,
the latest by its date counts. A change of the event's time marks its answers ``reset``.
Who was invited is read from the outbox: the addresses of the event's mails that carried
a calendar invitation.
"""

from __future__ import annotations

import datetime as dt
import json

from .db import Database, iso

# (attendee, partstat, comment, replied_at, message)
Answer = tuple[str, str, str, str, int | None]


def record(
    db: Database, event: str, attendee: str, partstat: str, comment: str,
    replied_at: dt.datetime, message: int | None, invited: bool,
) -> None:  # fmt: skip
    db.execute(
        "insert into attendance (event, attendee, partstat, comment, replied_at, message,"
        " invited) values (?, ?, ?, ?, ?, ?, ?)",
        [event, attendee.lower(), partstat, comment, iso(replied_at), message, int(invited)],
    )


def reset(db: Database, event: str) -> None:
    """Answers given before a change of time no longer count."""
    db.execute("update attendance set reset = 1 where event = ? and reset = 0", [event])


def latest(db: Database, event: str) -> list[Answer]:
    """Each attendee's latest answer that counts (the last received of equal dates), by address."""
    rows = db.execute(
        "select attendee, partstat, comment, replied_at, message from ("
        " select *, row_number() over (partition by attendee"
        "  order by replied_at desc, id desc) as rank"
        " from attendance where event = ? and reset = 0)"
        " where rank = 1 order by attendee",
        [event],
    )
    return [tuple(r) for r in rows]


def invited(db: Database, occurrence: str) -> set[str]:
    """The addresses sent an invitation of an occurrence (``ev-<event id>``) of any workflow."""
    rows = db.execute(
        "select to_addrs from outbox where occurrence = ?"
        " and instr(raw, cast('text/calendar' as blob)) > 0",
        [occurrence],
    )
    return {a.lower() for (addresses,) in rows for a in json.loads(addresses)}


def series(db: Database, uid: str) -> list[tuple[str, str, str]]:
    """(id, recurrence_id, ends) of the events of a UID: one, or the occurrences of a series."""
    rows = db.execute(
        "select id, recurrence_id, ends from events where uid = ? order by starts", [uid]
    )
    return [tuple(r) for r in rows]

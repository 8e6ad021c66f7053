"""Queries of the staff alias's desk: help requests, commands by mail, announcements, and
the addresses flagged for the staff."""

from __future__ import annotations

import datetime as dt

from .db import Database, iso

# -- help requests ------------------------------------------------------------------------


def add_help_request(
    db: Database, message: int, sender: str, respondent: str | None, subject: str,
    message_id: str | None, received: dt.datetime,
) -> None:  # fmt: skip
    """Keep a mail to the alias that asks the staff something (once per message)."""
    db.execute(
        "insert or ignore into help_requests (message, sender, respondent, subject, message_id,"
        " received_at) values (?, ?, ?, ?, ?, ?)",
        [message, sender, respondent, subject, message_id, iso(received)],
    )


def waiting_since(db: Database, before: dt.datetime) -> list[tuple[str, str, str, str]]:
    """(sender, respondent, subject, received_at) of unanswered help requests received by
    ``before``, oldest first."""
    return [
        tuple(r)
        for r in db.execute(
            "select sender, respondent, subject, received_at from help_requests"
            " where answered_at is null and received_at <= ? order by received_at",
            [iso(before)],
        )
    ]


def waiting_requests(db: Database, thread_ids: tuple[str, ...]) -> list[int]:
    """The unanswered help requests a message answers (by In-Reply-To/References)."""
    if not thread_ids:
        return []
    marks = ",".join("?" * len(thread_ids))
    rows = db.execute(
        f"select message from help_requests where answered_at is null and message_id in ({marks})",
        list(thread_ids),
    )
    return [row[0] for row in rows]


def waiting_from(db: Database, sender: str) -> list[int]:
    """The unanswered help requests of a sender."""
    rows = db.execute(
        "select message from help_requests where answered_at is null and sender = ?", [sender]
    )
    return [row[0] for row in rows]


def settle_requests(db: Database, requests: list[int], by: str, now: dt.datetime) -> None:
    """Record that a staff member answered (or handled) help requests."""
    for request in requests:
        db.execute(
            "update help_requests set answered_at = ?, answered_by = ? where message = ?",
            [iso(now), by, request],
        )


# -- announcements ------------------------------------------------------------------------


def announce(
    db: Database, workflow: str, text: str, author: str, message: int | None,
    now: dt.datetime,
) -> None:  # fmt: skip
    """Keep an announcement for the next digest of a workflow."""
    db.execute(
        "insert into announcements (workflow, text, author, message, created_at)"
        " values (?, ?, ?, ?, ?)",
        [workflow, text, author, message, iso(now)],
    )


def announcements(db: Database, workflow: str, occurrence: str) -> list[tuple[str, str, str]]:
    """(text, author, created_at) of announcements not shown yet to the cohort (or shown
    by this occurrence's digest), in order."""
    rows = db.execute(
        "select text, author, created_at from announcements where workflow = ?"
        " and (shown_in is null or shown_in = ?) order by id",
        [workflow, occurrence],
    )
    return [tuple(r) for r in rows]


def mark_announcements_shown(db: Database, workflow: str, occurrence: str) -> None:
    """Announcements shown to the cohort by this occurrence's digest are not shown again."""
    db.execute(
        "update announcements set shown_in = ? where workflow = ? and shown_in is null",
        [occurrence, workflow],
    )


# -- address flags ------------------------------------------------------------------------


def add_flag(
    db: Database, address: str, kind: str, detail: str, created: dt.datetime,
    *, message: int | None = None,
) -> None:  # fmt: skip
    """Flag an address for the staff (once per address, kind and message)."""
    db.execute(
        "insert or ignore into address_flags (address, kind, message, detail, created_at)"
        " values (?, ?, ?, ?, ?)",
        [address, kind, message, detail, iso(created)],
    )


def open_flags(db: Database) -> list[tuple[str, str, str, str]]:
    """(address, kind, detail, created_at) of flags not reported yet, in order."""
    rows = db.execute(
        "select address, kind, detail, created_at from address_flags where reported_in is null"
        " order by id"
    )
    return [tuple(r) for r in rows]


def mark_flags_reported(db: Database, occurrence: str) -> None:
    db.execute("update address_flags set reported_in = ? where reported_in is null", [occurrence])

"""Queries of what each incoming message was taken for (``inbound``): answers, and the
mail a person must read."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .db import Database, iso
from .states import ANSWERED, Kind, Status

_ANSWERED = f"kind = '{Kind.ANSWER}' and status in ({', '.join(repr(str(s)) for s in ANSWERED)})"

# What a person must read: mail that is nobody's answer and no command. Automatic mail
# (out-of-office replies, bounces) and staff's own mail are not listed.
_TO_READ = (
    f"(i.kind in ('{Kind.REPLY}', '{Kind.UNKNOWN_SENDER}', '{Kind.ERROR}', '{Kind.UNREADABLE}')"
    f" or (i.kind = '{Kind.ANSWER}' and i.status in ('{Status.NON_MEMBER}',"
    f" '{Status.AMBIGUOUS}', '{Status.UNREADABLE}')))"
)


def answered(db: Database, workflow: str, occurrence: str) -> set[str]:
    """The respondents with a counted answer for an occurrence."""
    rows = db.execute(
        "select distinct respondent from inbound where kind = ? and status = ?"
        " and workflow = ? and occurrence = ?",
        [Kind.ANSWER, Status.COUNTED, workflow, occurrence],
    )
    return {row[0] for row in rows}


def has_answered(db: Database, workflow: str, occurrence: str, respondent: str) -> bool:
    row = db.execute(
        f"select 1 from inbound where {_ANSWERED} and workflow = ? and occurrence = ?"
        " and respondent = ? limit 1",
        [workflow, occurrence, respondent],
    ).fetchone()
    return row is not None


def latest_answers(
    db: Database, workflow: str, occurrence: str, status: str = Status.COUNTED
) -> dict[str, dict[str, Any]]:
    """The latest answer of each respondent for an occurrence, with that status."""
    rows = db.execute(
        "select respondent, received_at, sender, data from inbound"
        " where kind = ? and workflow = ? and occurrence = ? and status = ?"
        " order by received_at, message",
        [Kind.ANSWER, workflow, occurrence, status],
    )
    latest: dict[str, dict[str, Any]] = {}
    for respondent, received_at, sender, data in rows:
        latest[respondent] = {"received_at": received_at, "sender": sender, **json.loads(data)}
    return latest


def late_answers(
    db: Database, workflow: str, occurrence: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """(occurrence, respondent, answer) of late answers of other occurrences not shown yet
    to the cohort (or shown by this occurrence's digest), the latest of each."""
    rows = db.execute(
        "select occurrence, respondent, received_at, sender, data from inbound"
        " where kind = ? and status = ? and workflow = ?"
        " and (shown_in is null or shown_in = ?) and occurrence != ? order by received_at, message",
        [Kind.ANSWER, Status.LATE, workflow, occurrence, occurrence],
    )
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for occ, respondent, received_at, sender, data in rows:
        latest[(occ, respondent)] = {
            "received_at": received_at,
            "sender": sender,
            **json.loads(data),
        }
    return [(occ, who, answer) for (occ, who), answer in latest.items()]


def mark_late_shown(db: Database, workflow: str, occurrence: str) -> None:
    """Late answers shown to the cohort by this occurrence's digest are not shown again."""
    db.execute(
        "update inbound set shown_in = ? where kind = ? and status = ?"
        " and workflow = ? and occurrence != ? and shown_in is null",
        [occurrence, Kind.ANSWER, Status.LATE, workflow, occurrence],
    )


def every_answer(
    db: Database, workflow: str, occurrence: str
) -> dict[str, list[tuple[str, str, str, str]]]:
    """Every answer of an occurrence by respondent, oldest first: (received_at, sender, via,
    status)."""
    found: dict[str, list[tuple[str, str, str, str]]] = {}
    for respondent, received_at, sender, via, state in db.execute(
        "select respondent, received_at, sender, via, status from inbound where kind = ?"
        " and workflow = ? and occurrence = ? order by received_at, message",
        [Kind.ANSWER, workflow, occurrence],
    ):
        found.setdefault(respondent, []).append((received_at, sender, via, state))
    return found


def answers_for_export(db: Database, workflow: str | None) -> list[tuple[Any, ...]]:
    """(message, workflow, occurrence, respondent, status, received_at, sender, data) of
    every answer, by workflow, occurrence, respondent and time."""
    clause, params = (" and workflow = ?", [workflow]) if workflow else ("", [])
    return db.execute(
        "select message, workflow, occurrence, respondent, status, received_at, sender, data"
        f" from inbound where kind = ?{clause}"
        " order by workflow, occurrence, respondent, received_at, message",
        [Kind.ANSWER, *params],
    ).fetchall()


def to_read(db: Database, *, listed: bool = False) -> list[tuple[Any, ...]]:
    """Human mail no step shows anyone, not listed to the staff yet (or, ``listed``, all):
    (message, kind, status, sender, respondent, received_at, subject, from_name, data)."""
    where = "" if listed else " and i.listed_at is null"
    return db.execute(
        "select i.message, i.kind, i.status, i.sender, i.respondent, i.received_at,"
        " coalesce(p.subject, ''), coalesce(p.from_name, ''), i.data from inbound i"
        f" left join parsed p on p.message = i.message where {_TO_READ}{where}"
        " order by i.received_at, i.message"
    ).fetchall()


def unnoted(
    db: Database, source: str, now: dt.datetime, respondent: str | None = None
) -> list[tuple[int, str, str, str, str]]:
    """(message, occurrence, received_at, data, respondent) of the answers to ``source``
    in no stand-up notes yet, received by ``now``."""
    who, params = ("and respondent = ?", [respondent]) if respondent else ("", [])
    rows = db.execute(
        "select message, occurrence, received_at, data, respondent from inbound"
        f" where {_ANSWERED} and workflow = ? and noted_at is null and received_at <= ? {who}"
        " order by received_at, message",
        [source, iso(now), *params],
    )
    return [tuple(r) for r in rows]


def mark(db: Database, column: str, messages: tuple[int, ...], now: dt.datetime) -> None:
    """Record that messages were listed to the staff (``listed_at``) or put in stand-up
    notes (``noted_at``)."""
    if column not in ("listed_at", "noted_at"):
        raise ValueError(column)
    marks = ",".join("?" * len(messages))
    if messages:
        db.execute(
            f"update inbound set {column} = ? where message in ({marks})", [iso(now), *messages]
        )


def handled_at(db: Database, now: dt.datetime) -> list[tuple[Any, ...]]:
    """(kind, status, sender, workflow, respondent, data, from_name, subject) of the messages
    handled at ``now``, in the order they arrived."""
    return db.execute(
        "select i.kind, i.status, i.sender, i.workflow, i.respondent, i.data, p.from_name,"
        " p.subject from inbound i left join parsed p on p.message = i.message"
        " where i.received_at = ? order by i.message",
        [iso(now)],
    ).fetchall()


def record_verdict(
    db: Database, message: int, received: dt.datetime, kind: str, status: str,
    sender: str, workflow: str | None, occurrence: str | None, respondent: str | None,
    via: str | None, data: str | None,
) -> bool:  # fmt: skip
    """Record what a message was taken for, once; False when it already was."""
    cursor = db.execute(
        "insert into inbound (message, received_at, kind, status, sender, workflow, occurrence,"
        " respondent, via, data) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
        [message, iso(received), kind, status, sender, workflow, occurrence, respondent, via,
         data],
    )  # fmt: skip
    return bool(cursor.rowcount)


def unhandled(db: Database) -> list[tuple[int, str]]:
    """Parsed messages not decided on yet, oldest first: (message, parsed data)."""
    return db.execute(
        "select p.message, p.data from parsed p left join inbound i on i.message = p.message"
        " where i.message is null order by p.message"
    ).fetchall()


def latest_request(
    db: Database, workflows: tuple[str, ...], recipient: str
) -> tuple[str, str] | None:
    """The workflow and occurrence of the last of these workflows' mails to a recipient."""
    marks = ",".join("?" * len(workflows))
    row = db.execute(
        f"select workflow, occurrence from outbox where recipient = ? and workflow in ({marks})"
        " order by id desc limit 1",
        [recipient, *workflows],
    ).fetchone()
    return (row[0], row[1]) if row else None


def latest_answer_data(db: Database, workflow: str, occurrence: str, respondent: str) -> str | None:
    """The data of a respondent's latest counted answer for an occurrence (JSON), if any."""
    row = db.execute(
        "select data from inbound where kind = 'answer' and status in ('counted', 'late')"
        " and workflow = ? and occurrence = ? and respondent = ?"
        " order by received_at desc, message desc limit 1",
        [workflow, occurrence, respondent],
    ).fetchone()
    return None if row is None else str(row[0] or "{}")

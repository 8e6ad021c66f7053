"""Queries of outgoing mail: the outbox, what became of each address (``deliveries``),
and the addresses no longer mailed (``suppressed``).

A row's ``key`` names the mail (workflow, occurrence, step, recipient): queuing a mail
whose key exists does nothing, so a step replayed after a crash or a second ``tick``
sends nothing twice. Rows go ``queued`` → ``sending`` → ``sent``, or back to ``queued``
with a later ``next_attempt_at`` after a temporary failure, or to ``failed``. What became
of each address of a row is in ``deliveries``: an address accepted or failed for good is
settled, and never in that row's envelope again.

An address is suppressed when the SMTP server refuses it with a 5xx answer, or when a
delivery status notification with a 5.x.x status arrives for an address mailflow did
deliver to. A suppression lasts until a roster reload no longer lists the address, or a
staff command (``reactivate``) lifts it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .db import Database, iso
from .states import Delivery, Respondent, Sending

# A mail marked ``sending`` whose sender died is sent again once this has passed: long
# enough that a live sender (another process) has finished with it.
SENDING_LEASE = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Outgoing:
    """A rendered mail and what it is for."""

    key: str
    workflow: str
    occurrence: str
    step: str
    recipient: str
    to: tuple[str, ...]
    sender: str
    message_id: str
    subject: str
    raw: bytes


@dataclass(frozen=True)
class Pending:
    """A mail due for delivery, as read before it is claimed."""

    id: int
    key: str
    to: tuple[str, ...]
    sender: str
    raw: bytes
    attempts: int
    status: str


@dataclass(frozen=True)
class Suppression:
    address: str
    reason: str  # a ``Suppressed``: refused (5xx at delivery) or bounced (a hard DSN)
    code: str  # "550 5.1.1" for a refusal, the DSN status ("5.1.1") for a bounce
    detail: str
    since: dt.datetime


# -- the outbox ---------------------------------------------------------------------------


def queue(db: Database, mail: Outgoing, now: dt.datetime) -> bool:
    """Add a mail unless one with the same key exists; True when it was added."""
    cursor = db.execute(
        "insert into outbox (key, workflow, occurrence, step, recipient, to_addrs, sender,"
        " message_id, subject, raw, status, next_attempt_at, queued_at)"
        " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (key) do nothing",
        [
            mail.key, mail.workflow, mail.occurrence, mail.step, mail.recipient,
            json.dumps(list(mail.to)), mail.sender, mail.message_id, mail.subject, mail.raw,
            Sending.QUEUED, iso(now), iso(now),
        ],
    )  # fmt: skip
    return bool(cursor.rowcount)


def mail_id(db: Database, key: str) -> int | None:
    """The id of the mail queued under ``key``; None when there is none."""
    row = db.execute("select id from outbox where key = ?", [key]).fetchone()
    return int(row[0]) if row else None


def due(db: Database, now: dt.datetime, limit: int = 1000) -> list[Pending]:
    """Mails to send now, oldest first; ``sending`` ones whose lease has run out were in
    flight when their sender died."""
    rows = db.execute(
        "select id, key, to_addrs, sender, raw, attempts, status from outbox"
        " where status in (?, ?) and next_attempt_at <= ? order by id limit ?",
        [Sending.QUEUED, Sending.SENDING, iso(now), limit],
    )
    return [Pending(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4], r[5], r[6]) for r in rows]


def next_retry(db: Database, now: dt.datetime) -> dt.datetime | None:
    """When the next queued mail waiting for a retry after ``now`` is due."""
    row = db.execute(
        "select min(next_attempt_at) from outbox where status = ? and next_attempt_at > ?",
        [Sending.QUEUED, iso(now)],
    ).fetchone()
    return dt.datetime.fromisoformat(row[0]) if row and row[0] else None


def claim(db: Database, mail: Pending, now: dt.datetime) -> bool:
    """Mark a mail ``sending`` if nobody claimed it since it was read; True when we did."""
    cursor = db.execute(
        "update outbox set status = ?, attempts = ?, next_attempt_at = ?"
        " where id = ? and status = ? and attempts = ?",
        [Sending.SENDING, mail.attempts + 1, iso(now + SENDING_LEASE), mail.id, mail.status,
         mail.attempts],
    )  # fmt: skip
    return bool(cursor.rowcount)


def mark(db: Database, id: int, status: Sending, now: dt.datetime, **fields: object) -> None:
    """Set a mail's status (and, sent, when), with other columns named in ``fields``."""
    assignments = ["status = ?"]
    values: list[object] = [status]
    if status == Sending.SENT:
        assignments.append("sent_at = ?")
        values.append(iso(now))
    for name, value in fields.items():
        assignments.append(f"{name} = ?")
        values.append(value)
    db.execute(f"update outbox set {', '.join(assignments)} where id = ?", [*values, id])


def counts(
    db: Database, workflow: str | None = None, occurrence: str | None = None
) -> dict[str, int]:
    """How many mails (of a workflow, of an occurrence) are in each status."""
    where, params = [], []
    if workflow:
        where.append("workflow = ?")
        params.append(workflow)
    if occurrence:
        where.append("occurrence = ?")
        params.append(occurrence)
    clause = f"where {' and '.join(where)}" if where else ""
    result = {status.value: 0 for status in Sending}
    for status, n in db.execute(
        f"select status, count(*) from outbox {clause} group by status", params
    ):
        result[status] = n
    return result


def subjects(db: Database) -> dict[int, str]:
    """The subject of every mail, by id."""
    return dict(db.execute("select id, subject from outbox").fetchall())


def subject_of(db: Database, id: int) -> str:
    row = db.execute("select subject from outbox where id = ?", [id]).fetchone()
    return row[0] if row else ""


def asked(db: Database, workflow: str, occurrence: str) -> list[str]:
    """The respondents (défis, staff) that were sent a mail of this occurrence."""
    rows = db.execute(
        "select distinct recipient from outbox where workflow = ? and occurrence = ?"
        " and (recipient like ? or recipient like ?)",
        [workflow, occurrence, Respondent.DEFI + "%", Respondent.STAFF + "%"],
    )
    return [row[0] for row in rows]


def message_id_of(
    db: Database, workflow: str, occurrence: str, step: str, recipient: str
) -> str | None:
    """The Message-ID of the mail a step of an occurrence wrote to a recipient."""
    row = db.execute(
        "select message_id from outbox where workflow = ? and occurrence = ? and step = ?"
        " and recipient = ?",
        [workflow, occurrence, step, recipient],
    ).fetchone()
    return str(row[0]) if row else None


def envelopes(db: Database, workflow: str, occurrence: str) -> list[list[str]]:
    """The addresses of each mail of an occurrence."""
    rows = db.execute(
        "select to_addrs from outbox where workflow = ? and occurrence = ?", [workflow, occurrence]
    )
    return [json.loads(row[0]) for row in rows]


def failed_mails(db: Database, workflow: str, occurrence: str) -> list[tuple[str, str]]:
    """(subject, error) of the mails of an occurrence that failed."""
    rows = db.execute(
        "select subject, error from outbox where workflow = ? and occurrence = ? and status = ?",
        [workflow, occurrence, Sending.FAILED],
    )
    return [(r[0], r[1] or "") for r in rows]


def last_sent(
    db: Database, workflow: str, step: str, occurrence: str | None
) -> tuple[str, str, str, bytes] | None:
    """(occurrence, subject, sent_at, raw) of a step's mail as it went out: that
    occurrence's, or the last one sent."""
    where, params = ("and occurrence = ?", [occurrence]) if occurrence else ("", [])
    row = db.execute(
        "select occurrence, subject, sent_at, raw from outbox where workflow = ? and step = ?"
        f" and status = ? {where} order by sent_at desc, id desc limit 1",
        [workflow, step, Sending.SENT, *params],
    ).fetchone()
    return (row[0], row[1], row[2], row[3]) if row else None


def written_at(db: Database, now: dt.datetime) -> list[tuple[Any, ...]]:
    """(id, workflow, occurrence, step, to_addrs, status, subject, message_id) of the mails
    queued at ``now`` or with an address whose outcome was recorded then, in order."""
    at = iso(now)
    return db.execute(
        "select id, workflow, occurrence, step, to_addrs, status, subject, message_id"
        " from outbox where queued_at = ? or id in"
        " (select outbox from deliveries where updated_at = ?) order by id",
        [at, at],
    ).fetchall()


# -- deliveries ---------------------------------------------------------------------------


def record(
    db: Database,
    outbox: int,
    address: str,
    status: Delivery,
    now: dt.datetime,
    *,
    failure: str | None = None,
    attempt: int = 0,
    code: int | None = None,
    detail: str = "",
) -> None:
    """Record what became of one address of a row (the latest outcome replaces the last)."""
    db.execute(
        "insert into deliveries (outbox, address, status, failure, attempt, code, detail,"
        " updated_at) values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (outbox, address) do update"
        " set status = excluded.status, failure = excluded.failure, attempt = excluded.attempt,"
        " code = excluded.code, detail = excluded.detail, updated_at = excluded.updated_at",
        [outbox, address.lower(), status, failure, attempt, code, detail, iso(now)],
    )


def delivery_states(db: Database, outbox: int) -> dict[str, str]:
    """The status of each address of a row that has one (lower-case addresses)."""
    rows = db.execute("select address, status from deliveries where outbox = ?", [outbox])
    return {row[0]: row[1] for row in rows}


def outcomes_at(
    db: Database, outbox: int, now: dt.datetime
) -> list[tuple[str, str, str | None, int | None]]:
    """(address, status, failure, code) of a row's addresses whose outcome was recorded at
    ``now``."""
    rows = db.execute(
        "select address, status, failure, code from deliveries where outbox = ? and updated_at = ?",
        [outbox, iso(now)],
    )
    return [tuple(r) for r in rows]


def last_subject(db: Database, address: str) -> str:
    """The subject of the last mail delivered to an address: what a bounce most likely returns."""
    row = db.execute(
        "select o.subject from deliveries d join outbox o on o.id = d.outbox"
        " where d.address = ? and d.status = ? order by d.updated_at desc, o.id desc limit 1",
        [address, Delivery.SENT],
    ).fetchone()
    return row[0] if row else ""


def was_mailed(db: Database, address: str) -> bool:
    """Whether mailflow delivered a mail to ``address``: a bounce for any other is not ours."""
    row = db.execute(
        "select 1 from deliveries where address = ? and status = ? limit 1",
        [address.lower(), Delivery.SENT],
    ).fetchone()
    if row is not None:
        return True
    # Rows sent before per-recipient records existed.
    row = db.execute(
        "select 1 from outbox, json_each(outbox.to_addrs) where outbox.status = ?"
        " and lower(json_each.value) = ? limit 1",
        [Sending.SENT, address.lower()],
    ).fetchone()
    return row is not None


# -- failures the staff were not told of ---------------------------------------------------


def unreported_suppressions(
    db: Database,
) -> list[tuple[str, str, str, str, int | None]]:
    """(address, reason, code, detail, outbox) of suppressions not reported yet, in order."""
    return db.execute(
        "select address, reason, code, detail, outbox from suppressed where reported_on is null"
        " order by created_at, address"
    ).fetchall()


def unreported_failures(
    db: Database, failures: tuple[str, ...], unreported: tuple[str, ...]
) -> list[tuple[str, str, int | None, str, str]]:
    """(address, failure, code, detail, subject) of addresses failed for one of ``failures``
    not reported yet, but in mail to ``unreported`` recipients, in order."""
    kinds, quiet = ",".join("?" * len(failures)), ",".join("?" * len(unreported))
    return db.execute(
        "select d.address, d.failure, d.code, d.detail, o.subject from deliveries d"
        " join outbox o on o.id = d.outbox where d.status = ? and d.reported_on is null"
        f" and d.failure in ({kinds}) and o.recipient not in ({quiet})"
        " order by d.updated_at, d.address",
        [Delivery.FAILED, *failures, *unreported],
    ).fetchall()


def unreported_mails(
    db: Database, unreported: tuple[str, ...]
) -> list[tuple[str, str, str, str | None, str | None, str]]:
    """(subject, recipient, to_addrs, failure, error, queued_at) of failed mails not
    reported yet, but those to ``unreported`` recipients, in order."""
    quiet = ",".join("?" * len(unreported))
    return db.execute(
        "select subject, recipient, to_addrs, failure, error, queued_at from outbox"
        f" where status = ? and reported_at is null and recipient not in ({quiet}) order by id",
        [Sending.FAILED, *unreported],
    ).fetchall()


def mark_reported(db: Database, day: str, now: dt.datetime) -> None:
    """Every failure so far is reported: in the notice of ``day`` sent at ``now``."""
    db.execute("update suppressed set reported_on = ? where reported_on is null", [day])
    db.execute(
        "update deliveries set reported_on = ? where status = ? and reported_on is null",
        [day, Delivery.FAILED],
    )
    db.execute(
        "update outbox set reported_at = ? where status = ? and reported_at is null",
        [iso(now), Sending.FAILED],
    )


def forget_reports(db: Database, notices: str) -> None:
    """Drop the notices whose keys start with ``notices`` and report failed mails again
    (the preflight renders a notice per kind of failure)."""
    db.execute("delete from outbox where key like ?", [notices + "%"])
    db.execute("update outbox set reported_at = null")


# -- suppressed addresses -----------------------------------------------------------------


def suppress(
    db: Database,
    address: str,
    reason: str,
    now: dt.datetime,
    *,
    code: str = "",
    detail: str = "",
    outbox: int | None = None,
    message: int | None = None,
) -> bool:
    """Stop mailing ``address``; False when it already was (the first reason stays)."""
    cursor = db.execute(
        "insert into suppressed (address, reason, code, detail, outbox, message, created_at)"
        " values (?, ?, ?, ?, ?, ?, ?) on conflict (address) do nothing",
        [address.lower(), reason, code, detail, outbox, message, iso(now)],
    )
    return bool(cursor.rowcount)


def among(db: Database, addresses: Iterable[str]) -> set[str]:
    """Which of ``addresses`` (lower case) are suppressed."""
    wanted = sorted({a.lower() for a in addresses})
    if not wanted:
        return set()
    marks = ",".join("?" * len(wanted))
    rows = db.execute(f"select address from suppressed where address in ({marks})", wanted)
    return {row[0] for row in rows}


def _suppression(row: tuple[str, str, str, str, str]) -> Suppression:
    return Suppression(row[0], row[1], row[2], row[3], dt.datetime.fromisoformat(row[4]))


def suppressions(db: Database) -> dict[str, Suppression]:
    """Every suppressed address, by address."""
    rows = db.execute(
        "select address, reason, code, detail, created_at from suppressed order by address"
    )
    return {row[0]: _suppression(row) for row in rows}


def lift(db: Database, address: str) -> Suppression | None:
    """Mail ``address`` again; what its suppression was, None when it had none."""
    row = db.execute(
        "select address, reason, code, detail, created_at from suppressed where address = ?",
        [address.lower()],
    ).fetchone()
    if row is None:
        return None
    db.execute("delete from suppressed where address = ?", [address.lower()])
    return _suppression(row)


def lift_unlisted(db: Database) -> int:
    """Lift the suppressions of addresses the stored roster no longer lists.

    An address that was never in the roster (the cohort's list, say) is tried again too:
    a roster change is the staff's way of saying the addresses were checked.
    """
    cursor = db.execute(
        "delete from suppressed where address not in (select address from members"
        " union select address from staff union select address from mentors)"
    )
    return cursor.rowcount

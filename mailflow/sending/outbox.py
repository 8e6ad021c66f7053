"""The outbox: every mail to send, rendered once, keyed so that it is never queued twice.

A row's ``key`` names the mail (workflow, occurrence, step, recipient): queuing a mail
whose key exists does nothing, so a step replayed after a crash or a second ``tick``
sends nothing twice. Rows go ``queued`` → ``sending`` → ``sent``, or back to ``queued``
with a later ``next_attempt_at`` after a temporary failure, or to ``failed``. What became
of each address of a row is in ``deliveries``: an address accepted or failed for good is
settled, and never in that row's envelope again.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import sqlite_utils

from ..store.db import iso

STATUSES = ("queued", "sending", "sent", "failed")


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
    id: int
    key: str
    to: tuple[str, ...]
    sender: str
    raw: bytes
    attempts: int
    status: str


def queue(db: sqlite_utils.Database, mail: Outgoing, now: dt.datetime) -> bool:
    """Add a mail unless one with the same key exists; True when it was added."""
    cursor = db.execute(
        "insert into outbox (key, workflow, occurrence, step, recipient, to_addrs, sender,"
        " message_id, subject, raw, status, next_attempt_at, queued_at)"
        " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?) on conflict (key) do nothing",
        [
            mail.key, mail.workflow, mail.occurrence, mail.step, mail.recipient,
            json.dumps(list(mail.to)), mail.sender, mail.message_id, mail.subject, mail.raw,
            iso(now), iso(now),
        ],
    )  # fmt: skip
    return bool(cursor.rowcount)


# A mail marked ``sending`` whose sender died is sent again once this has passed: long
# enough that a live sender (another process) has finished with it.
SENDING_LEASE = dt.timedelta(minutes=10)


def due(db: sqlite_utils.Database, now: dt.datetime, limit: int = 1000) -> list[Pending]:
    """Mails to send now, oldest first; ``sending`` ones whose lease has run out were in
    flight when their sender died."""
    rows = db.execute(
        "select id, key, to_addrs, sender, raw, attempts, status from outbox"
        " where status in ('queued', 'sending') and next_attempt_at <= ? order by id limit ?",
        [iso(now), limit],
    )
    return [Pending(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4], r[5], r[6]) for r in rows]


def claim(db: sqlite_utils.Database, mail: Pending, now: dt.datetime) -> bool:
    """Mark a mail ``sending`` if nobody claimed it since it was read; True when we did."""
    cursor = db.execute(
        "update outbox set status = 'sending', attempts = ?, next_attempt_at = ?"
        " where id = ? and status = ? and attempts = ?",
        [mail.attempts + 1, iso(now + SENDING_LEASE), mail.id, mail.status, mail.attempts],
    )
    return bool(cursor.rowcount)


def mark(
    db: sqlite_utils.Database, id: int, status: str, now: dt.datetime, **fields: object
) -> None:
    assignments = ["status = ?"]
    values: list[object] = [status]
    if status == "sent":
        assignments.append("sent_at = ?")
        values.append(iso(now))
    for name, value in fields.items():
        assignments.append(f"{name} = ?")
        values.append(value)
    db.execute(f"update outbox set {', '.join(assignments)} where id = ?", [*values, id])


def counts(
    db: sqlite_utils.Database, workflow: str | None = None, occurrence: str | None = None
) -> dict[str, int]:
    where, params = [], []
    if workflow:
        where.append("workflow = ?")
        params.append(workflow)
    if occurrence:
        where.append("occurrence = ?")
        params.append(occurrence)
    clause = f"where {' and '.join(where)}" if where else ""
    result = dict.fromkeys(STATUSES, 0)
    for status, n in db.execute(
        f"select status, count(*) from outbox {clause} group by status", params
    ):
        result[status] = n
    return result


# Per-recipient outcomes that take an address out of a row's next envelopes.
SETTLED = ("sent", "failed", "suppressed")


def record(
    db: sqlite_utils.Database,
    outbox: int,
    address: str,
    status: str,
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


def delivery_states(db: sqlite_utils.Database, outbox: int) -> dict[str, str]:
    """The status of each address of a row that has one (lower-case addresses)."""
    rows = db.execute("select address, status from deliveries where outbox = ?", [outbox])
    return {row[0]: row[1] for row in rows}

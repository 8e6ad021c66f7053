"""Addresses mailflow no longer writes to: refused for good by the server, or hard-bounced.

An address is suppressed when the SMTP server refuses it with a 5xx answer, or when a
delivery status notification with a 5.x.x status arrives for an address mailflow did
deliver to. Delivery (``send``) leaves suppressed addresses out of every envelope,
whatever built the mail. A suppression lasts until a roster reload no longer lists the
address, or a staff command (``reactivate``) lifts it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import sqlite_utils

from .outbox import iso

REASONS = ("refused", "bounced")


@dataclass(frozen=True)
class Suppression:
    address: str
    reason: str  # refused (5xx at delivery) or bounced (a hard DSN)
    code: str  # "550 5.1.1" for a refusal, the DSN status ("5.1.1") for a bounce
    detail: str
    since: dt.datetime


def suppress(
    db: sqlite_utils.Database,
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


def among(db: sqlite_utils.Database, addresses: Iterable[str]) -> set[str]:
    """Which of ``addresses`` (lower case) are suppressed."""
    wanted = sorted({a.lower() for a in addresses})
    if not wanted:
        return set()
    marks = ",".join("?" * len(wanted))
    rows = db.execute(f"select address from suppressed where address in ({marks})", wanted)
    return {row[0] for row in rows}


def _row(row: tuple[str, str, str, str, str]) -> Suppression:
    return Suppression(row[0], row[1], row[2], row[3], dt.datetime.fromisoformat(row[4]))


def suppressed(db: sqlite_utils.Database) -> dict[str, Suppression]:
    """Every suppressed address, by address."""
    rows = db.execute(
        "select address, reason, code, detail, created_at from suppressed order by address"
    )
    return {row[0]: _row(row) for row in rows}


def lift(db: sqlite_utils.Database, address: str) -> Suppression | None:
    """Mail ``address`` again; what its suppression was, None when it had none."""
    row = db.execute(
        "select address, reason, code, detail, created_at from suppressed where address = ?",
        [address.lower()],
    ).fetchone()
    if row is None:
        return None
    db.execute("delete from suppressed where address = ?", [address.lower()])
    return _row(row)


def lift_unlisted(db: sqlite_utils.Database) -> int:
    """Lift the suppressions of addresses the stored roster no longer lists.

    An address that was never in the roster (the cohort's list, say) is tried again too:
    a roster change is the staff's way of saying the addresses were checked.
    """
    cursor = db.execute(
        "delete from suppressed where address not in (select address from members"
        " union select address from staff union select address from mentors)"
    )
    return cursor.rowcount


def was_mailed(db: sqlite_utils.Database, address: str) -> bool:
    """Whether mailflow delivered a mail to ``address``: a bounce for any other is not ours."""
    row = db.execute(
        "select 1 from deliveries where address = ? and status = 'sent' limit 1",
        [address.lower()],
    ).fetchone()
    if row is not None:
        return True
    # Rows sent before per-recipient records existed.
    row = db.execute(
        "select 1 from outbox, json_each(outbox.to_addrs) where outbox.status = 'sent'"
        " and lower(json_each.value) = ? limit 1",
        [address.lower()],
    ).fetchone()
    return row is not None

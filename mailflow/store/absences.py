"""Queries of who is away (``absences``): recorded from out-of-office replies and from
members' own mail, cancelled by their "back" mail."""

from __future__ import annotations

import datetime as dt

from .db import Database, iso


def add_absence(
    db: Database, address: str, first_day: dt.date | None, last_day: dt.date, source: str,
    message: int | None, now: dt.datetime,
) -> None:  # fmt: skip
    """Record that ``address`` is away from ``first_day`` (None: already) through ``last_day``."""
    db.execute(
        "insert into absences (address, first_day, last_day, source, message, created_at)"
        " values (?, ?, ?, ?, ?, ?)",
        [address.lower(), first_day.isoformat() if first_day else None, last_day.isoformat(),
         source, message, iso(now)],
    )  # fmt: skip


def cancel_absences(db: Database, address: str, today: dt.date, now: dt.datetime) -> int:
    """End every absence of ``address`` not over by ``today``; how many there were."""
    cursor = db.execute(
        "update absences set cancelled_at = ? where address = ? and cancelled_at is null"
        " and last_day >= ?",
        [iso(now), address.lower(), today.isoformat()],
    )
    return cursor.rowcount


def away_on(db: Database, day: dt.date) -> dict[str, dt.date]:
    """The addresses away on ``day``, each with the last day of its absence."""
    rows = db.execute(
        "select address, max(last_day) from absences where cancelled_at is null"
        " and last_day >= ? and (first_day is null or first_day <= ?) group by address",
        [day.isoformat(), day.isoformat()],
    )
    return {address: dt.date.fromisoformat(last) for address, last in rows}


def absences_from(db: Database, day: dt.date) -> list[tuple[str, str | None, str, str]]:
    """(address, first_day, last_day, source) of the absences not over by ``day``, by
    first day then address."""
    return db.execute(
        "select address, first_day, last_day, source from absences where cancelled_at is null"
        " and last_day >= ? order by coalesce(first_day, ''), address, last_day",
        [day.isoformat()],
    ).fetchall()

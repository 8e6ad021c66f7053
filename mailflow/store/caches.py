"""Queries of what is kept only to start faster: public holidays and compiled templates.

Both are derived (from the holidays package, from the template files) and checked on use;
deleting their rows loses nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from .db import Database, iso, transaction, without_waiting

Region = tuple[str, str]  # (country, subdivision)


def kept_years(db: Database) -> dict[tuple[str, str, int], dict[dt.date, str]]:
    """Every kept year of every region, with its holidays by day (a year may have none)."""
    years: dict[tuple[str, str, int], dict[dt.date, str]] = {
        (c, s, y): {} for c, s, y in db.execute(
            "select country, subdivision, year from holiday_years"
        )
    }  # fmt: skip
    for country, subdivision, day, name in db.execute(
        "select country, subdivision, day, name from holidays"
    ):
        date = dt.date.fromisoformat(day)
        years.setdefault((country, subdivision, date.year), {})[date] = name
    return years


def keep_years(
    db: Database,
    years: Iterable[tuple[tuple[str, str, int], dict[dt.date, str]]],
    now: dt.datetime,
) -> None:
    """Keep computed years (replacing what was kept for them) in one transaction; raises
    ``sqlite3.OperationalError`` at once if the database is busy (or read-only)."""
    with without_waiting(db), transaction(db):
        for (country, subdivision, year), days in years:
            db.execute(
                "delete from holidays where country = ? and subdivision = ? and day like ?",
                [country, subdivision, f"{year:04d}-%"],
            )
            db.execute(
                "insert or replace into holiday_years (country, subdivision, year, computed_at)"
                " values (?, ?, ?, ?)",
                [country, subdivision, year, iso(now)],
            )
            db.conn.executemany(
                "insert into holidays (country, subdivision, day, name) values (?, ?, ?, ?)",
                [(country, subdivision, d.isoformat(), n) for d, n in sorted(days.items())],
            )


def compiled(db: Database, key: str, checksum: str) -> bytes | None:
    """A template's compiled code, if kept for this very source."""
    row = db.execute(
        "select code from compiled_templates where key = ? and checksum = ?", [key, checksum]
    ).fetchone()
    return bytes(row[0]) if row else None


def keep_compiled(db: Database, key: str, checksum: str, code: bytes) -> None:
    """Keep a template's compiled code (replacing any kept for an older source); raises
    ``sqlite3.OperationalError`` at once if the database is busy (or read-only)."""
    with without_waiting(db):
        db.execute(
            "insert or replace into compiled_templates (key, checksum, code) values (?, ?, ?)",
            [key, checksum, code],
        )

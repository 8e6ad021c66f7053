"""Queries of the people the roster names, as stored."""

from __future__ import annotations

import sqlite_utils


def staff_addresses(db: sqlite_utils.Database) -> list[str]:
    return [row[0] for row in db.execute("select address from staff order by address")]

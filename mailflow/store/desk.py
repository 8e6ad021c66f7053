"""Queries of the staff alias's desk: help requests, commands by mail, announcements, and
the addresses flagged for the staff."""

from __future__ import annotations

import datetime as dt

import sqlite_utils

from .db import iso


def waiting_since(
    db: sqlite_utils.Database, before: dt.datetime
) -> list[tuple[str, str, str, str]]:
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

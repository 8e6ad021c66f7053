"""Queries of who answered what, over a span of occurrences: the numbers of the monthly
report (and of the archive)."""

from __future__ import annotations

from .db import Database
from .states import ANSWERED, Kind

_COUNTED = ", ".join(repr(str(s)) for s in ANSWERED)


def asked(db: Database, workflow: str, occurrences: list[str]) -> set[tuple[str, str]]:
    """(occurrence, respondent) pairs the workflow's mail went to, among ``occurrences``."""
    if not occurrences:
        return set()
    marks = ",".join("?" * len(occurrences))
    rows = db.execute(
        f"select distinct occurrence, recipient from outbox where workflow = ? and occurrence"
        f" in ({marks}) and (recipient like 'd-%' or recipient like 's-%')",
        [workflow, *occurrences],
    )
    return {(r[0], r[1]) for r in rows}


def answered(db: Database, workflow: str, occurrences: list[str]) -> dict[tuple[str, str], str]:
    """(occurrence, respondent) → the answer's data (JSON), the latest, among occurrences."""
    if not occurrences:
        return {}
    marks = ",".join("?" * len(occurrences))
    rows = db.execute(
        f"select occurrence, respondent, data from inbound where kind = ? and status in"
        f" ({_COUNTED}) and workflow = ? and occurrence in ({marks})"
        " order by received_at, message",
        [Kind.ANSWER, workflow, *occurrences],
    )
    return {(r[0], r[1]): r[2] for r in rows}


def last_answers(db: Database, workflow: str) -> dict[str, str]:
    """Each respondent's last occurrence answered, by respondent."""
    rows = db.execute(
        f"select respondent, max(occurrence) from inbound where kind = ? and status in"
        f" ({_COUNTED}) and workflow = ? group by respondent",
        [Kind.ANSWER, workflow],
    )
    return {r[0]: r[1] for r in rows}


def open_help_requests(db: Database) -> list[tuple[str, str, str]]:
    """(sender, subject, received_at) of help requests nobody answered yet."""
    return [
        (r[0], r[1], r[2])
        for r in db.execute(
            "select sender, subject, received_at from help_requests where answered_at is null"
            " order by received_at"
        )
    ]

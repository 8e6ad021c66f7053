"""When the answers of an occurrence open: an answer after the previous digest counts for
the coming occurrence once its answers are open (``[collect] opens``, e.g. "thursday
12:00": from the last Thursday at noon on or before its day; by default right after the
previous digest), and is a late answer for the previous one before that."""

from __future__ import annotations

import datetime as dt

from ..store import schedule
from ..store.db import Database
from .occurrences import nominal_day, occurrence_day, occurrences_around
from .workflow import Workflow, digest_steps

AHEAD = dt.timedelta(days=62)  # far enough for the next monthly occurrence past a skipped one


def opens_at(workflow: Workflow, day: dt.date, tz: dt.tzinfo) -> dt.datetime | None:
    """When answers open for an occurrence on ``day``; None: right after the previous digest."""
    if workflow.opens is None:
        return None
    weekday, at = workflow.opens
    opening_day = day - dt.timedelta(days=(day.weekday() - weekday) % 7)
    return dt.datetime.combine(opening_day, at).replace(tzinfo=tz)


def coming_occurrence(
    db: Database, workflow: Workflow, previous: str, now: dt.datetime, tz: dt.tzinfo
) -> str | None:
    """The occurrence after ``previous`` that an answer received at ``now`` counts for: the
    next one that happens, when its answers are open and its digest has not gone out."""
    if workflow.schedule.every == "event" or workflow.collect is None:
        return None
    start = nominal_day(workflow.schedule, previous) + dt.timedelta(days=1)
    digests = tuple(s.id for s in digest_steps(workflow))
    for occurrence in occurrences_around(workflow.schedule, start, start + AHEAD):
        day = occurrence_day(workflow.schedule, occurrence)
        if day is None:
            continue
        if digests and schedule.any_ran(db, workflow.name, occurrence, digests):
            return None
        opens = opens_at(workflow, day, tz)
        return occurrence if opens is None or now >= opens else None
    return None

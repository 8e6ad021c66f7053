"""When things happen: the occurrences of a schedule and the instant each step is due.

An occurrence is named by its period: ``2026-W48`` for a weekly workflow (ISO week),
``2026-11`` for a monthly one. Its day is the scheduled weekday or day of month, moved to
the last working day before it (in the same week, for a weekly workflow) when it is a
public holiday, or dropped, as the schedule says. Step times are wall-clock times in the
programme's time zone, so 09:00 stays 09:00 across daylight saving changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from .calendars import holidays_of
from .workflow import WEEKDAYS, Schedule, Step

_ORDINALS = {"first": 0, "second": 1, "third": 2, "fourth": 3}


def holiday_name(schedule: Schedule, day: dt.date) -> str | None:
    return holidays_of(schedule.holidays, schedule.subdivision, day.year).get(day)


def is_working_day(schedule: Schedule, day: dt.date) -> bool:
    return day.weekday() < 5 and holiday_name(schedule, day) is None


def occurrence_id(schedule: Schedule, day: dt.date) -> str:
    """The occurrence a nominal day belongs to (event occurrences are named by their event)."""
    if schedule.every == "day":
        return day.isoformat()
    if schedule.every == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def nominal_day(schedule: Schedule, occurrence: str) -> dt.date:
    """The scheduled day of an occurrence, before any holiday shift."""
    if schedule.every == "day":
        return dt.date.fromisoformat(occurrence)
    if schedule.every == "week":
        iso_year, iso_week = occurrence.split("-W")
        weekday = WEEKDAYS.index(schedule.day) + 1
        return dt.date.fromisocalendar(int(iso_year), int(iso_week), weekday)
    year, month = (int(x) for x in occurrence.split("-"))
    if schedule.day.isdigit():
        return dt.date(year, month, int(schedule.day))
    if schedule.day == "last working day":
        # The last weekday of the month; a holiday then moves it earlier, like any day.
        last = dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)
        return last - dt.timedelta(days=max(0, last.weekday() - 4))
    which, weekday_name = schedule.day.split()
    target = WEEKDAYS.index(weekday_name)
    if which == "last":
        last = (dt.date(year + month // 12, month % 12 + 1, 1)) - dt.timedelta(days=1)
        return last - dt.timedelta(days=(last.weekday() - target) % 7)
    first = dt.date(year, month, 1)
    first_match = first + dt.timedelta(days=(target - first.weekday()) % 7)
    return first_match + dt.timedelta(weeks=_ORDINALS[which])


def occurrence_day(schedule: Schedule, occurrence: str) -> dt.date | None:
    """The day the occurrence actually happens, None when it does not happen at all."""
    if occurrence in schedule.skip:
        return None
    day = nominal_day(schedule, occurrence)
    if schedule.every == "day":  # every working day
        return day if is_working_day(schedule, day) else None
    if (schedule.start and day < schedule.start) or (schedule.end and day > schedule.end):
        return None
    if is_working_day(schedule, day) or schedule.on_holiday == "keep":
        return day
    if schedule.on_holiday == "skip":
        return None
    # The last working day before it, within the same week for a weekly workflow.
    earliest = day - dt.timedelta(days=day.weekday() if schedule.every == "week" else 6)
    candidate = day - dt.timedelta(days=1)
    while candidate >= earliest:
        if is_working_day(schedule, candidate):
            return candidate
        candidate -= dt.timedelta(days=1)
    return None


def day_of(schedule: Schedule, occurrence: str) -> dt.date:
    """The day an occurrence happens, or would have (its nominal day when it does not)."""
    return occurrence_day(schedule, occurrence) or nominal_day(schedule, occurrence)


def occurrences_around(schedule: Schedule, start: dt.date, end: dt.date) -> Iterator[str]:
    """Occurrence ids whose nominal day lies between ``start`` and ``end`` (inclusive)."""
    seen = set()
    day = start - dt.timedelta(days=7)
    while day <= end + dt.timedelta(days=7):
        occurrence = occurrence_id(schedule, day)
        if occurrence not in seen:
            seen.add(occurrence)
            nominal = nominal_day(schedule, occurrence)
            if start <= nominal <= end:
                yield occurrence
        day += dt.timedelta(days=7 if schedule.every == "month" else 1)


def due_at(step: Step, day: dt.date, tz: ZoneInfo, schedule: Schedule | None = None) -> dt.datetime:
    """The instant a step is due for an occurrence on ``day``, a wall-clock time in ``tz``.

    ``days_before`` counts calendar days, or working days of ``schedule`` when the step
    says ``working_days``.
    """
    date = day - dt.timedelta(days=step.days_before)
    if step.working_days and schedule is not None:
        date, left = day, step.days_before
        while left:
            date -= dt.timedelta(days=1)
            left -= is_working_day(schedule, date)
    return dt.datetime.combine(date, step.at).replace(tzinfo=tz)

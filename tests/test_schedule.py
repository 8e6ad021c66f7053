"""Occurrences and due times: holidays, skipped weeks, monthly days, daylight saving."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from mailflow.programme.occurrences import due_at, nominal_day, occurrence_day, occurrence_id
from mailflow.programme.workflow import Schedule, Step

PARIS = ZoneInfo("Europe/Paris")
WEEKLY = Schedule(every="week", day="friday", holidays="FR")
NINE = Step(id="request", at=dt.time(9), action="send", template="t", to="each_defi")


def test_weekly_occurrences_are_iso_weeks():
    assert occurrence_id(WEEKLY, dt.date(2026, 11, 27)) == "2026-W48"
    assert nominal_day(WEEKLY, "2026-W48") == dt.date(2026, 11, 27)
    assert occurrence_day(WEEKLY, "2026-W48") == dt.date(2026, 11, 27)


@pytest.mark.parametrize(
    ("schedule", "occurrence", "expected"),
    [
        (WEEKLY, "2026-W52", dt.date(2026, 12, 24)),  # Christmas Friday -> Thursday
        (WEEKLY, "2026-W53", dt.date(2026, 12, 31)),  # New Year's Day Friday -> Thursday
        (WEEKLY, "2026-W14", dt.date(2026, 4, 3)),  # Good Friday is no holiday in most of France
        (Schedule("week", "friday", "FR", "57"), "2026-W14", dt.date(2026, 4, 2)),  # but in Moselle
        (Schedule("week", "friday", "FR", on_holiday="skip"), "2026-W52", None),
        (Schedule("week", "friday", "FR", skip=("2026-W48",)), "2026-W48", None),
    ],
)
def test_holidays_and_skipped_weeks(schedule, occurrence, expected):
    assert occurrence_day(schedule, occurrence) == expected


def test_ascension_week_keeps_friday():
    # Thursday 14 May 2026 is Ascension; the Friday after is a working day.
    assert occurrence_day(WEEKLY, "2026-W20") == dt.date(2026, 5, 15)


@pytest.mark.parametrize(
    ("day", "occurrence", "expected"),
    [
        ("last friday", "2026-11", dt.date(2026, 11, 27)),
        ("first monday", "2026-12", dt.date(2026, 12, 7)),
        ("second tuesday", "2027-02", dt.date(2027, 2, 9)),
        ("15", "2026-08", dt.date(2026, 8, 14)),  # 15 August is a holiday: Friday the 14th
    ],
)
def test_monthly_days(day, occurrence, expected):
    schedule = Schedule(every="month", day=day, holidays="FR")
    assert occurrence_id(schedule, expected) == occurrence
    assert occurrence_day(schedule, occurrence) == expected


@pytest.mark.parametrize(
    ("day", "utc_hour"),
    [
        (dt.date(2026, 10, 23), 7),  # summer time, the Friday before the change
        (dt.date(2026, 10, 30), 8),  # the Friday after the October change
        (dt.date(2027, 3, 26), 8),  # winter time, the Friday before the March change
        (dt.date(2027, 4, 2), 7),  # the Friday after the March change
    ],
)
def test_step_times_are_wall_clock_across_daylight_saving(day, utc_hour):
    due = due_at(NINE, day, PARIS)
    assert due.astimezone(PARIS).hour == 9
    assert due.astimezone(dt.UTC).hour == utc_hour


def test_public_holidays_are_kept_and_computed_again_when_the_package_differs(tmp_path):
    from mailflow.programme import calendars
    from mailflow.store.db import open_db

    db = open_db(tmp_path / "h.db")
    calendars.prepare(db, [("FR", "57")], [2031])
    year = "select day, name from holidays where subdivision = '57' and day like '2031-%'"
    kept = db.execute(year).fetchall()
    assert "2031-12-26" in {day for day, _ in kept}  # Moselle's own
    db.execute("update holidays set name = 'wrong' where day = '2031-12-25'")
    db.execute("delete from holidays where day = '2031-12-26'")
    assert calendars.recompute(db) == [("FR", "57", 2031)]
    assert sorted(db.execute(year).fetchall()) == sorted(kept)
    assert calendars.recompute(db) == []


def test_holidays_wait_for_a_database_that_cannot_take_them(tmp_path):
    """A busy (or read-only) database only means computing the year again next time."""
    from mailflow.programme import calendars
    from mailflow.store.db import open_db

    path = tmp_path / "h.db"
    db, other = open_db(path), open_db(path)
    other.execute("BEGIN IMMEDIATE")
    calendars.prepare(db, [("FR", "")], [2033])  # gives up at once instead of waiting 30 s
    assert db.execute("select count(*) from holiday_years").fetchone() == (0,)
    other.execute("ROLLBACK")
    calendars.keep(db)
    kept = db.execute("select year from holiday_years where year = 2033").fetchall()
    assert kept == [(2033,)]


def test_a_clock_file_reads_local_time_as_tick_at_does(tmp_path):
    from mailflow.errors import ConfigError
    from mailflow.running.clock import FileClock

    paris = PARIS
    path = tmp_path / "clock"
    path.write_text("2026-12-04T09:30\n")
    assert FileClock(path, paris).now() == dt.datetime(2026, 12, 4, 9, 30, tzinfo=paris)
    path.write_text("2026-12-04T09:30:00+00:00")
    assert FileClock(path, paris).now() == dt.datetime(2026, 12, 4, 10, 30, tzinfo=paris)
    path.write_text("vendredi")
    with pytest.raises(ConfigError, match="--clock-file"):
        FileClock(path, paris)

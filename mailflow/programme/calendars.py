"""Public holidays: computed by the holidays package, kept in the database.

Importing the holidays package costs a tenth of a second (it loads every country), which a
command that only reads, such as ``mailflow status``, should not pay. So each year of a
region (a country and an optional subdivision) is computed once, kept in the database and
read from there by later processes; a region already kept is known to be valid.
``mailflow doctor`` computes the kept years again, so that an upgrade of the package that
changes a holiday is seen and kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Iterable

from ..store import caches as kept
from ..store.db import Database

log = logging.getLogger(__name__)

Year = tuple[str, str, int]  # (country, subdivision, year)

_years: dict[Year, dict[dt.date, str]] = {}
_fresh: set[Year] = set()  # computed in this process, not yet kept


def _computed(country: str, subdivision: str, year: int) -> dict[dt.date, str]:
    import holidays

    return dict(holidays.country_holidays(country, subdiv=subdivision or None, years=year))


def region_problem(country: str, subdivision: str) -> tuple[str, str] | None:
    """None when the holidays package knows the region, else (the key, what it expects)."""
    if any(key[:2] == (country, subdivision) for key in _years):
        return None
    import holidays

    try:
        holidays.country_holidays(country, subdiv=subdivision or None)
    except NotImplementedError:
        return "holidays", "a country code known to the holidays package, such as 'FR'"
    except ValueError as e:
        return "subdivision", f"a subdivision of {country} ({e})"
    return None


def holidays_of(country: str, subdivision: str, year: int) -> dict[dt.date, str]:
    """The public holidays of a region in a year, by day; none without a country."""
    if not country:
        return {}
    key = (country, subdivision, year)
    if key not in _years:
        _years[key] = _computed(country, subdivision, year)
        _fresh.add(key)
    return _years[key]


def recall(db: Database) -> None:
    """Know the years kept in the database (those computed here stay as they are)."""
    for key, days in kept.kept_years(db).items():
        if key not in _fresh:
            _years[key] = days


def prepare(db: Database, regions: Iterable[tuple[str, str]], years: Iterable[int]) -> None:
    """Have the years of the regions at hand, keeping any computed for that in the database."""
    for country, subdivision in set(regions):
        for year in years:
            holidays_of(country, subdivision, year)
    keep(db)


def keep(db: Database) -> None:
    """Keep in the database the years computed since; a read-only or busy database waits."""
    if not _fresh:
        return
    fresh = sorted(_fresh)
    try:
        kept.keep_years(db, [(key, _years[key]) for key in fresh], dt.datetime.now(dt.UTC))
    except sqlite3.OperationalError as e:
        log.debug("public holidays not kept in the database: %s", e)
        return
    _fresh.difference_update(fresh)


def recompute(db: Database) -> list[Year]:
    """Compute every kept year again and keep the result; the years that changed."""
    changed = []
    for key, days in sorted(kept.kept_years(db).items()):
        now = _computed(*key)
        _years[key] = now
        if now != days:
            changed.append(key)
            _fresh.add(key)
    keep(db)
    return changed

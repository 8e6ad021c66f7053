"""Dates and times as people read them, in their language: Babel's CLDR data, no names here.

Every date a person reads (mail, staff output) goes through these functions, in the
programme's time zone, so that a 09:00 request reads "vendredi 4 décembre à 9h" and never
"2026-12-04T08:00:00+00:00".
"""

from __future__ import annotations

import datetime as dt

from babel.dates import format_date, format_datetime, format_time

# How a time of day is written when Babel's default is not what readers of a language
# expect: French mail writes 9h and 9h30, not 09:00. (whole hours, with minutes)
_HOUR_PATTERNS = {"fr": ("H'h'", "H'h'mm")}


def day(value: dt.date | dt.datetime, language: str, style: str = "long") -> str:
    """ "vendredi 4 décembre 2026" (long), "vendredi 4 décembre" (short)."""
    pattern = "EEEE d MMMM y" if style == "long" else "EEEE d MMMM"
    return format_date(value, pattern, locale=language)


def month(value: dt.date | dt.datetime, language: str) -> str:
    """ "décembre 2026" (the stand-alone month name)."""
    return format_date(value, "LLLL y", locale=language)


def hour(value: dt.time | dt.datetime, language: str) -> str:
    """ "9h", "9h30" in French; "9:30 AM" in English (Babel's short time elsewhere)."""
    patterns = _HOUR_PATTERNS.get(language)
    if patterns is None:
        return format_time(value, "short", locale=language)
    return format_time(value, patterns[1] if value.minute else patterns[0], locale=language)


def moment(value: dt.datetime, language: str, tz: dt.tzinfo | None = None) -> str:
    """ "ven. 4 déc. 9h00" style: a compact local instant for listings (status, roster)."""
    local = value.astimezone(tz) if tz is not None else value
    return format_datetime(local, "EEE d MMM y HH:mm", locale=language)

"""A person's own word that they will be away, or are back: "absente du 21/12 au 03/01",
"absent jusqu'au 12 janvier", "away until January 12", "de retour", "back".

Only the first words count: the subject (less its "Re:") or the first line of a short
text after its greeting must *be* the statement. An out-of-office reply says "je suis
absente…" in the present tense, is recognised by ``absence`` and ``automatic``, and is
never answered; a sentence about an absence inside a longer answer is part of that
answer. Dates are read as ``absence`` reads them (the last day of absence; day-first; a
date without a year is the next such day).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from . import absence
from .sections import normalize

MAX_TEXT = absence.MAX_AWAY_TEXT  # characters: a statement is a line or two, not an answer
# Characters of a text saying "absent" with no day we can read that is still taken as a
# statement (and asked for its days): longer, it is news that mentions an absence.
MAX_UNCLEAR = 100
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|tr|fw|fwd|aw|ref)\s*:\s*)+", re.I)
_WHO = r"(?:(?:je serai|nous serons|on sera|i will be|i'll be|we will be|we'll be|i shall be)\s+)?"
_AWAY = re.compile(
    rf"^{_WHO}(?:absente?s?|away|off|en conges?|en vacances|on leave|on holiday|on vacation"
    r"|out of (?:the )?office|ooo)\b"
    r"|^(?:de retour|back)\s+(?:le|on|a partir du|a compter du|from|the)\b"
)
_BACK = re.compile(
    r"^(?:(?:je suis|nous sommes|on est|i am|i'm|we are|we're)\s+)?(?:de retour|back)"
    r"(?:\s+(?:au bureau|in the office|at work|parmi vous))?[\s!.)]*$"
)
_GREETING_WORDS = 5  # a first line of at most this many words ending with "," greets
_START = re.compile(r"\b(?:du|from|between)\s+(?:le\s+)?(?:the\s+)?")
_DAY_ONLY = re.compile(r"^(?:\w+\s+)?(\d{1,2})(?:er|st|nd|rd|th|e)?\b")


@dataclass(frozen=True)
class Statement:
    """What a mail says of its author's presence: ``away`` (with its days), ``back``, or
    ``unclear`` (an absence without a day that can be read)."""

    kind: str  # away, back, unclear
    last_day: dt.date | None = None
    first_day: dt.date | None = None  # None: from now on

    def as_json(self) -> dict[str, str]:
        data = {"presence": self.kind}
        if self.first_day:
            data["first_day"] = self.first_day.isoformat()
        if self.last_day:
            data["last_day"] = self.last_day.isoformat()
        return data


def statement(
    subject: str, text: str, sent: dt.date | None, headed: bool = False
) -> Statement | None:
    """The statement of presence a mail makes by its first words, None when it makes none.

    ``headed``: the text has sections or fields of a workflow, so it is an answer.
    """
    if len(text) > MAX_TEXT or headed:
        return None
    for line in (_plain(_REPLY_PREFIX.sub("", subject)), _first_line(text)):
        if _BACK.match(line):
            return Statement("back")
        if _AWAY.match(line):
            return _away(line, text, sent)
    return None


def _away(line: str, text: str, sent: dt.date | None) -> Statement | None:
    last = absence.absent_until([line], sent) or absence.absent_until([text], sent)
    if last is None or (sent is not None and last < sent):
        return Statement("unclear") if len(text.strip()) <= MAX_UNCLEAR else None
    first = _first_day(line, last, sent)
    return Statement("away", last, first if first and first <= last else None)


def _first_day(line: str, last: dt.date, sent: dt.date | None) -> dt.date | None:
    """The first day of "du 21/12 au 03/01", "from 21 to 31 December"; None when not said."""
    found = _START.search(line)
    if found is None:
        return None
    rest = line[found.end() :]
    # The same date grammar as the last day's (``absence``), read from the range's start.
    whole = re.match(absence._DATE, rest)
    if whole is not None:
        day = absence._date(whole, sent or last)
        if day is not None:
            return day if day <= last else _year_before(day)
    bare = _DAY_ONLY.match(rest)
    if bare is None:
        return None
    number = int(bare.group(1))
    try:  # "du 21 au 31 décembre": the month and year of the last day, or the month before
        day = last.replace(day=number)
    except ValueError:
        return None
    if day > last:
        previous = last.replace(day=1) - dt.timedelta(days=1)
        day = previous.replace(day=min(number, previous.day))
    return day


def _year_before(day: dt.date) -> dt.date | None:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return None


def _first_line(text: str) -> str:
    """The first line that is not a greeting ("Bonjour," "Hello team,")."""
    lines = [_plain(line) for line in text.splitlines() if line.strip()]
    if lines and lines[0].endswith(",") and len(lines[0].split()) <= _GREETING_WORDS:
        lines = lines[1:]
    return lines[0] if lines else ""


def _plain(text: str) -> str:
    return normalize(text.replace("’", "'")).strip()

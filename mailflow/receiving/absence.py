"""Out-of-office replies: whether a text says its author is away, and until when.

``looks_away`` recognises an out-of-office that carries none of the automatic markers
("Je suis absente jusqu'au…", "I am out of the office…"); the caller applies it only to
short texts without any section. ``absent_until`` gives the **last day of absence**
that a reply states, in French or English: "jusqu'au 4 janvier 2027 (inclus)" and
"until January 4, 2027" end on the 4th, "de retour le lundi 4 janvier" and "back on
Monday 4 January" on the 3rd, "du 21/12/2026 au 03/01/2027" on the 3rd. Numeric dates
are read day-first, as the programme's French writers (and most non-US English ones)
write them; a date without a year is the next such day on or after the message's date
(and, when a weekday is given, the one falling on that weekday in the coming months; a
wrong weekday does not move the date by a year).

Own rules rather than a date library: the phrasing ("jusqu'au", "de retour", "du … au")
has to be ours anyway, and the dates these replies give are a small grammar; dateparser
read "03/01/2027" month-first, took "Je" for a date and costs 150 ms on first use.
"""

from __future__ import annotations

import datetime as dt
import re

from .sections import normalize

MAX_AWAY_TEXT = 800  # characters: an out-of-office is a few lines; an answer is longer
MAX_SCAN = 4_000  # characters of a text searched for a return date

_MONTHS = {
    "janvier": 1, "janv": 1, "jan": 1, "january": 1,
    "fevrier": 2, "fevr": 2, "fev": 2, "february": 2, "feb": 2,
    "mars": 3, "march": 3, "mar": 3,
    "avril": 4, "avr": 4, "april": 4, "apr": 4,
    "mai": 5, "may": 5,
    "juin": 6, "june": 6, "jun": 6,
    "juillet": 7, "juil": 7, "july": 7, "jul": 7,
    "aout": 8, "august": 8, "aug": 8,
    "septembre": 9, "sept": 9, "september": 9, "sep": 9,
    "octobre": 10, "oct": 10, "october": 10,
    "novembre": 11, "nov": 11, "november": 11,
    "decembre": 12, "dec": 12, "december": 12,
}  # fmt: skip
_WEEKDAYS = {
    "lundi": 0, "mardi": 1, "mercredi": 2, "jeudi": 3, "vendredi": 4, "samedi": 5,
    "dimanche": 6, "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4,
    "saturday": 5, "sunday": 6, "mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5,
    "sun": 6,
}  # fmt: skip
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WEEKDAY = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_ORD = r"(?:er|st|nd|rd|th|e)?"
# One date, in every shape these replies use; named groups say which parts it has.
_DATE = (
    rf"(?:(?P<wd>{_WEEKDAY})\.?,?\s+(?:the\s+)?)?"
    r"(?:"
    rf"(?P<d1>\d{{1,2}}){_ORD}\s+(?:of\s+)?(?P<m1>{_MONTH})\.?(?:,?\s+(?P<y1>\d{{4}}))?"
    rf"|(?P<m2>{_MONTH})\.?\s+(?:the\s+)?(?P<d2>\d{{1,2}}){_ORD}(?:,?\s+(?P<y2>\d{{4}}))?"
    r"|(?P<y3>\d{4})-(?P<m3>\d{1,2})-(?P<d3>\d{1,2})"
    r"|(?P<d4>\d{1,2})[/.](?P<m4>\d{1,2})(?:[/.](?P<y4>\d{4}|\d{2}))?"
    r")\b"
)
# The first day of a range may leave out what its last day gives ("du 21 au 31 décembre").
_FIRST = (
    rf"(?:(?:{_WEEKDAY})\.?\s+)?\d{{1,2}}{_ORD}(?:\s+(?:{_MONTH})\.?)?"
    r"(?:[/.]\d{1,2}(?:[/.]\d{2,4})?)?"
)
_RANGE = re.compile(
    rf"\b(?:du|from|between)\s+(?:le\s+)?{_FIRST}(?:\s+\d{{4}})?\s*(?:,\s*)?"
    rf"(?:au|to|until|till|and|-|–|jusqu'au|jusqu'a)\s+(?:le\s+)?(?:the\s+)?{_DATE}"
)
_UNTIL = re.compile(
    rf"\b(?:jusqu'?\s?au|jusqu'?\s?a|until|till|through|thru|up to and including)\s+"
    rf"(?:et y compris\s+)?(?:le\s+)?(?:the\s+)?{_DATE}"
    r"(?P<excluded>\s*\(?\s*(?:exclu|non inclus|not included|exclusive))?"
)
_RETURN = re.compile(
    r"\b(?:de retour|retour(?: prevu)?|je serai de nouveau|je reprends|je reprendrai"
    r"|reprise|je reviens|disponible a nouveau|a nouveau disponible|present(?:e)? a nouveau"
    r"|back|returning|i return|i will return|i'll return|return(?:ing)? to (?:the )?office"
    r"|available again)"
    r"(?:\s+(?:au bureau|in the office|in office|to the office|mes fonctions|le travail))?"
    rf"\s+(?:(?:le|on|a partir du|des le|from|the|a compter du)\s+)*{_DATE}"
)
_AWAY = re.compile(
    # "Je serai absente vendredi" announces an absence in an answer; "je suis absente"
    # and "je serai absente jusqu'au…" are the out-of-office's own words.
    r"\bje serai (?:absente?|en conges?) (?:jusqu|du \d|a partir|a compter)"
    r"|\b(?:(?:je suis|nous sommes|actuellement|suis)\s+(?:actuellement\s+)?"
    r"(?:absente?|en conges?|en vacances|en deplacement|en formation|en mission|hors du bureau"
    r"|en conge (?:maternite|paternite|parental|maladie)|en arret|indisponible)"
    r"|absente? (?:du bureau|jusqu|du \d|a partir|pour (?:conges|vacances))"
    r"|en conges? (?:du|jusqu|a partir)|de retour (?:le|au bureau|a partir)"
    r"|acces (?:limite|restreint|reduit) (?:a|aux) (?:mes )?"
    r"(?:e-?mails?|mails|messagerie|courriels)"
    r"|(?:i am|i'm|i will be|i'll be|we are)\s+(?:currently\s+)?(?:out of (?:the )?office|away"
    r"|on (?:annual |parental |sick |maternity |paternity )?leave|on vacation|on holiday"
    r"|out of office|travell?ing|off work)"
    r"|out of (?:the )?office (?:until|from|through|till)"
    r"|(?:limited|no|intermittent) access to (?:my )?e-?mails?"
    r"|(?:back|return(?:ing)?) (?:in the office |to the office )?on \w)"
)


def looks_away(text: str) -> bool:
    """Whether a short text says its author is away (an out-of-office without markers)."""
    if not text.strip() or len(text) > MAX_AWAY_TEXT:
        return False
    return bool(_AWAY.search(_plain(text)))


def _plain(text: str) -> str:
    return normalize(text.replace("’", "'"))


def absent_until(texts: list[str], sent: dt.date | None) -> dt.date | None:
    """The last day of absence that the first of ``texts`` stating one gives, or None."""
    for text in texts:
        found = _first_date(_plain(text[:MAX_SCAN]), sent)
        if found is not None:
            return found
    return None


def _first_date(text: str, sent: dt.date | None) -> dt.date | None:
    matches = [
        (m.start(), m, offset)
        for pattern, offset in ((_RANGE, 0), (_UNTIL, 0), (_RETURN, -1))
        for m in pattern.finditer(text)
    ]
    for _, m, offset in sorted(matches, key=lambda x: x[0]):
        day = _date(m, sent)
        if day is None:
            continue
        if offset == 0 and m.groupdict().get("excluded"):
            offset = -1
        return day + dt.timedelta(days=offset)
    return None


def _date(m: re.Match[str], sent: dt.date | None) -> dt.date | None:
    g = m.groupdict()
    for i in "1234":
        if g.get(f"d{i}"):
            day, month, year = g[f"d{i}"], g[f"m{i}"], g.get(f"y{i}")
            break
    else:
        return None
    number = int(month) if month.isdigit() else _MONTHS[month]
    if not 1 <= number <= 12:
        return None
    weekday = _WEEKDAYS.get(g["wd"]) if g.get("wd") else None
    if year:
        full = int(year) + (2000 if len(year) == 2 else 0)
        try:
            return dt.date(full, number, int(day))
        except ValueError:
            return None
    if sent is None:
        return None
    return _next(int(day), number, weekday, sent)


def _next(day: int, month: int, weekday: int | None, sent: dt.date) -> dt.date | None:
    """The first such day on or after ``sent`` (a week of slack for a late reply)."""
    candidates = []
    for year in (sent.year - 1, sent.year, sent.year + 1, sent.year + 2):
        try:
            candidates.append(dt.date(year, month, day))
        except ValueError:
            continue
    future = [c for c in candidates if c >= sent - dt.timedelta(days=7)]
    if weekday is not None:  # it tells the year only among the coming months
        matching = [c for c in future if c.weekday() == weekday and (c - sent).days <= 200]
        future = matching or future
    return future[0] if future else None

"""Who is away, as the steps and reports need it: members taken out of reminders, défis
whose members are all away shown as away rather than without news.

An absence never stops a request: someone away may still answer, and the request is
what they answer when back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..store import absences
from ..store.db import Database
from .roster import Roster, respondent_addresses

if TYPE_CHECKING:
    from .audiences import Recipient


def away_on(db: Database, day: dt.date) -> dict[str, dt.date]:
    """The addresses away on ``day``, each with the last day of its absence."""
    return absences.away_on(db, day)


def present(recipients: list[Recipient], away: dict[str, dt.date]) -> list[Recipient]:
    """The recipients without their away members; those with nobody left are dropped."""
    kept = []
    for recipient in recipients:
        to = tuple(a for a in recipient.to if a.lower() not in away)
        if to:
            kept.append(recipient if to == recipient.to else replace(recipient, to=to))
    return kept


def away_until(db: Database, respondent: str, away: dict[str, dt.date]) -> dt.date | None:
    """The day the first of a respondent's people is back (the day before), when all are away."""
    addresses = respondent_addresses(db, respondent)
    if not addresses or any(a.lower() not in away for a in addresses):
        return None
    return min(away[a.lower()] for a in addresses)


def listed(db: Database, roster: Roster, day: dt.date) -> list[dict[str, Any]]:
    """The absences not over by ``day``, for the staff: who, of which défi, which days."""
    names = {m.address.lower(): (m.name, d.name) for d in roster.defis for m in d.members}
    names |= {s.address.lower(): (s.name, "") for s in roster.staff}
    found = []
    for address, first, last, source in absences.absences_from(db, day):
        name, defi = names.get(address, ("", ""))
        found.append({
            "address": address, "name": name, "defi": defi, "source": source,
            "first_day": dt.date.fromisoformat(first) if first else None,
            "last_day": dt.date.fromisoformat(last),
        })  # fmt: skip
    return found

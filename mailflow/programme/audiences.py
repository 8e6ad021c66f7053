"""Who a step's mail goes to: the audiences a workflow step names in ``to``.

``each_defi`` is one mail per active défi (to all its members), ``each_staff`` one per staff
member, ``attendees`` one per person of an event's audience, and ``staff``, ``cohort``
and ``alias`` a single mail. ``only = "answered"`` or ``"not_answered"`` keeps the
respondents that did, or did not, answer the occurrence; a reminder leaves out the members
away on its day, and the respondents whose people are all away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..store import inbound
from ..store.db import Database
from ..store.states import Respondent
from .roster import Defi, Roster, Staff, stored_roster

if TYPE_CHECKING:
    from ..config import Config
    from .steps import Occurrence
    from .workflow import Step

AUDIENCES = ("each_defi", "each_staff", "cohort", "alias", "staff", "attendees")
EACH = ("each_defi", "each_staff")  # audiences of respondents, one mail each


@dataclass(frozen=True)
class Recipient:
    """Who one mail goes to: a défi (all its members), a staff member, a list, the staff."""

    id: str  # a Respondent, or "cohort", "alias", "staff"
    to: tuple[str, ...]
    language: str
    defi: Defi | None = None
    person: Staff | None = None
    name: str = ""


def recipients(
    db: Database, config: Config, occ: Occurrence, step: Step, audience: str
) -> list[Recipient]:
    """The recipients of a step's mail for an occurrence, in the languages they read."""
    language = occ.workflow.language or config.language
    roster = stored_roster(db)
    if audience == "attendees":
        return _attendees(roster, occ, language)
    if audience == "staff":
        staff = tuple(s.address for s in roster.staff) or (config.addresses.alias,)
        return [Recipient("staff", staff, language)]
    if audience not in EACH:
        address = config.addresses.cohort if audience == "cohort" else config.addresses.alias
        return [Recipient(audience, (address,), language)]
    found = respondents(roster, occ, audience, language)
    if step.only:
        done = inbound.answered(db, occ.workflow.name, occ.id)
        found = [r for r in found if (r.id in done) == (step.only == "answered")]
        if _reminds(step):
            from .absences import away_on, present
            from .occurrences import due_at

            day = due_at(step, occ.day, config.timezone, occ.workflow.schedule).date()
            found = present(found, away_on(db, day))
    return found


def _reminds(step: Step) -> bool:
    from .kinds import kind_of

    return kind_of(step).role(step) == "reminder"


def respondents(roster: Roster, occ: Occurrence, audience: str, language: str) -> list[Recipient]:
    """Everyone a step to ``each_defi`` or ``each_staff`` asks, before any ``only`` filter."""
    if audience == "each_defi":
        return [
            Recipient(Respondent.defi(d.id), d.addresses, d.language or language, defi=d)
            for d in roster.defis
            if d.active_on(occ.day) and d.members
        ]
    return [
        Recipient(Respondent.staff(s.address), (s.address,), language, person=s)
        for s in roster.staff
    ]


def _attendees(roster: Roster, occ: Occurrence, language: str) -> list[Recipient]:
    """One recipient per person of the event's audience, in their défi's language."""
    assert occ.event is not None
    languages = {m.address: d.language for d in roster.defis for m in d.members if d.language}
    return [
        Recipient(
            Respondent.person(address), (address,), languages.get(address) or language, name=name
        )
        for address, name in roster.audience(occ.event.audience, occ.day)
    ]


def recipient_context(recipient: Recipient) -> dict[str, Any]:
    """What a template knows of its recipient: ``who`` (also ``defi``), ``name``, ``language``."""
    defi, person = recipient.defi, recipient.person
    who = None
    if defi is not None:
        who = {
            "id": defi.id, "name": defi.name, "host": defi.host, "kind": "defi",
            "members": [{"address": m.address, "name": m.name} for m in defi.members],
        }  # fmt: skip
    elif person is not None:
        who = {
            "id": recipient.id, "name": person.name or person.address, "host": person.role,
            "kind": "staff", "members": [{"address": person.address, "name": person.name}],
        }  # fmt: skip
    return {
        "language": recipient.language, "recipient": recipient.id, "who": who, "defi": who,
        "name": recipient.name or (who["name"] if who else ""),
    }  # fmt: skip
